"""The batching window defaults to the store: short on a local store, long where PUTs are billed."""

from __future__ import annotations

from streambed.plugins.wal_s3.plugin import AWS_WINDOW_MS, LOCAL_WINDOW_MS, S3WalOptions


def test_window_defaults_by_store() -> None:
    local = S3WalOptions.model_validate(
        {"s3": {"bucket": "b", "endpoint_url": "http://127.0.0.1:8333", "profile": "seaweedfs"}}
    )
    assert local.resolved_window_ms() == LOCAL_WINDOW_MS == 10
    aws = S3WalOptions.model_validate({"s3": {"bucket": "b", "region": "eu-west-1"}})
    assert aws.resolved_window_ms() == AWS_WINDOW_MS == 250
    named = S3WalOptions.model_validate({"s3": {"bucket": "b", "profile": "aws"}})
    assert named.resolved_window_ms() == AWS_WINDOW_MS
    chosen = S3WalOptions.model_validate(
        {"s3": {"bucket": "b", "endpoint_url": "http://x:1"}, "window_ms": 40}
    )
    assert chosen.resolved_window_ms() == 40
