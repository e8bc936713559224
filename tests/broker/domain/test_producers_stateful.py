"""Producer sequence checks against a reference model of Kafka's rules, with retries,
duplicates, gaps, stale and new epochs, sequence wrap-around, pipelined appends, failed appends
and broker restarts (snapshot + log replay) injected by Hypothesis."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.producers import (
    INT32_MAX,
    BatchMeta,
    Duplicate,
    PartitionProducerState,
    ProducerSnapshot,
)

Outcome = tuple[str, object]


@dataclass(frozen=True)
class Written:
    meta: BatchMeta
    base: int

    @property
    def last(self) -> int:
        return self.base + self.meta.last_offset_delta


def reference(log: list[Written], durable_end: int, meta: BatchMeta) -> Outcome:
    """Kafka's rules, recomputed from scratch from every batch in the log."""
    if meta.producer_id < 0:
        return ("append", None)
    if meta.base_sequence < 0:
        return ("error", ErrorCode.INVALID_RECORD)
    mine = [w for w in log if w.meta.producer_id == meta.producer_id]
    if not mine:
        return ("append", None)
    epoch = mine[-1].meta.producer_epoch
    current = [w for w in mine if w.meta.producer_epoch == epoch]
    retained = current[-5:]
    if meta.producer_epoch == epoch:
        for w in retained:
            if (w.meta.base_sequence, w.meta.last_sequence) == (
                meta.base_sequence,
                meta.last_sequence,
            ):
                return ("duplicate", (w.base, w.last, w.last < durable_end))
    if meta.producer_epoch < epoch:
        return ("error", ErrorCode.INVALID_PRODUCER_EPOCH)
    if meta.producer_epoch > epoch:
        return (
            ("append", None)
            if meta.base_sequence == 0
            else ("error", ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
        )
    expected = (retained[-1].meta.last_sequence + 1) % (INT32_MAX + 1)
    return (
        ("append", None)
        if meta.base_sequence == expected
        else ("error", ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
    )


def implementation(state: PartitionProducerState, meta: BatchMeta) -> Outcome:
    try:
        result = state.check(meta)
    except KafkaError as exc:
        return ("error", exc.code)
    if isinstance(result, Duplicate):
        return ("duplicate", (result.base_offset, result.last_offset, result.durable))
    return ("append", None)


class ProducerClient:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.epoch = 0
        self.next_seq = 0
        self.sent: list[BatchMeta] = []
        self.accepted: list[BatchMeta] = []

    def next_batch(self, count: int) -> BatchMeta:
        meta = BatchMeta(self.pid, self.epoch, self.next_seq, count - 1, 1000)
        self.next_seq = (self.next_seq + count) % (INT32_MAX + 1)
        self.sent.append(meta)
        return meta


class ProducerStateMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.state = PartitionProducerState()
        self.log: list[Written] = []  # everything appended, durable or not
        self.durable_end = 0
        self.snapshot: ProducerSnapshot | None = None
        self.clients = {pid: ProducerClient(pid) for pid in (1, 2, 3)}

    @property
    def next_offset(self) -> int:
        return self.log[-1].last + 1 if self.log else 0

    def submit(self, meta: BatchMeta) -> None:
        expected = reference(self.log, self.durable_end, meta)
        got = implementation(self.state, meta)
        assert got == expected, (meta, got, expected)
        if got[0] == "append":
            if meta.producer_id in self.clients:
                self.clients[meta.producer_id].accepted.append(meta)
            base = self.next_offset
            self.state.apply(meta, base)
            self.log.append(Written(meta, base))

    @rule(pid=st.sampled_from([1, 2, 3]), count=st.integers(1, 4))
    def send(self, pid: int, count: int) -> None:
        self.submit(self.clients[pid].next_batch(count))

    @rule(pid=st.sampled_from([1, 2, 3]), back=st.integers(1, 8))
    def retry(self, pid: int, back: int) -> None:
        sent = self.clients[pid].sent
        if len(sent) >= back:
            self.submit(sent[-back])

    @rule(pid=st.sampled_from([1, 2, 3]), back=st.integers(4, 7))
    def retry_old(self, pid: int, back: int) -> None:
        # Around the edge of the five remembered batches.
        accepted = self.clients[pid].accepted
        if len(accepted) >= back:
            self.submit(accepted[-back])

    @rule(pid=st.sampled_from([1, 2, 3]), burst=st.integers(5, 7), back=st.integers(4, 7))
    def burst_then_retry(self, pid: int, burst: int, back: int) -> None:
        for _ in range(burst):
            self.send(pid, 1)
        self.retry_old(pid, back)

    @rule(pid=st.sampled_from([1, 2, 3]), skip=st.integers(1, 3))
    def gap(self, pid: int, skip: int) -> None:
        client = self.clients[pid]
        client.next_seq = (client.next_seq + skip) % (INT32_MAX + 1)
        self.submit(client.next_batch(1))

    @rule(pid=st.sampled_from([1, 2, 3]), seq=st.sampled_from([0, 1]))
    def bump_epoch(self, pid: int, seq: int) -> None:
        client = self.clients[pid]
        client.epoch += 1
        client.next_seq = seq
        self.submit(client.next_batch(1))

    @rule(pid=st.sampled_from([1, 2, 3]))
    def zombie(self, pid: int) -> None:
        client = self.clients[pid]
        if client.epoch > 0:
            self.submit(BatchMeta(pid, client.epoch - 1, client.next_seq, 0, 1000))

    @rule(pid=st.sampled_from([1, 2, 3]))
    def near_wrap(self, pid: int) -> None:
        client = self.clients[pid]
        client.epoch += 1
        client.next_seq = 0
        self.submit(client.next_batch(1))
        client.next_seq = INT32_MAX - 1
        self.submit(client.next_batch(1))  # out of order unless the model agrees
        client.next_seq = 1
        self.submit(client.next_batch(3))

    @rule(count=st.integers(1, 3))
    def unidentified(self, count: int) -> None:
        self.submit(BatchMeta(-1, -1, -1, count - 1, 0))

    @rule(data=st.data())
    def durable(self, data: st.DataObject) -> None:
        ends = [w.last + 1 for w in self.log if w.last + 1 > self.durable_end]
        if ends:
            self.durable_end = data.draw(st.sampled_from(ends))
            self.state.advance_durable(self.durable_end)

    @rule()
    def take_snapshot(self) -> None:
        self.snapshot = ProducerSnapshot.from_bytes(self.state.snapshot().to_bytes())

    @precondition(lambda self: any(w.base >= self.durable_end for w in self.log))
    @rule()
    def append_failed(self) -> None:
        # The pending appends failed: they never reached the log.
        self.state.discard_pending()
        self.log = [w for w in self.log if w.base < self.durable_end]

    @rule()
    def restart(self) -> None:
        # The broker dies: what is not durable is gone; the new owner restores the latest
        # snapshot and replays the log after it.
        self.log = [w for w in self.log if w.base < self.durable_end]
        start = self.snapshot.offset if self.snapshot is not None else 0
        self.state = PartitionProducerState.restore(self.snapshot)
        self.state.replay_all((w.meta, w.base) for w in self.log if w.base >= start)
        self.state.advance_durable(self.durable_end)

    @invariant()
    def views_agree(self) -> None:
        assert self.state.durable_end >= self.durable_end or not self.log
        for pid in (1, 2, 3):
            mine = [w for w in self.log if w.meta.producer_id == pid]
            entry = self.state.entry(pid)
            assert (entry is None) == (not mine)
            if entry is not None:
                assert entry.epoch == mine[-1].meta.producer_epoch
                assert entry.last_seq == mine[-1].meta.last_sequence
                assert entry.last_offset == mine[-1].last


TestProducerStateMachine = ProducerStateMachine.TestCase
TestProducerStateMachine.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None
)
