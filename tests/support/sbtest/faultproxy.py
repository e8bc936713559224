"""A small HTTP/1.1 fault proxy for S3 servers: 503 SlowDown storms and dropped responses.

Each request from the client is parsed (head + Content-Length body), then, by a seeded random draw:

- ``slowdown``: answered ``503 SlowDown`` with S3's XML error, never forwarded;
- ``drop``: forwarded to the server (so a PUT really happens), but the connection is closed without
  an answer — the client cannot know whether the write landed;
- ``stall``: forwarded, but the answer is held for ``stall_s`` seconds and then dropped: a server
  that stops answering, which only the client's read timeout ends;
- otherwise forwarded and the answer relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

_SLOWDOWN_BODY = (
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>fault</RequestId></Error>"
)
_SLOWDOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    + b"Content-Length: %d\r\n\r\n" % len(_SLOWDOWN_BODY)
    + _SLOWDOWN_BODY
)


async def _read_message(
    reader: asyncio.StreamReader,
    head_only_body: bool = False,
    client: asyncio.StreamWriter | None = None,
) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length, chunked, kept = 0, False, [lines[0]]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        if key == b"expect" and client is not None:
            # Answer 100-continue ourselves and do not pass the expectation on.
            client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await client.drain()
            continue
        kept.append(line)
    head = b"\r\n".join(kept)
    if head_only_body:
        return head
    if not chunked:
        return head + await reader.readexactly(length)
    body = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        chunk = await reader.readexactly(size + 2)
        body += size_line + chunk
        if size == 0:
            return head + body


@dataclass
class FaultProxy:
    upstream_port: int
    slowdown: float = 0.0
    drop: float = 0.0
    stall: float = 0.0
    stall_s: float = 5.0
    seed: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"forwarded": 0, "slowdown": 0, "drop": 0, "stall": 0}
    )
    requests: dict[str, int] = field(default_factory=dict)
    """Requests received, by S3 operation (``PUT``, ``GET``, ``DELETE``, ``LIST``, ``POST`` …)."""
    bytes_in: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _count(self, request: bytes) -> None:
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = line.partition(" ")
        target = rest.rsplit(" ", 1)[0]
        path, _, query = target.partition("?")
        if method == "GET" and (path.count("/") <= 1 or "list-type" in query or "prefix=" in query):
            op = "LIST"
        else:
            op = method
        self.requests[op] = self.requests.get(op, 0) + 1
        self.bytes_in += len(request)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            while True:
                try:
                    request = await _read_message(reader, client=writer)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self._count(request)
                roll = self._rng.random()
                if roll < self.slowdown:
                    self.counts["slowdown"] += 1
                    writer.write(_SLOWDOWN)
                    await writer.drain()
                    return
                up_writer.write(request)
                await up_writer.drain()
                is_head = request.startswith(b"HEAD ")
                response = await _read_message(up_reader, head_only_body=is_head)
                if roll < self.slowdown + self.drop:
                    self.counts["drop"] += 1
                    return  # the server did the work; the client never hears of it
                if roll < self.slowdown + self.drop + self.stall:
                    self.counts["stall"] += 1
                    await asyncio.sleep(self.stall_s)
                    return  # the client gave up long ago (read timeout)
                self.counts["forwarded"] += 1
                writer.write(response)
                await writer.drain()
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
