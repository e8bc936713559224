"""Request and response headers.

Wire format (size prefix excluded)::

    RequestHeader v1:  api_key int16, api_version int16, correlation_id int32,
                       client_id nullable int16-length string
    RequestHeader v2:  v1 + tagged fields  (client_id stays a *legacy* string, not compact)
    ResponseHeader v0: correlation_id int32
    ResponseHeader v1: v0 + tagged fields

The header version follows the flexibility of the body's version (v2/v1 for flexible versions), with
one exception: an ApiVersions response always has header v0, so a client that does not know the
broker's versions yet can still read it (KIP-511).
"""

from __future__ import annotations

from struct import Struct
from typing import NamedTuple

from streambed.broker.protocol._wire import read_nullable_string, write_nullable_string
from streambed.broker.protocol.errors import CorruptFrame

__all__ = [
    "API_VERSIONS_KEY",
    "RequestHeader",
    "decode_request_header_prefix",
    "encode_request_header",
    "encode_response_header",
    "response_header_version",
]

API_VERSIONS_KEY = 18

_FIXED = Struct(">hhi")
_CORRELATION = Struct(">i")


class RequestHeader(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None = None


def response_header_version(api_key: int, flexible: bool) -> int:
    if api_key == API_VERSIONS_KEY:
        return 0
    return 1 if flexible else 0


def decode_request_header_prefix(frame: memoryview) -> tuple[RequestHeader, int]:
    """The part common to header v1 and v2; the caller skips v2's tagged fields once it knows the
    version is flexible (it needs the API key and version for that)."""
    if len(frame) < _FIXED.size + 2:
        raise CorruptFrame(f"request of {len(frame)} bytes is shorter than a request header")
    api_key, api_version, correlation_id = _FIXED.unpack_from(frame, 0)
    client_id, pos = read_nullable_string(frame, _FIXED.size)
    return RequestHeader(api_key, api_version, correlation_id, client_id), pos


def encode_request_header(out: bytearray, header: RequestHeader, flexible: bool) -> None:
    out += _FIXED.pack(header.api_key, header.api_version, header.correlation_id)
    write_nullable_string(out, header.client_id)
    if flexible:
        out += b"\x00"


def encode_response_header(out: bytearray, correlation_id: int, version: int) -> None:
    out += _CORRELATION.pack(correlation_id)
    if version >= 1:
        out += b"\x00"
