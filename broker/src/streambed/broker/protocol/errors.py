"""Errors of the Kafka codec: Kafka's error codes and the exceptions the decoder raises.

Everything the decoder rejects is a :class:`ProtocolError`, which is both a ``ValueError`` and a
:class:`streambed.core.errors.DataError`, so the server needs one ``except`` clause to turn bad bytes
from one client into "close that connection". The subclasses say what the server can do better than
closing:

- :class:`UnsupportedVersion` / :class:`UnknownApiKey`: the frame was consumed and the connection is
  still in sync; ``header`` carries the correlation id. Kafka answers an ApiVersions request of an
  unknown version with an ApiVersionsResponse v0 and error 35 (KIP-511) and closes the connection for
  any other API.
- :class:`FrameTooLarge`: raised from the 4-byte size prefix, before the frame is buffered. The stream
  cannot be resynchronised: close the connection.
- :class:`RecordBatchError` carries the Kafka error code the produce path answers with
  (CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streambed.broker.protocol._error_codes import ErrorCode
from streambed.core.errors import DataError

if TYPE_CHECKING:
    from streambed.broker.protocol.headers import RequestHeader

__all__ = [
    "CorruptFrame",
    "ErrorCode",
    "FrameTooLarge",
    "ProtocolError",
    "RecordBatchError",
    "UnknownApiKey",
    "UnsupportedApi",
    "UnsupportedVersion",
]


class ProtocolError(DataError, ValueError):
    """Bytes received from a peer that do not form a valid Kafka frame, header or body."""


class CorruptFrame(ProtocolError):
    """A header or body that cannot be decoded: truncated, lying lengths or counts, bad UTF-8."""


class FrameTooLarge(ProtocolError):
    """The size prefix announces a frame over the connection's limit (or a negative size)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"negative frame size {size} (not a Kafka client, or a corrupt stream)"
            if size < 0
            else f"frame of {size} bytes is over the limit of {limit} bytes"
        )
        self.size = size
        self.limit = limit


class UnsupportedApi(ProtocolError):
    """A well-framed request the codec cannot decode; the connection stays in sync."""

    def __init__(self, message: str, header: RequestHeader) -> None:
        super().__init__(message)
        self.header = header

    @property
    def api_key(self) -> int:
        return self.header.api_key

    @property
    def api_version(self) -> int:
        return self.header.api_version

    @property
    def correlation_id(self) -> int:
        return self.header.correlation_id


class UnknownApiKey(UnsupportedApi):
    """The API key is not one this codec (or the broker's advertised table) knows."""


class UnsupportedVersion(UnsupportedApi):
    """The API is known but this version of it is outside the supported range."""


class RecordBatchError(ProtocolError):
    """A record batch failed validation; ``error_code`` is the Kafka error to answer with."""

    def __init__(self, message: str, error_code: ErrorCode = ErrorCode.CORRUPT_MESSAGE) -> None:
        super().__init__(message)
        self.error_code = error_code
