"""InitProducerId: producer ids that no two brokers ever hand out twice, and epochs per
transactional id.

Ids come in blocks reserved by compare-and-swap on ``kafka/producer-ids`` (Kafka's controller
hands out blocks of 1000 the same way, ``AllocateProducerIds``); a broker that restarts simply
skips the rest of its block. A transactional id keeps ``kafka/transactional-ids/<id>`` with its
producer id and epoch, bumped on every InitProducerId, which fences the previous incarnation:
its batches then carry an older epoch and the partitions refuse them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from streambed.broker.domain import keys
from streambed.broker.domain.clock import Clock, SystemClock
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.producers import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from streambed.core.metadata.api import Compare, MetadataStore, Put

__all__ = ["EPOCH_EXHAUSTED", "ProducerIdAndEpoch", "ProducerIdManager"]

EPOCH_EXHAUSTED = 2**15 - 2
"""``TransactionMetadata.isEpochExhausted``: an epoch at Short.MAX_VALUE - 1 cannot be bumped."""
_RETRIES = 64


@dataclass(frozen=True, slots=True)
class ProducerIdAndEpoch:
    producer_id: int
    epoch: int


class ProducerIdManager:
    def __init__(
        self,
        store: MetadataStore,
        *,
        block_size: int = 1000,
        transaction_max_timeout_ms: int = 900_000,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._block_size = block_size
        self._max_timeout = transaction_max_timeout_ms
        self._clock = clock or SystemClock()
        self._next = 0
        self._end = 0  # the reserved block is [_next, _end)
        self._lock = asyncio.Lock()

    async def allocate(self) -> int:
        """A producer id never handed out before by any broker sharing the store."""
        async with self._lock:
            if self._next >= self._end:
                self._next, self._end = await self._reserve_block()
            pid = self._next
            self._next += 1
            return pid

    async def _reserve_block(self) -> tuple[int, int]:
        for _ in range(_RETRIES):
            kv = await self._store.get(keys.PRODUCER_IDS)
            start = keys.decode(kv.value)["next"] if kv is not None else 0
            end = start + self._block_size
            revision = 0 if kv is None else kv.mod_revision
            result = await self._store.txn(
                [Compare(keys.PRODUCER_IDS, "==", revision)],
                [Put(keys.PRODUCER_IDS, keys.encode({"next": end}))],
            )
            if result.succeeded:
                return start, end
        raise KafkaError(
            ErrorCode.UNKNOWN_SERVER_ERROR, "could not reserve producer ids: too much contention"
        )

    async def init_producer_id(
        self,
        transactional_id: str | None = None,
        *,
        transaction_timeout_ms: int = 60_000,
        expected: ProducerIdAndEpoch | None = None,
    ) -> ProducerIdAndEpoch:
        """Answer InitProducerId. Without a transactional id every call gets a fresh producer id
        at epoch 0 (as in Kafka, whatever ``expected`` says). With one, the epoch is bumped, a
        new id is taken when the epoch is exhausted, and ``expected`` (KIP-360, v3+) fences a
        caller that is not the current incarnation with ``PRODUCER_FENCED``."""
        if transactional_id is None:
            return ProducerIdAndEpoch(await self.allocate(), 0)
        if transactional_id == "":
            raise KafkaError(ErrorCode.INVALID_REQUEST, "Transactional id must not be empty")
        if not 0 < transaction_timeout_ms <= self._max_timeout:
            raise KafkaError(
                ErrorCode.INVALID_TRANSACTION_TIMEOUT,
                f"The transaction timeout {transaction_timeout_ms} ms is not in (0, {self._max_timeout}]",
            )
        key = keys.transactional_id_key(transactional_id)
        for _ in range(_RETRIES):
            kv = await self._store.get(key)
            if kv is None:
                state = {
                    "pid": await self.allocate(),
                    "prev": NO_PRODUCER_ID,
                    "epoch": NO_PRODUCER_EPOCH,
                    "last": NO_PRODUCER_EPOCH,
                }
            else:
                state = keys.decode(kv.value)
            updated = await self._bump(state, expected)
            updated["timeout"] = transaction_timeout_ms
            updated["updated"] = self._clock.now_ms()
            revision = 0 if kv is None else kv.mod_revision
            result = await self._store.txn(
                [Compare(key, "==", revision)], [Put(key, keys.encode(updated))]
            )
            if result.succeeded:
                return ProducerIdAndEpoch(updated["pid"], updated["epoch"])
        raise KafkaError(
            ErrorCode.UNKNOWN_SERVER_ERROR, f"transactional id {transactional_id!r} kept changing"
        )

    async def _bump(
        self, state: dict[str, int], expected: ProducerIdAndEpoch | None
    ) -> dict[str, int]:
        pid, prev, epoch, last = state["pid"], state["prev"], state["epoch"], state["last"]
        if expected is not None and not (
            epoch == NO_PRODUCER_EPOCH
            or expected.producer_id == pid
            or (expected.producer_id == prev and expected.epoch >= EPOCH_EXHAUSTED)
        ):
            raise KafkaError(
                ErrorCode.PRODUCER_FENCED, "There is a newer producer with the same transactionalId"
            )
        if epoch >= EPOCH_EXHAUSTED and (expected is None or expected.epoch == epoch):
            # Epochs of this id are used up: continue with a new producer id.
            return {
                "pid": await self.allocate(),
                "prev": pid,
                "epoch": 0,
                "last": epoch if expected else NO_PRODUCER_EPOCH,
            }
        if expected is None:
            return {"pid": pid, "prev": prev, "epoch": epoch + 1, "last": NO_PRODUCER_EPOCH}
        if epoch in (NO_PRODUCER_EPOCH, expected.epoch):
            return {"pid": pid, "prev": prev, "epoch": epoch + 1, "last": epoch}
        if expected.epoch == last:
            # A retry of a bump whose answer was lost: same answer again.
            return {"pid": pid, "prev": prev, "epoch": epoch, "last": last}
        raise KafkaError(
            ErrorCode.PRODUCER_FENCED,
            f"Expected producer epoch {expected.epoch} does not match current producer epoch {epoch} "
            f"or previous producer epoch {last}",
        )
