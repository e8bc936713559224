"""streambed-wal-ebs: the low-latency WAL for a dedicated block volume."""

__all__: list[str] = []
