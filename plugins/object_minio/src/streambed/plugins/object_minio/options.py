"""Options of the ``s3`` object store (``storage.objects.options`` and the S3 WAL's ``s3``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["PROFILES", "S3Options"]

MiB = 1024 * 1024

PROFILES: dict[str, dict[str, object]] = {
    # Non-AWS stores reject or mishandle the flexible checksums newer SDKs send by default.
    "aws": {"path_style": False, "checksums": "when_supported"},
    "minio": {"path_style": True, "checksums": "when_required"},
    "seaweedfs": {"path_style": True, "checksums": "when_required"},
    "ceph": {"path_style": True, "checksums": "when_required"},
    "cubefs": {"path_style": True, "checksums": "when_required"},
}


class S3Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(description="Bucket holding streambed's objects.")
    prefix: str = Field("", description="Key prefix inside the bucket, e.g. `cluster-a/`.")
    endpoint_url: str | None = Field(
        None, description="S3 endpoint (MinIO, Ceph, SeaweedFS...); unset for AWS."
    )
    region: str = Field("us-east-1", description="Signing region.")
    profile: Literal["aws", "minio", "seaweedfs", "ceph", "cubefs"] | None = Field(
        None, description="Settings preset for a store; default: aws without endpoint, else minio."
    )
    access_key_id: str | None = Field(
        None, description="Static credentials; unset = the AWS chain (env, profile, IRSA, IMDS)."
    )
    secret_access_key: SecretStr | None = Field(None, description="Use {env: NAME} in YAML.")
    session_token: SecretStr | None = None
    path_style: bool | None = Field(
        None, description="Path-style addressing; default from the profile."
    )
    checksums: Literal["when_supported", "when_required"] | None = Field(
        None, description="Request checksum calculation; default from the profile."
    )
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)
    max_pool_connections: int = Field(32, ge=1)
    retry_attempts: int = Field(8, ge=1, description="Attempts on 503/500/timeouts (jittered).")
    retry_max_delay_s: float = Field(5.0, gt=0)
    multipart_threshold_bytes: int = Field(
        64 * MiB, ge=5 * MiB, description="Objects this large upload in parts."
    )
    multipart_part_bytes: int = Field(16 * MiB, ge=5 * MiB)
    abandoned_upload_age_s: float = Field(
        3600.0, gt=0, description="cleanup() aborts multipart uploads older than this."
    )
    create_bucket: bool = Field(False, description="Create the bucket when missing.")
    probe: bool = Field(True, description="Write/read/delete a probe object at start-up.")

    def resolved_profile(self) -> dict[str, object]:
        name = self.profile or ("aws" if self.endpoint_url is None else "minio")
        settings = dict(PROFILES[name])
        if self.path_style is not None:
            settings["path_style"] = self.path_style
        if self.checksums is not None:
            settings["checksums"] = self.checksums
        return settings
