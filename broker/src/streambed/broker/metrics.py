"""Prometheus metrics: requests per API and their latency, network bytes, partitions, storage.

With ``broker.metrics_listener: "0.0.0.0:9464"`` the broker serves ``GET /metrics`` in the
Prometheus text format (version 0.0.4) from its own event loop; nothing is served by default.

Instruments on the request path are plain integers and bucket arrays (one bisect and three
additions per request, no locks: everything runs on the event loop). Everything else is read when
scraped: the partitions' offsets and size estimates, the WAL's stats, the engine's caches, upload
and compaction counts, the event-loop watchdog. The per-partition series (bytes appended, offsets,
size) are what a balancer needs to see a broker's load; they carry ``topic`` and ``partition``
labels.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from streambed.broker.protocol.messages import API_SPECS
from streambed.core.errors import Unavailable

__all__ = ["Histogram", "MetricsServer", "RequestMetrics", "Sample", "render"]

log = logging.getLogger("streambed.broker.metrics")

# Request latency buckets (seconds): 0.25 ms .. 10 s, enough resolution around the 1-10 ms where
# produce latency lives.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)


class Histogram:
    """Cumulative-bucket histogram with fixed upper bounds (Prometheus ``le`` semantics)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` for every bound and +Inf."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append((_number(bound), running))
        return out


@dataclass(slots=True)
class RequestMetrics:
    """What the Kafka listener measures: requests by API, their latency, bytes on the wire."""

    latency: dict[int, Histogram] = field(default_factory=dict)
    bytes_received: int = 0
    bytes_sent: int = 0
    connections_accepted: int = 0

    def observe(self, api_key: int, seconds: float) -> None:
        histogram = self.latency.get(api_key)
        if histogram is None:
            histogram = self.latency[api_key] = Histogram()
        histogram.observe(seconds)


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric family: its samples are ``(suffix, labels, value)``."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]


def family(name: str, kind: str, help_text: str,
           values: Iterable[tuple[tuple[tuple[str, str], ...], float]]) -> Sample:
    return Sample(name, kind, help_text, tuple(("", labels, v) for labels, v in values))


def histogram_family(name: str, help_text: str,
                     series: Iterable[tuple[tuple[tuple[str, str], ...], Histogram]]) -> Sample:
    samples: list[tuple[str, tuple[tuple[str, str], ...], float]] = []
    for labels, h in series:
        for le, count in h.cumulative():
            samples.append(("_bucket", (*labels, ("le", le)), count))
        samples.append(("_sum", labels, h.sum))
        samples.append(("_count", labels, h.count))
    return Sample(name, "histogram", help_text, tuple(samples))


_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Sample]) -> str:
    """The Prometheus text exposition format (0.0.4)."""
    lines: list[str] = []
    for fam in families:
        assert _NAME.match(fam.name), fam.name
        lines.append(f"# HELP {fam.name} {fam.help.translate(_ESCAPES)}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for suffix, labels, value in fam.samples:
            if labels:
                text = ",".join(f'{k}="{v.translate(_ESCAPES)}"' for k, v in labels)
                lines.append(f"{fam.name}{suffix}{{{text}}} {_number(value)}")
            else:
                lines.append(f"{fam.name}{suffix} {_number(value)}")
    return "\n".join(lines) + "\n"


Collector = Callable[[], Iterator[Sample]]


class MetricsServer:
    """A minimal HTTP/1.1 server for ``GET /metrics`` on the broker's event loop."""

    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors
        self.scrapes = 0
        self._server: asyncio.Server | None = None

    def text(self) -> str:
        started = time.perf_counter()
        families: list[Sample] = []
        for collect in self.collectors:
            families.extend(collect())
        families.append(family("streambed_metrics_scrape_seconds", "gauge",
                               "How long rendering this page took.",
                               [((), time.perf_counter() - started)]))
        return render(families)

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        try:
            self._server = await asyncio.start_server(self._handle, host, port)
        except OSError as exc:
            raise Unavailable(
                f"cannot serve metrics on {host}:{port} (broker.metrics_listener): "
                f"{exc.strerror or exc}"
            ) from exc
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            if method not in ("GET", "HEAD"):
                status, body, kind = "405 Method Not Allowed", "only GET\n", "text/plain"
            elif path == "/metrics":
                self.scrapes += 1
                status, body = "200 OK", self.text()
                kind = "text/plain; version=0.0.4; charset=utf-8"
            elif path == "/":
                status, body, kind = "200 OK", "streambed broker: metrics at /metrics\n", "text/plain"
            else:
                status, body, kind = "404 Not Found", "not found; try /metrics\n", "text/plain"
            payload = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass
        except Exception:
            log.exception("serving metrics failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def api_name(key: int) -> str:
    spec = API_SPECS.get(key)
    return spec.name if spec is not None else str(key)


def request_families(metrics: RequestMetrics, connections: int) -> Iterator[Sample]:
    series = sorted(metrics.latency.items())
    yield histogram_family(
        "streambed_request_seconds",
        "Kafka requests by API: time from the request being read to its response being written.",
        [((("api", api_name(key)),), h) for key, h in series],
    )
    yield family("streambed_network_received_bytes_total", "counter",
                 "Bytes read from Kafka clients.", [((), metrics.bytes_received)])
    yield family("streambed_network_sent_bytes_total", "counter",
                 "Bytes written to Kafka clients.", [((), metrics.bytes_sent)])
    yield family("streambed_connections", "gauge", "Open Kafka connections.", [((), connections)])
    yield family("streambed_connections_accepted_total", "counter",
                 "Kafka connections accepted since start.", [((), metrics.connections_accepted)])
