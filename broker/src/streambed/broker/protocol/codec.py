"""Whole-frame encoding and decoding: header + body, for requests and responses.

A *frame* here is what follows the 4-byte size prefix. Decoding returns message objects whose
``records`` fields are views into the frame (never copies); encoding returns a list of buffers,
size prefix first, where large record data is passed through as its own buffers so that the server
can hand the list to ``transport.writelines`` without joining it.

Bodies are decoded leniently at the end, as Kafka does: bytes after the last field are ignored.
Unknown tagged fields are skipped and dropped (a broker never forwards a request, so it has no use
for them; Java keeps them only to re-serialise).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

from streambed.broker.protocol._spec import ApiSpec
from streambed.broker.protocol._wire import I32, Buffer, skip_tagged_fields
from streambed.broker.protocol.errors import (
    CorruptFrame,
    ProtocolError,
    UnknownApiKey,
    UnsupportedVersion,
)
from streambed.broker.protocol.headers import (
    RequestHeader,
    decode_request_header_prefix,
    encode_request_header,
    encode_response_header,
    response_header_version,
)
from streambed.broker.protocol.messages import API_SPECS, SUPPORTED_VERSIONS

__all__ = [
    "SUPPORTED_VERSIONS",
    "Request",
    "buffers_size",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]

_SPECS = dict(API_SPECS)  # a plain dict: faster lookups than the read-only mapping

# What a decoder raises on bytes that lie; the interpreter's own bounds checks (struct.error,
# IndexError) stand in for explicit ones in the generated code.
_DECODE_ERRORS = (struct.error, IndexError, ValueError, OverflowError)


class Request(NamedTuple):
    """A decoded request: its header, its body (the API's request class) and its frame size."""

    header: RequestHeader
    body: Any
    size: int

    @property
    def api_key(self) -> int:
        return self.header.api_key

    @property
    def api_version(self) -> int:
        return self.header.api_version

    @property
    def correlation_id(self) -> int:
        return self.header.correlation_id

    @property
    def client_id(self) -> str | None:
        return self.header.client_id


def _view(frame: Buffer) -> memoryview:
    view = frame if isinstance(frame, memoryview) else memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def decode_request(frame: Buffer, versions: Mapping[int, tuple[int, int]] | None = None) -> Request:
    """Decode one request frame (without its size prefix).

    ``versions`` narrows what is accepted (the broker's advertised ranges); by default every
    version the codec implements. Raises :class:`UnknownApiKey` / :class:`UnsupportedVersion`
    (which carry the header) or :class:`CorruptFrame`.
    """
    view = _view(frame)
    try:
        header, pos = decode_request_header_prefix(view)
    except ProtocolError:
        raise
    except _DECODE_ERRORS as exc:
        raise CorruptFrame(f"malformed request header: {exc}") from exc
    api_key, version = header.api_key, header.api_version
    spec = _SPECS.get(api_key)
    if versions is None:
        if spec is None:
            raise UnknownApiKey(f"unknown API key {api_key}", header)
        lo, hi = spec.min_version, spec.max_version
    else:
        allowed = versions.get(api_key)
        if spec is None or allowed is None:
            raise UnknownApiKey(f"unknown API key {api_key}", header)
        lo, hi = max(allowed[0], spec.min_version), min(allowed[1], spec.max_version)
    if not lo <= version <= hi:
        raise UnsupportedVersion(
            f"{spec.name} v{version} is not supported (supported: v{lo}-v{hi})", header
        )
    try:
        flexible_min = spec.flexible_min
        if flexible_min is not None and version >= flexible_min:
            if view[pos] == 0:
                pos += 1
            else:
                pos = skip_tagged_fields(view, pos)
        body, _end = spec.request_decoders[version - spec.min_version](view, pos)
    except _DECODE_ERRORS as exc:
        if isinstance(exc, ProtocolError):
            exc.add_note(
                f"in {spec.name} v{version} request, correlation id {header.correlation_id}"
            )
            raise
        raise CorruptFrame(
            f"malformed {spec.name} v{version} request (correlation id {header.correlation_id}): "
            f"{exc}"
        ) from exc
    return Request(header, body, len(view))


def _finish(chunks: list[Buffer], first: bytearray, last: bytearray) -> list[Buffer]:
    if last or not chunks:
        chunks.append(last)
    size = buffers_size(chunks) - 4
    I32.pack_into(first, 0, size)
    return chunks


def buffers_size(buffers: list[Buffer]) -> int:
    return sum(b.nbytes if isinstance(b, memoryview) else len(b) for b in buffers)


def _check_body(spec: ApiSpec, version: int, body: object, cls: type[Any], what: str) -> None:
    if not spec.supports(version):
        raise ValueError(
            f"{spec.name} v{version} is outside the codec's v{spec.min_version}-v{spec.max_version}"
        )
    if not isinstance(body, cls):
        raise TypeError(
            f"{spec.name} {what} body must be {cls.__name__}, not {type(body).__name__}"
        )


def encode_response(api_key: int, api_version: int, correlation_id: int, body: Any) -> list[Buffer]:
    """Size prefix, response header and body, as a list of buffers (see the module docstring)."""
    spec = API_SPECS[api_key]
    _check_body(spec, api_version, body, spec.response_class, "response")
    first = bytearray(4)
    flexible = spec.is_flexible(api_version)
    encode_response_header(first, correlation_id, response_header_version(api_key, flexible))
    chunks: list[Buffer] = []
    last = spec.response_encoders[api_version - spec.min_version](body, first, chunks)
    return _finish(chunks, first, last)


def encode_request(header: RequestHeader, body: Any) -> list[Buffer]:
    """Size prefix, request header and body (the client side; tests and tools use it)."""
    spec = API_SPECS[header.api_key]
    _check_body(spec, header.api_version, body, spec.request_class, "request")
    first = bytearray(4)
    encode_request_header(first, header, spec.is_flexible(header.api_version))
    chunks: list[Buffer] = []
    last = spec.request_encoders[header.api_version - spec.min_version](body, first, chunks)
    return _finish(chunks, first, last)


def decode_response(api_key: int, api_version: int, frame: Buffer) -> tuple[int, Any]:
    """Decode a response frame (without its size prefix): ``(correlation_id, body)``."""
    spec = API_SPECS[api_key]
    if not spec.supports(api_version):
        raise ValueError(f"{spec.name} v{api_version} is outside the codec's range")
    view = _view(frame)
    try:
        (correlation_id,) = I32.unpack_from(view, 0)
        pos = 4
        if response_header_version(api_key, spec.is_flexible(api_version)) >= 1:
            pos = skip_tagged_fields(view, pos)
        body, _end = spec.response_decoders[api_version - spec.min_version](view, pos)
    except ProtocolError:
        raise
    except _DECODE_ERRORS as exc:
        raise CorruptFrame(f"malformed {spec.name} v{api_version} response: {exc}") from exc
    return correlation_id, body
