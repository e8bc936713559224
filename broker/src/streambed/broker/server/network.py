"""The Kafka listener: asyncio connections on the sans-I/O codec.

Per connection, requests are decoded as bytes arrive and each starts its handler at once, in
arrival order, so a pipelining producer's batches reach the engine in order (the produce handler
does everything up to ``stream.append`` without awaiting). Responses are written strictly in
request order by one writer task per connection. At most ``max_in_flight`` requests of a
connection are in progress; beyond that the connection stops reading (TCP pushes back on the
client), and the writer waits for the socket to drain (a slow reader pushes back on us).

Fetches are the exception: a connection has one Fetch at a time, and the next one is not read
until the previous response has been written (Kafka mutes a connection per request). A response
holds up to ``fetch.max.bytes`` of record data; 64 pipelined fetches on a connection that never
reads its answers held 64 of them (gigabytes over a few connections). Real consumers send one
fetch per broker at a time, so they do not notice.

Bad bytes close only that connection, after one log line; unsupported versions of ApiVersions get
Kafka's v0 answer with UNSUPPORTED_VERSION and the supported list (KIP-511).

Graceful shutdown: stop accepting, stop reading, let the requests already read finish and their
responses be written (bounded by a timeout), then close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from streambed.broker.metrics import RequestMetrics
from streambed.broker.protocol.codec import Request, buffers_size
from streambed.broker.protocol.connection import NEED_DATA, ServerConnection
from streambed.broker.protocol.errors import (
    ErrorCode,
    FrameTooLarge,
    ProtocolError,
    UnsupportedApi,
)
from streambed.broker.protocol.headers import API_VERSIONS_KEY
from streambed.broker.protocol.messages.api_versions import ApiVersion, ApiVersionsResponse
from streambed.broker.server.context import Handler, RequestContext
from streambed.core.errors import Unavailable

__all__ = ["NO_RESPONSE", "KafkaListener"]

log = logging.getLogger("streambed.broker.network")

FETCH_KEY: Final = 1

NO_RESPONSE: Final = object()
"""Returned by a handler for a request that gets no response (Produce with acks=0)."""

_READ_SIZE = 256 * 1024


class _Connection:
    def __init__(
        self,
        listener: KafkaListener,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.listener = listener
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.codec = ServerConnection(
            max_request_size=listener.max_request_size, versions=listener.versions
        )
        # (request, its handler, when it was read)
        self.queue: asyncio.Queue[tuple[Request | None, asyncio.Future[Any], float]] = (
            asyncio.Queue(listener.max_in_flight)
        )
        # Resolved once the connection's latest Fetch response is written (or dropped).
        self.fetch_written: asyncio.Future[None] | None = None
        self.metrics = listener.metrics
        self.closing = False
        self.last_active = time.monotonic()
        self.answering = False  # the writer holds a request it has not answered yet

    async def run(self) -> None:
        writer_task = asyncio.create_task(self._write_loop())
        try:
            await self._read_loop()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # shutdown: stop reading, finish what was read
        finally:
            # Let queued requests finish and their responses go out (shutdown bounds this).
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait((None, done, 0.0))
            with contextlib.suppress(BaseException):
                await writer_task
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), 5)

    async def _read_loop(self) -> None:
        codec = self.codec
        while not self.closing:
            data = await self.reader.read(_READ_SIZE)
            if not data:
                return
            self.last_active = time.monotonic()
            self.metrics.bytes_received += len(data)
            codec.receive_data(data)
            while not self.closing:
                try:
                    request = codec.next_request()
                except UnsupportedApi as exc:
                    if exc.api_key == API_VERSIONS_KEY:
                        await self._unsupported_api_versions(exc)
                        continue
                    log.warning("closing connection from %s: %s", self.peer, exc)
                    return
                except FrameTooLarge as exc:
                    log.warning("closing connection from %s: %s", self.peer, exc)
                    return
                except ProtocolError as exc:
                    log.warning("closing connection from %s: bad request: %s", self.peer, exc)
                    return
                if request is NEED_DATA:
                    break
                await self._dispatch(request)

    async def _dispatch(self, request: Request) -> None:
        handler = self.listener.handlers.get(request.api_key)
        ctx = RequestContext(
            request.api_key,
            request.api_version,
            request.correlation_id,
            request.client_id,
            self.peer,
        )
        if handler is None:  # decodable but not served: the codec's table is a superset
            log.warning(
                "closing connection from %s: API key %d is not served", self.peer, request.api_key
            )
            self.closing = True
            return
        if request.api_key == FETCH_KEY:
            if self.fetch_written is not None:
                await self.fetch_written  # one Fetch response in memory per connection
            self.fetch_written = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        task = asyncio.ensure_future(handler(ctx, request.body))
        await self.queue.put((request, task, started))

    async def _unsupported_api_versions(self, exc: UnsupportedApi) -> None:
        body = ApiVersionsResponse(
            error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=self.listener.api_version_list()
        )
        done = asyncio.get_running_loop().create_future()
        done.set_result(body)
        await self.queue.put((Request(exc.header, None, 0), done, time.monotonic()))

    async def _write_loop(self) -> None:
        try:
            await self._write_responses()
        finally:
            self._fetch_done()  # never leave the reader waiting on a response that is gone

    def _fetch_done(self) -> None:
        if self.fetch_written is not None and not self.fetch_written.done():
            self.fetch_written.set_result(None)

    async def _write_responses(self) -> None:
        while True:
            request, task, started = await self.queue.get()
            if request is None:
                return
            self.answering = True
            try:
                if not await self._answer(request, task, started):
                    return  # the connection was aborted
            finally:
                self.answering = False
                self.last_active = time.monotonic()

    async def _answer(self, request: Request, task: asyncio.Future[Any], started: float) -> bool:
        """Wait for one handler and write its response; False when the connection is gone."""
        try:
            body = await task
        except Exception:
            log.exception(
                "request %s v%d from %s (client %s) failed; closing the connection",
                request.api_key,
                request.api_version,
                self.peer,
                request.client_id,
            )
            self._abort()
            return False
        if body is NO_RESPONSE:
            self.metrics.observe(request.api_key, time.monotonic() - started)
            return True
        try:
            buffers = self.codec.encode_response(request, body)
            self.writer.writelines(buffers)
            self.metrics.bytes_sent += buffers_size(buffers)
            del body, buffers
            await self.writer.drain()
        except ConnectionError:
            self._abort()
            return False
        if request.api_key == FETCH_KEY:
            self._fetch_done()
        self.metrics.observe(request.api_key, time.monotonic() - started)
        return True

    def _abort(self) -> None:
        self.closing = True
        self.writer.close()
        # Handlers still queued run to completion (their effects must not be half-done).
        while not self.queue.empty():
            _, task, _ = self.queue.get_nowait()
            task.add_done_callback(_ignore_result)


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class KafkaListener:
    """Accepts Kafka connections on the configured listeners."""

    def __init__(
        self,
        handlers: Mapping[int, Handler],
        versions: Mapping[int, tuple[int, int]],
        *,
        max_request_size: int,
        max_in_flight: int = 64,
        metrics: RequestMetrics | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else RequestMetrics()
        self.handlers = dict(handlers)
        self.versions = dict(versions)
        self.max_request_size = max_request_size
        self.max_in_flight = max_in_flight
        self._servers: list[asyncio.Server] = []
        self._connections: dict[_Connection, asyncio.Task[None]] = {}
        self.idle_timeout_s = idle_timeout_s
        self.idle_closed = 0
        self._sweeper: asyncio.Task[None] | None = None

    def api_version_list(self) -> list[ApiVersion]:
        return [
            ApiVersion(key, low, high) for key, (low, high) in sorted(self.versions.items())
        ]

    async def listen(self, host: str | None, port: int) -> asyncio.Server:
        try:
            server = await asyncio.start_server(
                self._accept, host, port, limit=_READ_SIZE, backlog=1024
            )
        except OSError as exc:
            raise Unavailable(
                f"cannot listen for Kafka clients on {host or '*'}:{port}: "
                f"{exc.strerror or exc}"
            ) from exc
        self._servers.append(server)
        if self.idle_timeout_s is not None and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_idle(), name="idle-connections")
        return server

    async def _sweep_idle(self) -> None:
        """Close connections that sent nothing for ``idle_timeout_s`` and wait for nothing
        (Kafka's connections.max.idle.ms): clients reconnect when they need to, and abandoned
        connections do not hold descriptors forever. One pass per tenth of the timeout (at most
        every 30 s) instead of a timer on every read."""
        assert self.idle_timeout_s is not None
        timeout = self.idle_timeout_s
        while True:
            await asyncio.sleep(min(max(timeout / 10, 0.05), 30.0))
            now = time.monotonic()
            for connection in list(self._connections):
                if (now - connection.last_active >= timeout and connection.queue.empty()
                        and not connection.answering):
                    log.debug("closing connection from %s: idle for %.0f s", connection.peer,
                              now - connection.last_active)
                    self.idle_closed += 1
                    connection.closing = True
                    connection.writer.close()

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                import socket

                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(self, reader, writer)
        self.metrics.connections_accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._connections[connection] = task
        log.debug("connection from %s", connection.peer)
        try:
            await connection.run()
        except asyncio.CancelledError:
            # Shutdown cancelled the connection a second time (or the loop is closing): it is
            # done either way, and the streams API would log the cancellation as an error.
            pass
        finally:
            self._connections.pop(connection, None)

    async def close(self, timeout: float) -> None:
        """Stop accepting, stop reading, finish in-flight requests (up to ``timeout``)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for server in self._servers:
            server.close()
        tasks = list(self._connections.values())
        for connection in list(self._connections):
            connection.closing = True
        for task in tasks:
            task.cancel()  # interrupts the read; run() then drains what was read
        if tasks:
            _done, stuck = await asyncio.wait(tasks, timeout=timeout)
            if stuck:
                log.warning("%d connection(s) still busy after %.0f s; closing them", len(stuck),
                            timeout)
                for connection in list(self._connections):
                    connection.writer.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        self._servers.clear()
