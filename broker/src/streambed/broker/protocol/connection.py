"""Sans-I/O connections (h11 style): bytes in, messages out; messages in, buffers out.

The server side::

    conn = ServerConnection()
    conn.receive_data(data)                # whatever the socket delivered
    while (request := conn.next_request()) is not NEED_DATA:
        ...                                # dispatch request.body by request.api_key
        transport.writelines(conn.encode_response(request, response_body))

A partial frame stays buffered until the rest arrives. Each frame is copied exactly once, from the
received chunks into one ``bytearray`` of the frame's size, allocated only when the whole frame is
there; decoded record data are writable views into that bytearray, so the produce path can stamp
offsets in place and hand the same memory to the WAL.

Size limits are checked on the 4-byte prefix, before anything is buffered for the frame: at most
``max_request_size`` (default 100 MiB, Kafka's ``socket.request.max.bytes``), and at most
``initial_max_request_size`` (default 1 MiB) until the connection's first request has decoded:
bytes from something that does not speak Kafka (an HTTP request, a TLS hello) announce sizes of a
gigabyte and more and are rejected at once.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from streambed.broker.protocol._wire import I32, Buffer
from streambed.broker.protocol.codec import (
    Request,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from streambed.broker.protocol.errors import CorruptFrame, FrameTooLarge, ProtocolError
from streambed.broker.protocol.headers import API_VERSIONS_KEY, RequestHeader
from streambed.broker.protocol.messages import API_SPECS

__all__ = [
    "DEFAULT_INITIAL_MAX_REQUEST_SIZE",
    "DEFAULT_MAX_REQUEST_SIZE",
    "NEED_DATA",
    "ClientConnection",
    "NeedData",
    "Response",
    "ServerConnection",
]

DEFAULT_MAX_REQUEST_SIZE: Final = 100 * 1024 * 1024
DEFAULT_INITIAL_MAX_REQUEST_SIZE: Final = 1024 * 1024
_DEFAULT_MAX_RESPONSE_SIZE: Final = 512 * 1024 * 1024
_PRODUCE = 0


class NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA
"""Returned by ``next_request``/``next_response`` when no whole frame is buffered."""


class _Frames:
    """Received bytes as a queue of chunks, cut into size-prefixed frames."""

    def __init__(self) -> None:
        self._chunks: deque[memoryview] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: Buffer) -> None:
        # bytes are immutable and can be kept by reference; anything else may be reused by the
        # caller (a receive buffer), so it is copied now.
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        if view.nbytes:
            self._chunks.append(view)
            self._size += view.nbytes

    def peek_size(self) -> int | None:
        """The size prefix of the next frame, or None while fewer than 4 bytes are buffered."""
        if self._size < 4:
            return None
        first = self._chunks[0]
        if first.nbytes >= 4:
            return int(I32.unpack_from(first, 0)[0])
        prefix = bytearray()
        for chunk in self._chunks:
            prefix += chunk[: 4 - len(prefix)]
            if len(prefix) == 4:
                break
        return int(I32.unpack_from(prefix, 0)[0])

    def take(self, size: int) -> bytearray:
        """Drop the size prefix and return the next ``size`` bytes as one new bytearray."""
        self._consume(4, None)
        frame = bytearray(size)
        self._consume(size, memoryview(frame))
        return frame

    def _consume(self, n: int, into: memoryview | None) -> None:
        self._size -= n
        pos = 0
        while n:
            chunk = self._chunks[0]
            k = min(n, chunk.nbytes)
            if into is not None:
                into[pos : pos + k] = chunk[:k]
            pos += k
            n -= k
            if k == chunk.nbytes:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[k:]


class ServerConnection:
    """The broker's side of one client connection."""

    def __init__(
        self,
        *,
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
        initial_max_request_size: int = DEFAULT_INITIAL_MAX_REQUEST_SIZE,
        versions: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        self.max_request_size = max_request_size
        self.initial_max_request_size = min(initial_max_request_size, max_request_size)
        self.versions = versions
        self.requests_decoded = 0
        self._frames = _Frames()
        self._broken: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a request."""
        return len(self._frames)

    @property
    def size_limit(self) -> int:
        if self.requests_decoded == 0:
            return self.initial_max_request_size
        return self.max_request_size

    def receive_data(self, data: Buffer) -> None:
        self._frames.append(data)

    def next_request(self) -> Request | Literal[NeedData.NEED_DATA]:
        """The next whole request, or NEED_DATA.

        Raises :class:`FrameTooLarge` (and again on every later call: the stream cannot be
        resynchronised), :class:`UnsupportedApi` with the header of a request that was skipped,
        or :class:`CorruptFrame` for a frame that was consumed but could not be decoded.
        """
        if self._broken is not None:
            raise self._broken
        size = self._frames.peek_size()
        if size is None:
            return NEED_DATA
        limit = self.size_limit
        if size < 0 or size > limit:
            self._broken = FrameTooLarge(size, limit)
            raise self._broken
        if len(self._frames) < 4 + size:
            return NEED_DATA
        frame = self._frames.take(size)
        request = decode_request(frame, self.versions)
        self.requests_decoded += 1
        return request

    def encode_response(
        self, request: Request | RequestHeader, body: Any, *, version: int | None = None
    ) -> list[Buffer]:
        """The response to ``request``, in its version unless ``version`` is given, as buffers
        for ``writelines``.

        An ApiVersions request of a version the codec does not know is answered in v0 (KIP-511:
        a v0 body with UNSUPPORTED_VERSION and the API list tells the client what to retry with).
        """
        header = request.header if isinstance(request, Request) else request
        if version is None:
            version = header.api_version
            if header.api_key == API_VERSIONS_KEY and not self._accepts(header):
                version = 0
        return encode_response(header.api_key, version, header.correlation_id, body)

    def _accepts(self, header: RequestHeader) -> bool:
        spec = API_SPECS.get(header.api_key)
        if spec is None or not spec.supports(header.api_version):
            return False
        if self.versions is None:
            return True
        allowed = self.versions.get(header.api_key)
        return allowed is not None and allowed[0] <= header.api_version <= allowed[1]


@dataclass(frozen=True, slots=True)
class Response:
    api_key: int
    api_version: int
    correlation_id: int
    body: Any


class ClientConnection:
    """The client's side: numbers requests and matches responses, which Kafka sends in order.

    Used by the tests and tools that speak raw Kafka to the broker.
    """

    def __init__(
        self, client_id: str | None = "streambed", *, max_response_size: int | None = None
    ) -> None:
        self.client_id = client_id
        self.max_response_size = max_response_size or _DEFAULT_MAX_RESPONSE_SIZE
        self._next_correlation_id = 0
        self._pending: deque[tuple[int, int, int]] = deque()
        self._frames = _Frames()

    def send_request(self, api_key: int, api_version: int, body: Any) -> tuple[int, list[Buffer]]:
        """``(correlation_id, buffers)``; a Produce with ``acks=0`` expects no response."""
        correlation_id = self._next_correlation_id
        self._next_correlation_id = (correlation_id + 1) & 0x7FFFFFFF
        header = RequestHeader(api_key, api_version, correlation_id, self.client_id)
        buffers = encode_request(header, body)
        if not (api_key == _PRODUCE and body.acks == 0):
            self._pending.append((correlation_id, api_key, api_version))
        return correlation_id, buffers

    def receive_data(self, data: Buffer) -> None:
        self._frames.append(data)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def next_response(self) -> Response | Literal[NeedData.NEED_DATA]:
        size = self._frames.peek_size()
        if size is None:
            return NEED_DATA
        if size < 4 or size > self.max_response_size:
            raise FrameTooLarge(size, self.max_response_size)
        if len(self._frames) < 4 + size:
            return NEED_DATA
        if not self._pending:
            raise CorruptFrame("response received while no request is in flight")
        frame = self._frames.take(size)
        correlation_id, api_key, api_version = self._pending.popleft()
        got, body = decode_response(api_key, api_version, frame)
        if got != correlation_id:
            raise CorruptFrame(f"response has correlation id {got}, expected {correlation_id}")
        return Response(api_key, api_version, correlation_id, body)
