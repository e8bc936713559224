"""The metrics endpoint: the text format checked by an independent parser (prometheus_client),
and a real broker process scraped over HTTP while a real client produces."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sbtest.broker import BrokerProcess, free_port

from streambed.broker.metrics import (
    Histogram,
    RequestMetrics,
    family,
    histogram_family,
    render,
    request_families,
)


def parsed(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``sample name -> labels -> value`` as prometheus_client reads the page."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@given(st.lists(st.floats(0, 20, allow_nan=False), max_size=50))
def test_histogram_buckets_are_cumulative_and_parse(values: list[float]) -> None:
    h = Histogram()
    for v in values:
        h.observe(v)
    page = render([histogram_family("x_seconds", "A test.", [((("api", "Produce"),), h)])])
    samples = parsed(page)
    by_bound = {float(dict(labels)["le"]): value
                for labels, value in samples["x_seconds_bucket"].items()}
    assert len(by_bound) == len(h.bounds) + 1
    for bound, count in by_bound.items():
        assert count == sum(1 for v in values if v <= bound)
    assert samples["x_seconds_count"][(("api", "Produce"),)] == len(values)
    assert samples["x_seconds_sum"][(("api", "Produce"),)] == pytest.approx(sum(values))


@given(st.text(max_size=20))
def test_label_values_are_escaped(value: str) -> None:
    page = render([family("y_total", "counter", 'Help with "quotes" and \\ and\nnewline.',
                          [((("topic", value),), 3)])])
    assert parsed(page)["y_total"][(("topic", value),)] == 3


def test_request_families_name_apis() -> None:
    m = RequestMetrics()
    m.observe(0, 0.001)
    m.observe(0, 0.2)
    m.observe(3, 0.0001)
    m.bytes_received, m.bytes_sent = 100, 50
    samples = parsed(render(request_families(m, connections=2)))
    assert samples["streambed_request_seconds_count"][(("api", "Produce"),)] == 2
    assert samples["streambed_request_seconds_count"][(("api", "Metadata"),)] == 1
    assert samples["streambed_network_received_bytes_total"][()] == 100
    assert samples["streambed_connections"][()] == 2


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_broker_serves_metrics_while_a_client_produces(tmp_path: Path) -> None:
    from confluent_kafka import Producer

    port = free_port()
    broker = BrokerProcess(tmp_path, broker={"metrics_listener": f"127.0.0.1:{port}"}).start()
    try:
        assert f"metrics at http://127.0.0.1:{port}/metrics" in broker.log_path.read_text()
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        for i in range(100):
            producer.produce("scraped", value=b"m%d" % i, partition=0)
            producer.poll(0)
        assert producer.flush(30) == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            samples = parsed(reply.read().decode())
        partition = (("partition", "0"), ("topic", "scraped"))
        assert samples["streambed_partition_high_watermark"][partition] == 100
        assert samples["streambed_partition_appended_records_total"][partition] == 100
        assert samples["streambed_partition_appended_bytes_total"][partition] > 100
        assert samples["streambed_request_seconds_count"][(("api", "Produce"),)] >= 1
        assert samples["streambed_request_seconds_count"][(("api", "Metadata"),)] >= 1
        assert samples["streambed_wal_appends_total"][()] >= 1
        assert samples["streambed_network_received_bytes_total"][()] > 100 * 2
        assert samples["streambed_connections"][()] >= 1
        assert samples["streambed_build_info"]
        assert samples["streambed_process_resident_memory_bytes"][()] > 20 << 20
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        broker.stop()
    assert "Traceback" not in broker.log_path.read_text()


def test_a_bad_metrics_listener_is_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from streambed.core.config.model import BrokerSection

    with pytest.raises(ValidationError, match="host:port"):
        BrokerSection(metrics_listener="9464x")
    assert BrokerSection(metrics_listener="0.0.0.0:9464").metrics_listener == "0.0.0.0:9464"
