"""Idempotent-producer state: Kafka's sequence rules, duplicate answers, durability boundaries,
snapshots, expiry; and InitProducerId."""

from __future__ import annotations

import asyncio

import pytest

from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.producer_ids import (
    EPOCH_EXHAUSTED,
    ProducerIdAndEpoch,
    ProducerIdManager,
)
from streambed.broker.domain.producers import (
    INT32_MAX,
    BatchMeta,
    Duplicate,
    PartitionProducerState,
    ProducerSnapshot,
    ProducerSnapshotStore,
    decrement_sequence,
    increment_sequence,
)
from streambed.core.metadata.api import MetadataStore

Log = list[tuple[BatchMeta, int]]


def batch(pid: int, epoch: int, seq: int, count: int = 1, ts: int = 1000) -> BatchMeta:
    return BatchMeta(pid, epoch, seq, count - 1, ts)


def append(state: PartitionProducerState, meta: BatchMeta, log: list[tuple[BatchMeta, int]]) -> int:
    """Check, apply and make durable, as the produce path does; returns the base offset."""
    assert state.check(meta) is None
    base = log[-1][1] + log[-1][0].last_offset_delta + 1 if log else 0
    state.apply(meta, base)
    log.append((meta, base))
    state.advance_durable(base + meta.last_offset_delta + 1)
    return base


def code_of(state: PartitionProducerState, meta: BatchMeta) -> ErrorCode:
    with pytest.raises(KafkaError) as err:
        state.check(meta)
    return err.value.code


def test_sequence_arithmetic_wraps_at_int32_max() -> None:
    assert increment_sequence(5, 3) == 8
    assert increment_sequence(INT32_MAX, 1) == 0
    assert increment_sequence(INT32_MAX - 1, 3) == 1
    assert decrement_sequence(1, 3) == INT32_MAX - 1
    assert batch(1, 0, INT32_MAX - 1, count=4).last_sequence == 1  # MAX-1, MAX, 0, 1


def test_in_order_duplicates_and_errors() -> None:
    state, log = PartitionProducerState(), Log()
    assert append(state, batch(7, 0, 0, 3), log) == 0
    assert append(state, batch(7, 0, 3, 2), log) == 3
    # A retry of a batch still remembered is answered with its original offsets.
    assert state.check(batch(7, 0, 0, 3)) == Duplicate(0, 2, 1000, True)
    assert state.check(batch(7, 0, 3, 2)) == Duplicate(3, 4, 1000, True)
    # Same start, different length: not the same batch, and out of order.
    assert code_of(state, batch(7, 0, 3, 1)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert code_of(state, batch(7, 0, 6)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER  # gap
    assert code_of(state, batch(7, 0, 2)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER  # overlap
    # A fenced (older) epoch is refused; a newer one must start at sequence 0.
    assert append(state, batch(7, 1, 0), log) == 5
    assert code_of(state, batch(7, 0, 5)) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert code_of(state, batch(7, 2, 4)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    # Epoch bump resets the sequence and forgets the old epoch's batches.
    assert state.check(batch(7, 1, 0)) == Duplicate(5, 5, 1000, True)
    assert code_of(state, BatchMeta(7, 1, -1, 0, 0)) == ErrorCode.INVALID_RECORD
    # Unknown producers start anywhere (KIP-360); batches without a producer id are not checked.
    assert state.check(batch(99, 3, 12345)) is None
    assert state.check(BatchMeta(-1, -1, -1, 4, 0)) is None


def test_only_the_last_five_batches_are_remembered() -> None:
    state, log = PartitionProducerState(), Log()
    for seq in range(7):
        append(state, batch(1, 0, seq), log)
    assert code_of(state, batch(1, 0, 1)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert state.check(batch(1, 0, 2)) == Duplicate(2, 2, 1000, True)


def test_wrap_around() -> None:
    state, log = PartitionProducerState(), Log()
    append(state, batch(1, 0, INT32_MAX - 1, 2), log)
    assert state.entry(1).last_seq == INT32_MAX  # type: ignore[union-attr]
    append(state, batch(1, 0, 0, 3), log)
    assert state.check(batch(1, 0, INT32_MAX - 1, 2)) == Duplicate(0, 1, 1000, True)
    assert code_of(state, batch(1, 0, 1)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_pipelined_batches_and_durability() -> None:
    state = PartitionProducerState()
    # Five batches in flight: each is checked against the ones applied before it.
    for i in range(5):
        assert state.check(batch(1, 0, i)) is None
        state.apply(batch(1, 0, i), i)
    # A retry of an in-flight batch is a duplicate that is not durable yet: wait, then answer.
    assert state.check(batch(1, 0, 2)) == Duplicate(2, 2, 1000, False)
    state.advance_durable(3)
    assert state.check(batch(1, 0, 2)) == Duplicate(2, 2, 1000, True)
    assert state.snapshot().offset == 3
    assert state.snapshot().entries[0].last_seq == 2  # the snapshot holds the durable part only
    # The last two appends failed: forget them; the producer's retries are then in order.
    state.discard_pending()
    assert state.check(batch(1, 0, 3)) is None
    assert code_of(state, batch(1, 0, 4)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_snapshot_restore_and_replay_rebuild_the_same_state() -> None:
    state, log = PartitionProducerState(), Log()
    for i in range(4):
        append(state, batch(1, 0, i * 2, 2), log)
        append(state, batch(2, 5, i), log)
    snap = state.snapshot(leader_epoch=3)
    for i in range(4, 6):
        append(state, batch(1, 0, i * 2, 2), log)
    append(state, batch(3, 0, 0), log)
    # Restart: the snapshot from the store, plus the batch headers of the log after it.
    restored = PartitionProducerState.restore(ProducerSnapshot.from_bytes(snap.to_bytes()))
    restored.replay_all((m, b) for m, b in log if b >= snap.offset)
    assert restored.snapshot() == state.snapshot()
    for probe in [
        batch(1, 0, 10, 2),
        batch(1, 0, 12),
        batch(2, 5, 4),
        batch(2, 5, 2),
        batch(3, 0, 1),
    ]:
        try:
            expected: object = state.check(probe)
        except KafkaError as exc:
            expected = exc.code
        try:
            got: object = restored.check(probe)
        except KafkaError as exc:
            got = exc.code
        assert got == expected
    # Replaying batches the snapshot already covers changes nothing (idempotent recovery).
    restored.replay_all(log)
    assert restored.snapshot() == state.snapshot()


def test_expiry_and_cap() -> None:
    state, log = PartitionProducerState(producer_id_expiration_ms=1000), Log()
    append(state, batch(1, 0, 0, ts=5000), log)
    append(state, batch(2, 0, 0, ts=5500), log)
    assert state.expire(5999) == 0
    assert state.expire(6000) == 1 and state.entry(1) is None and state.entry(2) is not None
    state.apply(batch(2, 0, 1, ts=5500), 2)  # in flight: never expired under the append
    assert state.expire(10_000) == 0
    state.advance_durable(3)
    assert state.expire(10_000) == 1 and len(state) == 0
    capped, log = PartitionProducerState(max_producers=3), Log()
    for pid in range(10):
        append(capped, batch(pid, 0, 0), log)
    assert len(capped) == 3 and {e.producer_id for e in capped.producers()} == {7, 8, 9}


async def test_snapshot_store_never_goes_backwards(store: MetadataStore) -> None:
    snapshots = ProducerSnapshotStore(store)
    assert await snapshots.load(42) is None
    state, log = PartitionProducerState(), Log()
    append(state, batch(1, 0, 0), log)
    first = state.snapshot(leader_epoch=1)
    append(state, batch(1, 0, 1), log)
    second = state.snapshot(leader_epoch=1)
    assert await snapshots.save(42, second)
    assert not await snapshots.save(42, first)  # older offset
    assert await snapshots.load(42) == second
    newer_owner = PartitionProducerState.restore(second).snapshot(leader_epoch=2)
    assert await snapshots.save(42, newer_owner)
    assert not await snapshots.save(42, state.snapshot(leader_epoch=1))  # deposed owner
    await snapshots.delete(42)
    assert await snapshots.load(42) is None


async def test_producer_ids_are_unique_across_brokers_and_restarts(store: MetadataStore) -> None:
    a, b = ProducerIdManager(store, block_size=7), ProducerIdManager(store, block_size=7)
    ids = await asyncio.gather(*(m.allocate() for m in [a, b] * 20))
    restarted = ProducerIdManager(store, block_size=7)
    ids += [await restarted.allocate() for _ in range(10)]
    assert len(set(ids)) == len(ids) == 50
    got = await a.init_producer_id()
    assert got.epoch == 0 and got.producer_id not in ids
    # Idempotent producers always get a fresh id, even when they name their old one (KIP-360).
    again = await a.init_producer_id(expected=got)
    assert again.producer_id != got.producer_id and again.epoch == 0


async def test_transactional_ids_bump_and_fence(store: MetadataStore) -> None:
    ids = ProducerIdManager(store)
    first = await ids.init_producer_id("tx", transaction_timeout_ms=1000)
    assert first.epoch == 0
    second = await ProducerIdManager(store).init_producer_id("tx")  # another broker
    assert (second.producer_id, second.epoch) == (first.producer_id, 1)
    # KIP-360: the current incarnation may bump itself; a retry of that bump gets the same answer.
    third = await ids.init_producer_id("tx", expected=second)
    assert third == ProducerIdAndEpoch(first.producer_id, 2)
    assert await ids.init_producer_id("tx", expected=second) == third
    # A zombie with an older epoch is fenced.
    with pytest.raises(KafkaError) as err:
        await ids.init_producer_id("tx", expected=first)
    assert err.value.code == ErrorCode.PRODUCER_FENCED
    with pytest.raises(KafkaError) as err:
        await ids.init_producer_id("tx", expected=ProducerIdAndEpoch(123456, 0))
    assert err.value.code == ErrorCode.PRODUCER_FENCED
    for tid, timeout, code in [
        ("", 1000, ErrorCode.INVALID_REQUEST),
        ("tx", 0, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
        ("tx", 900_001, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
    ]:
        with pytest.raises(KafkaError) as err:
            await ids.init_producer_id(tid, transaction_timeout_ms=timeout)
        assert err.value.code == code


async def test_exhausted_epoch_rotates_the_producer_id(memory_store: MetadataStore) -> None:
    from streambed.broker.domain import keys

    ids = ProducerIdManager(memory_store)
    first = await ids.init_producer_id("tx")
    key = keys.transactional_id_key("tx")
    kv = await memory_store.get(key)
    record = keys.decode(kv.value)  # type: ignore[union-attr]
    record["epoch"] = EPOCH_EXHAUSTED
    from streambed.core.metadata.api import Put

    await memory_store.txn([], [Put(key, keys.encode(record))])
    rotated = await ids.init_producer_id(
        "tx", expected=ProducerIdAndEpoch(first.producer_id, EPOCH_EXHAUSTED)
    )
    assert rotated.producer_id != first.producer_id and rotated.epoch == 0
    # The old id with the exhausted epoch may still retry (it never got the answer).
    retry = await ids.init_producer_id(
        "tx", expected=ProducerIdAndEpoch(first.producer_id, EPOCH_EXHAUSTED)
    )
    assert retry.producer_id == rotated.producer_id
