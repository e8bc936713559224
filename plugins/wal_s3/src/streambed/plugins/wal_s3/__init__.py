"""streambed-wal-s3: a write-ahead log made of objects in S3-compatible storage."""

__all__: list[str] = []
