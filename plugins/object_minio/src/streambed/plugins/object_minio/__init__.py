"""streambed-object-minio: the ``s3`` object store for any S3-compatible service."""

__all__: list[str] = []
