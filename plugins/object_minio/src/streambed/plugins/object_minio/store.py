"""The ``s3`` object store on aioboto3, with SDK errors translated to the core taxonomy."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.handlers import add_expect_header

from streambed.core.context import NodeContext
from streambed.core.errors import (
    ConditionFailed,
    NotFound,
    PermissionDenied,
    StreambedError,
    Unavailable,
)
from streambed.core.objects.api import Buffers, Capabilities, ListPage, ObjectInfo
from streambed.core.objects.retrying import RetryingObjectStore
from streambed.plugins.object_minio.options import S3Options

__all__ = ["S3ObjectStore", "open_store"]

_THREAD_PAYLOAD_BYTES = 1024 * 1024

log = logging.getLogger("streambed.objects.s3")

_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_CONDITION = {"PreconditionFailed", "412"}
_AUTH = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
         "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}


def _join(data: Buffers) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    return b"".join(bytes(part) for part in data)


class S3ObjectStore:
    """One long-lived client per store; keys are relative to ``options.prefix``."""

    def __init__(self, options: S3Options, client: Any, exit_stack: contextlib.AsyncExitStack,
                 conditional_put: bool, sync_client: Callable[[], Any] | None = None) -> None:
        self._o = options
        self._client = client
        self._stack = exit_stack
        self._make_sync_client = sync_client
        self._sync: Any = None
        self._sync_lock = threading.Lock()
        self._caps = Capabilities(conditional_put=conditional_put, multipart=True)
        self._where = f"{options.endpoint_url or 'AWS S3'} bucket {options.bucket!r}"

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _key(self, key: str) -> str:
        return f"{self._o.prefix}{key}"

    def _translate(self, exc: Exception, what: str) -> StreambedError:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            message = f"{what} on {self._where}: {code or status} {error.get('Message', '')}".strip()
            if code in _NOT_FOUND or (status == "404" and code != "NoSuchBucket"):
                return NotFound(message)
            if code in _CONDITION or status == "412":
                return ConditionFailed(message)
            if code in _AUTH or status == "403":
                return PermissionDenied(
                    f"{message} (access key id {self._o.access_key_id or '(from the AWS chain)'})"
                )
            if code == "NoSuchBucket":
                return Unavailable(f"{message}: the bucket does not exist")
            return Unavailable(message)  # 5xx, SlowDown, 409 ConditionalRequestConflict, ...
        if isinstance(exc, BotoCoreError | OSError | TimeoutError):
            return Unavailable(f"{what} on {self._where}: {type(exc).__name__}: {exc}")
        return Unavailable(f"{what} on {self._where}: {exc!r}")

    async def put(self, key: str, data: Buffers, *, if_none_match: bool = False) -> ObjectInfo:
        body = _join(data)
        if len(body) >= self._o.multipart_threshold_bytes and not if_none_match:
            return await self._put_multipart(key, body)
        kwargs: dict[str, Any] = {"Bucket": self._o.bucket, "Key": self._key(key), "Body": body}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        try:
            response = await self._call_with_payload("put_object", kwargs)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise self._translate(exc, f"PUT {key}") from exc
        return ObjectInfo(key, len(body), etag=str(response.get("ETag", "")).strip('"'))

    async def _put_multipart(self, key: str, body: bytes) -> ObjectInfo:
        full = self._key(key)
        try:
            upload = await self._client.create_multipart_upload(Bucket=self._o.bucket, Key=full)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise self._translate(exc, f"PUT {key} (multipart)") from exc
        upload_id = upload["UploadId"]
        parts = []
        view = memoryview(body)
        try:
            for number, start in enumerate(range(0, len(body), self._o.multipart_part_bytes), 1):
                chunk = view[start : start + self._o.multipart_part_bytes]
                part = await self._call_with_payload(
                    "upload_part",
                    {"Bucket": self._o.bucket, "Key": full, "UploadId": upload_id,
                     "PartNumber": number, "Body": bytes(chunk)},
                )
                parts.append({"ETag": part["ETag"], "PartNumber": number})
            response = await self._client.complete_multipart_upload(
                Bucket=self._o.bucket, Key=full, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await self._client.abort_multipart_upload(
                    Bucket=self._o.bucket, Key=full, UploadId=upload_id
                )
            raise self._translate(exc, f"PUT {key} (multipart)") from exc
        return ObjectInfo(key, len(body), etag=str(response.get("ETag", "")).strip('"'))

    async def _call_with_payload(self, operation: str, kwargs: dict[str, Any]) -> Any:
        """Send a request carrying a body. botocore hashes the whole payload (SHA-256 for the
        signature over plain HTTP, checksums) on the calling thread before sending: 64 MiB held the
        event loop for hundreds of milliseconds, stalling every produce. Bodies from
        ``_THREAD_PAYLOAD_BYTES`` up go through a synchronous client on a worker thread instead,
        where hashing and sending release the GIL and the loop keeps serving."""
        body = kwargs["Body"]
        if self._make_sync_client is None or len(body) < _THREAD_PAYLOAD_BYTES:
            return await getattr(self._client, operation)(**kwargs)
        return await asyncio.to_thread(self._sync_call, operation, kwargs)

    def _sync_call(self, operation: str, kwargs: dict[str, Any]) -> Any:
        with self._sync_lock:
            if self._sync is None:
                assert self._make_sync_client is not None
                self._sync = self._make_sync_client()
        return getattr(self._sync, operation)(**kwargs)

    async def get(self, key: str) -> bytes:
        try:
            response = await self._client.get_object(Bucket=self._o.bucket, Key=self._key(key))
            async with response["Body"] as stream:
                data: bytes = await stream.read()
            return data
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise self._translate(exc, f"GET {key}") from exc

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"bad range [{start}, {end})")
        if end == start:
            await self.head(key)  # still report a missing object
            return b""
        try:
            response = await self._client.get_object(
                Bucket=self._o.bucket, Key=self._key(key), Range=f"bytes={start}-{end - 1}"
            )
            async with response["Body"] as stream:
                data: bytes = await stream.read()
            return data
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                await self.head(key)
                return b""
            raise self._translate(exc, f"GET {key} [{start}, {end})") from exc
        except (BotoCoreError, OSError, TimeoutError) as exc:
            raise self._translate(exc, f"GET {key} [{start}, {end})") from exc

    async def head(self, key: str) -> ObjectInfo:
        try:
            response = await self._client.head_object(Bucket=self._o.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise self._translate(exc, f"HEAD {key}") from exc
        modified = response.get("LastModified")
        return ObjectInfo(
            key, int(response["ContentLength"]), etag=str(response.get("ETag", "")).strip('"'),
            modified=modified.timestamp() if modified is not None else None,
        )

    async def delete(self, keys: Sequence[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), self._caps.max_delete_batch):
            batch = keys[start : start + self._caps.max_delete_batch]
            try:
                response = await self._client.delete_objects(
                    Bucket=self._o.bucket,
                    Delete={"Objects": [{"Key": self._key(k)} for k in batch], "Quiet": True},
                )
            except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
                raise self._translate(exc, f"DELETE {len(batch)} keys") from exc
            errors = [e for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                raise Unavailable(f"DELETE on {self._where}: {len(errors)} keys failed: {errors[:3]}")

    async def list(self, prefix: str, *, token: str | None = None, limit: int = 1000) -> ListPage:
        kwargs: dict[str, Any] = {
            "Bucket": self._o.bucket, "Prefix": self._key(prefix), "MaxKeys": max(1, min(limit, 1000)),
        }
        if token:
            kwargs["ContinuationToken"] = token
        try:
            response = await self._client.list_objects_v2(**kwargs)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise self._translate(exc, f"LIST {prefix}") from exc
        skip = len(self._o.prefix)
        objects = [
            ObjectInfo(item["Key"][skip:], int(item["Size"]),
                       etag=str(item.get("ETag", "")).strip('"'),
                       modified=item["LastModified"].timestamp() if "LastModified" in item else None)
            for item in response.get("Contents", [])
        ]
        next_token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
        return ListPage(objects, next_token)

    async def cleanup(self) -> int:
        """Abort multipart uploads under our prefix older than ``abandoned_upload_age_s``."""
        horizon = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
            seconds=self._o.abandoned_upload_age_s
        )
        aborted = 0
        kwargs: dict[str, Any] = {"Bucket": self._o.bucket, "Prefix": self._o.prefix}
        try:
            while True:
                response = await self._client.list_multipart_uploads(**kwargs)
                for upload in response.get("Uploads", []):
                    if upload["Initiated"] < horizon:
                        await self._client.abort_multipart_upload(
                            Bucket=self._o.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
                if not response.get("IsTruncated"):
                    break
                kwargs["KeyMarker"] = response.get("NextKeyMarker")
                kwargs["UploadIdMarker"] = response.get("NextUploadIdMarker")
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise self._translate(exc, "LIST multipart uploads") from exc
        if aborted:
            log.info("aborted %d abandoned multipart upload(s) on %s", aborted, self._where)
        return aborted

    async def close(self) -> None:
        await self._stack.aclose()
        if self._sync is not None:
            self._sync.close()
            self._sync = None


async def _probe(raw: S3ObjectStore, options: S3Options) -> bool:
    """Write, read, range-read and delete a probe object; return whether If-None-Match works.

    The steps retry throttling and server errors like every later request does (a store in a
    503 storm is slow, not unusable); wrong credentials or a missing bucket fail at once."""
    store = RetryingObjectStore(
        raw, attempts=options.retry_attempts, max_delay_s=options.retry_max_delay_s
    )
    key = f".streambed-probe/{uuid.uuid4().hex}"
    step = "write"
    try:
        await store.put(key, b"streambed probe")
        step = "read"
        if await store.get(key) != b"streambed probe":
            raise Unavailable("the probe object read back different bytes")
        step = "range read"
        if await store.get_range(key, 10, 15) != b"probe":
            raise Unavailable("a range read of the probe object returned the wrong bytes")
        step = "conditional write"
        conditional = False
        try:
            # Not retried: a store without conditional writes answers 501 every time.
            await raw.put(key, b"again", if_none_match=True)
        except ConditionFailed:
            conditional = True
        except Unavailable as exc:  # 501 NotImplemented and friends: no conditional writes
            log.info("conditional writes unsupported on %s: %s", options.endpoint_url, exc)
        step = "delete"
        await store.delete([key])
        return conditional
    except (Unavailable, PermissionDenied, NotFound) as exc:
        raise Unavailable(
            f"S3 store unusable: the start-up probe failed at step '{step}' on "
            f"{options.endpoint_url or 'AWS S3'} bucket {options.bucket!r}: {exc}"
        ) from exc


def _no_expect_continue(client: Any) -> Any:
    """Send bodies at once instead of asking first with ``Expect: 100-continue``.

    botocore adds that header to every PUT with a body; the HTTP client then waits for the
    server's "100 Continue" with no timeout at all, so an endpoint that accepts connections but
    never answers (a hung proxy, a wrong port on some appliance) hung the broker forever, past
    ``read_timeout_s`` and every retry. Without it, a silent server is a read timeout like any
    other. The cost is sending a body the server then refuses (wrong credentials), which only
    happens on errors."""
    client.meta.events.unregister("before-call.s3", add_expect_header)
    return client


async def open_store(options: S3Options, context: NodeContext) -> RetryingObjectStore:
    profile = options.resolved_profile()
    config = Config(
        region_name=options.region,
        connect_timeout=options.connect_timeout_s,
        read_timeout=options.read_timeout_s,
        max_pool_connections=options.max_pool_connections,
        retries={"max_attempts": 1, "mode": "standard"},  # RetryingObjectStore retries
        s3={"addressing_style": "path" if profile["path_style"] else "virtual"},
        request_checksum_calculation=str(profile["checksums"]),
        response_checksum_validation=str(profile["checksums"]),
    )
    session = aioboto3.Session(
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=(
            options.secret_access_key.get_secret_value() if options.secret_access_key else None
        ),
        aws_session_token=options.session_token.get_secret_value() if options.session_token else None,
        region_name=options.region,
    )
    stack = contextlib.AsyncExitStack()
    client = _no_expect_continue(await stack.enter_async_context(
        session.client("s3", endpoint_url=options.endpoint_url, config=config)
    ))

    def sync_client() -> Any:
        # boto3 comes with aioboto3; same credentials and settings as the async client.
        import boto3  # type: ignore[import-untyped]

        return _no_expect_continue(boto3.session.Session(
            aws_access_key_id=options.access_key_id,
            aws_secret_access_key=(
                options.secret_access_key.get_secret_value() if options.secret_access_key else None
            ),
            aws_session_token=(
                options.session_token.get_secret_value() if options.session_token else None
            ),
            region_name=options.region,
        ).client("s3", endpoint_url=options.endpoint_url, config=config))

    store = S3ObjectStore(options, client, stack, conditional_put=False, sync_client=sync_client)
    try:
        if options.create_bucket:
            try:
                await client.head_bucket(Bucket=options.bucket)
            except ClientError:
                await client.create_bucket(Bucket=options.bucket)
        conditional = await _probe(store, options) if options.probe else False
    except (ClientError, BotoCoreError, EndpointConnectionError, BotoConnectionError,
            ReadTimeoutError, OSError) as exc:
        await stack.aclose()
        raise store._translate(exc, "start-up") from exc
    except BaseException:
        await stack.aclose()
        raise
    store._caps = Capabilities(conditional_put=conditional, multipart=True)
    log.info("S3 store %s ready (conditional writes: %s)", store._where,
             "yes" if conditional else "no")
    return RetryingObjectStore(
        store, attempts=options.retry_attempts, max_delay_s=options.retry_max_delay_s
    )
