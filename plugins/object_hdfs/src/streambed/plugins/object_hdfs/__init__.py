"""streambed-object-hdfs: object stores on HDFS and on any fsspec filesystem."""

__all__: list[str] = []
