"""Kafka codec benchmark: Produce v9 request decode (plus batch validation and stamping) and Fetch
v12 response encode, against kio's reader and writer on the same messages.

    .venv/bin/python benchmarks/protocol_bench.py            # ~30 s
    .venv/bin/python benchmarks/protocol_bench.py --quick    # a few seconds

Prints a Markdown table: time per message and the record bytes per second it corresponds to.
"""

from __future__ import annotations

import argparse
import datetime
import io
import platform
import time
from collections.abc import Callable

from kio.schema.fetch.v12 import response as kio_fetch
from kio.schema.produce.v9 import request as kio_produce
from kio.serial import entity_reader, entity_writer

from streambed.broker.protocol import (
    RequestHeader,
    ServerConnection,
    decode_request,
    encode_request,
    encode_response,
)
from streambed.broker.protocol.messages.fetch import (
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from streambed.broker.protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from streambed.broker.protocol.records import Record, encode_batch, iter_batches

KiB = 1024
MiB = 1024 * KiB


def batch(size: int) -> bytes:
    value = b"x" * 1000
    n = max(1, size // 1030)
    records = [Record(i, i, None, value) for i in range(n)]
    return bytes(encode_batch(records, base_timestamp=1_700_000_000_000, producer_id=1, producer_epoch=0, base_sequence=0))


def bench(fn: Callable[[], object], seconds: float) -> float:
    """Seconds per call (best of 3 runs of ~seconds/3)."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > 0.05:
            break
        n *= 2
    per = elapsed / n
    best = per
    for _ in range(3):
        runs = max(1, int(seconds / 3 / per))
        start = time.perf_counter()
        for _ in range(runs):
            fn()
        best = min(best, (time.perf_counter() - start) / runs)
    return best


def produce_case(partitions: int, batch_size: int) -> tuple[bytes, object, int]:
    data = batch(batch_size)
    ours = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=30_000,
        topic_data=[TopicProduceData(name="bench", partition_data=[PartitionProduceData(p, data) for p in range(partitions)])],
    )
    frame = b"".join(encode_request(RequestHeader(0, 9, 1, "bench"), ours))
    theirs = kio_produce.ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=30),
        topic_data=(
            kio_produce.TopicProduceData(
                name="bench",
                partition_data=tuple(kio_produce.PartitionProduceData(index=p, records=data) for p in range(partitions)),
            ),
        ),
    )
    return frame, theirs, partitions * len(data)


def fetch_case(partitions: int, records_size: int) -> tuple[FetchResponse, object, int]:
    data = memoryview(bytearray(batch(records_size)))
    ours = FetchResponse(
        session_id=1,
        responses=[
            FetchableTopicResponse(
                topic="bench",
                partitions=[
                    PartitionData(partition_index=p, high_watermark=1000, last_stable_offset=1000, log_start_offset=0, records=data)
                    for p in range(partitions)
                ],
            )
        ],
    )
    theirs = kio_fetch.FetchResponse(
        throttle_time=datetime.timedelta(0),
        error_code=kio_fetch.ErrorCode.none,
        session_id=1,
        responses=(
            kio_fetch.FetchableTopicResponse(
                topic="bench",
                partitions=tuple(
                    kio_fetch.PartitionData(
                        partition_index=p,
                        error_code=kio_fetch.ErrorCode.none,
                        high_watermark=1000,
                        last_stable_offset=1000,
                        log_start_offset=0,
                        aborted_transactions=(),
                        records=bytes(data),
                    )
                    for p in range(partitions)
                ),
            ),
        ),
    )
    return ours, theirs, partitions * data.nbytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds = 0.6 if args.quick else 3.0
    rows = []

    kio_produce_reader = entity_reader(kio_produce.ProduceRequest)
    for partitions, size in ((1, 16 * KiB), (1, 1 * MiB), (100, 16 * KiB)):
        frame, theirs, payload = produce_case(partitions, size)
        body = frame[4:]

        def ours_decode(body: bytes = body) -> object:
            return decode_request(body)

        def ours_path(frame: bytes = frame) -> None:
            # what the broker does per request: frame it (one copy), decode, validate, stamp
            conn = ServerConnection(initial_max_request_size=64 * MiB)
            conn.receive_data(frame)
            request = conn.next_request()
            offset = 0
            for topic in request.body.topic_data:  # type: ignore[union-attr]
                for partition in topic.partition_data:
                    for b in iter_batches(partition.records):
                        b.validate()
                        b.stamp(offset, 0)
                        offset = b.next_offset

        kio_body = body[4 + 2 + 2 + 2 + len("bench") + 1 :]  # kio reads the body without the header

        def kio_decode(kio_body: bytes = kio_body) -> object:
            return kio_produce_reader(kio_body, 0)

        label = f"Produce v9 decode, {partitions} partition(s) x {size // KiB} KiB"
        for name, fn in (("streambed", ours_decode), ("streambed + frame + CRC + stamp", ours_path), ("kio", kio_decode)):
            t = bench(fn, seconds)
            rows.append((label, name, t, payload / t / MiB))

    kio_fetch_writer = entity_writer(kio_fetch.FetchResponse)
    for partitions, size in ((1, 1 * MiB), (10, 1 * MiB), (100, 16 * KiB), (1000, 1 * KiB)):
        ours, theirs, payload = fetch_case(partitions, size)

        def ours_encode(ours: FetchResponse = ours) -> object:
            return encode_response(1, 12, 7, ours)

        def kio_encode(theirs: object = theirs) -> object:
            buf = io.BytesIO()
            kio_fetch_writer(buf, theirs)
            return buf.getvalue()

        label = f"Fetch v12 encode, {partitions} partition(s) x {size // KiB} KiB"
        for name, fn in (("streambed (buffer list)", ours_encode), ("kio", kio_encode)):
            t = bench(fn, seconds)
            rows.append((label, name, t, payload / t / MiB))

    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu'}\n")
    print("| case | codec | time per message | record data rate |")
    print("|---|---|---:|---:|")
    for label, name, t, rate in rows:
        print(f"| {label} | {name} | {t * 1e6:,.1f} µs | {rate:,.0f} MiB/s |")


if __name__ == "__main__":
    main()
