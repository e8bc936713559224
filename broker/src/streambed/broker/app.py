"""Broker lifecycle: open storage, recover, serve, shut down gracefully.

``startup → serve → graceful shutdown`` is explicit (uvicorn's ``server.py`` is the model): signals
only set an event; the shutdown path stops accepting, lets in-flight requests finish (bounded by
``broker.shutdown_timeout_s``), then closes storage in reverse order of opening.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streambed.broker.metrics import MetricsServer, Sample, family
from streambed.broker.server.kafka import KafkaServer
from streambed.broker.watchdog import LoopWatchdog
from streambed.core import __version__
from streambed.core.config import ResolvedComponent, ResolvedConfig
from streambed.core.context import NodeContext
from streambed.core.errors import Unavailable
from streambed.core.lifecycle import BrokerInfo
from streambed.core.plugins import PluginHost
from streambed.core.stream.engine import StreamEngine

__all__ = ["Broker", "lock_data_dir", "run_broker"]

log = logging.getLogger("streambed.broker")

LOCK_FILE = ".lock"


def lock_data_dir(data_dir: Path) -> int:
    """Hold ``data_dir/.lock`` (an exclusive ``flock``, as Kafka locks its log directories) for
    as long as the returned descriptor is open. A second broker on the same directory stops
    here, before it touches the WAL or registers itself in metadata (which would fence the
    running broker)."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise Unavailable(
            f"the data directory {data_dir} (broker.data_dir) is in use by another broker "
            f"process (pid {holder}); stop it first or give this broker its own data_dir"
        ) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


# Options that say where a component keeps its data (shown when it opens; never secrets).
_LOCATION_OPTIONS = ("dir", "root", "path", "url", "endpoint_url", "bucket", "prefix")


async def open_component(component: ResolvedComponent, ctx: NodeContext) -> Any:
    """Build a component with its registered factory, naming it on failure."""
    where = ", ".join(
        f"{key} {value}"
        for key in _LOCATION_OPTIONS
        if (value := getattr(component.options, key, None)) not in (None, "")
    )
    log.info(
        "opening %s: type %s (plugin %s)%s",
        component.role,
        component.implementation.name,
        component.implementation.plugin,
        f": {where}" if where else "",
    )
    try:
        return await component.implementation.factory(component.options, ctx)
    except OSError as exc:
        raise Unavailable(
            f"cannot open {component.role} (type {component.implementation.name}): "
            f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
        ) from exc


class Broker:
    def __init__(self, config: ResolvedConfig, host: PluginHost) -> None:
        self.config = config
        self.host = host
        settings = config.settings.broker
        self.ctx = NodeContext(
            data_dir=settings.data_dir,
            node_id=settings.node_id,
            node_epoch=time.time_ns() // 1_000_000,
        )
        self.info = BrokerInfo(
            node_id=settings.node_id,
            listeners=list(settings.listeners),
            data_dir=settings.data_dir,
            components={
                "wal": config.wal.implementation.name,
                "objects": config.objects.implementation.name,
                "metadata": config.metadata.implementation.name,
            },
        )
        self._opened: list[Any] = []
        self.engine: StreamEngine | None = None
        self.kafka: KafkaServer | None = None
        self.watchdog: LoopWatchdog | None = None
        self.metrics: MetricsServer | None = None
        self.stopped = asyncio.Event()
        self._lock_fd: int | None = None

    async def start(self) -> None:
        settings = self.config.settings.broker
        if self.config.is_default:
            log.info(
                "no --config given: using the embedded default (local WAL file, local object "
                "directory, local metadata) under %s",
                settings.data_dir.resolve(),
            )
        log.info("streambed %s starting node %d (config %s, data_dir %s)", __version__,
                 settings.node_id, self.config.source, settings.data_dir.resolve())
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = lock_data_dir(settings.data_dir)
        except OSError as exc:
            raise Unavailable(
                f"cannot create the data directory {settings.data_dir} (broker.data_dir): "
                f"{exc.strerror or exc}"
            ) from exc
        metadata = await open_component(self.config.metadata, self.ctx)
        self._opened.append(metadata)
        objects = await open_component(self.config.objects, self.ctx)
        self._opened.append(objects)
        wal = await open_component(self.config.wal, self.ctx)
        self.engine = StreamEngine(
            wal, objects, metadata, self.config.settings.storage.engine, node_id=settings.node_id
        )
        started = time.monotonic()
        await self.engine.start()  # replays the WAL and uploads what it held
        log.info(
            "storage recovered in %.2f s (%d streams)",
            time.monotonic() - started,
            len(self.engine.stream_ids()),
        )
        self.kafka = KafkaServer(settings, self.engine, metadata)
        await self.kafka.start()
        if settings.metrics_listener is not None:
            host, _, port = settings.metrics_listener.rpartition(":")
            self.metrics = MetricsServer([self.kafka.metric_families, self._process_families])
            bound = await self.metrics.listen(host.strip("[]") or "0.0.0.0", int(port))
            log.info("metrics at http://%s:%d/metrics", *bound)
        # What start-up built lives as long as the broker: move it out of the collector's sight,
        # so full collections only walk what serving creates (they stalled the loop for 50+ ms).
        gc.collect()
        gc.freeze()
        # Serving allocates many short-lived objects (requests, responses, futures), nearly none
        # in cycles: collect the young generation far less often, and the old one rarely, so
        # collection pauses stop showing in produce latency.
        gc.set_threshold(20_000, 50, 100)
        # Watch the loop from here on (the deliberate full collection above is not a stall).
        self.watchdog = LoopWatchdog()
        self.watchdog.start()
        self.host.broker_started(self.info)
        log.info("broker %d started", settings.node_id)

    def _process_families(self) -> Iterator[Sample]:
        watchdog = self.watchdog
        if watchdog is not None:
            yield family("streambed_event_loop_stalls_total", "counter",
                         "Times the event loop was blocked for 100 ms or more.",
                         [((), watchdog.stalls)])
            yield family("streambed_event_loop_worst_stall_seconds", "gauge",
                         "The longest event-loop stall since start.",
                         [((), watchdog.worst_stall_s)])
        rss = _resident_bytes()
        if rss is not None:
            yield family("streambed_process_resident_memory_bytes", "gauge",
                         "Resident memory of the broker process (caches, Python objects, "
                         "allocator slack): what to alert on, unlike the cache gauges alone.",
                         [((), rss)])
        yield family("streambed_build_info", "gauge", "The running streambed version.",
                     [((("version", __version__),), 1)])

    async def stop(self) -> None:
        log.info("broker %d stopping", self.info.node_id)
        self.host.broker_stopping(self.info)
        if self.metrics is not None:
            await self.metrics.close()
            self.metrics = None
        if self.watchdog is not None:
            await self.watchdog.close()
            self.watchdog = None
        if self.kafka is not None:
            try:
                await self.kafka.close()  # finishes in-flight requests
            except Exception:
                log.exception("closing the Kafka server failed")
            self.kafka = None
        if self.engine is not None:
            try:
                await self.engine.close()  # uploads pending data, closes the WAL
            except Exception:
                log.exception("closing the stream engine failed; data stays in the WAL")
            self.engine = None
        for component in reversed(self._opened):
            try:
                await component.close()
            except Exception:
                log.exception("closing %r failed", component)
        self._opened.clear()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # releases the data directory's lock
            self._lock_fd = None
        log.info("broker %d stopped cleanly", self.info.node_id)
        self.stopped.set()


def _resident_bytes() -> int | None:
    """The process's resident set size (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


async def _serve(config: ResolvedConfig, host: PluginHost) -> int:
    broker = Broker(config, host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    signalled = asyncio.ensure_future(stop.wait())
    starting = asyncio.ensure_future(broker.start())
    await asyncio.wait([starting, signalled], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        # Ctrl-C while start-up waits on storage (a slow or silent endpoint, WAL recovery).
        log.info("signal received during start-up: stopping")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        await broker.stop()
        return 0
    try:
        starting.result()
    except BaseException:
        signalled.cancel()
        await broker.stop()
        raise
    assert broker.engine is not None
    fenced = asyncio.ensure_future(broker.engine.wait_failed())
    await asyncio.wait([signalled, fenced], return_when=asyncio.FIRST_COMPLETED)
    if fenced.done():
        signalled.cancel()
        # Another process took over this node's streams: serving on would only answer
        # NOT_LEADER_OR_FOLLOWER while clients keep coming back here. Exit instead.
        log.error("this broker's storage was taken over by another process (%s); shutting "
                  "down", fenced.result())
        await broker.stop()
        return 1
    fenced.cancel()
    log.info("signal received: shutting down gracefully")
    await broker.stop()
    return 0


def run_broker(config: ResolvedConfig, host: PluginHost) -> int:
    """Run a broker until SIGINT/SIGTERM; returns the process exit status."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(config, host))
    return uvloop.run(_serve(config, host))
