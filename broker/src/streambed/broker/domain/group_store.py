"""The groups a coordinator holds, and their records in the metadata store.

Each group is one record (``kafka/groups/<id>``) plus one record per committed offset
(``kafka/offsets/<id>/<topic>/<partition>``). Every write is a transaction that compares the
group record's revision with the one this coordinator last saw: if another coordinator wrote the
group since (after a failover), the write fails, the group is dropped from memory (the
coordinator answers NOT_COORDINATOR) and the next request reads it afresh from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from streambed.broker.domain import keys
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.group_model import CommittedOffset, Group, TopicPartition
from streambed.core.errors import StreambedError
from streambed.core.metadata.api import Compare, Delete, MetadataStore, Put

__all__ = ["GroupStore", "decode_topic_offsets", "topic_offsets_writes"]

log = logging.getLogger("streambed.broker.groups")


class GroupStore:
    def __init__(
        self,
        store: MetadataStore,
        *,
        on_loaded: Callable[[Group], None],
        on_fenced: Callable[[Group], None],
    ) -> None:
        """``on_loaded`` arms a group read from the store (heartbeat timers); ``on_fenced``
        drops a group another coordinator took over (answering its parked requests)."""
        self._store = store
        self._on_loaded = on_loaded
        self._on_fenced = on_fenced
        self.groups: dict[str, Group] = {}

    def get(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def holds(self, group: Group) -> bool:
        """Whether ``group`` is still the live object for its id (not deleted or fenced)."""
        return self.groups.get(group.group_id) is group

    def forget(self, group: Group) -> None:
        if self.holds(group):
            del self.groups[group.group_id]

    async def load_all(self, *, claim: bool) -> None:
        offsets: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        for kv in await self._store.range(keys.OFFSETS):
            encoded, topic = kv.key[len(keys.OFFSETS) :].split("/", 1)
            group_offsets = offsets.setdefault(keys.decode_component(encoded), {})
            group_offsets.update(decode_topic_offsets(topic, kv.value))
        for kv in await self._store.range(keys.GROUPS):
            group_id = keys.decode_component(kv.key[len(keys.GROUPS) :])
            group = Group.from_record(group_id, keys.decode(kv.value), kv.mod_revision)
            group.offsets = offsets.pop(group_id, {})
            if claim:
                async with group.lock:
                    await self.txn(group, [], with_record=True)
            self.groups[group_id] = group
            self._on_loaded(group)
        if offsets:
            log.warning("offsets without a group record for %s; ignored", sorted(offsets))

    async def lookup(self, group_id: str) -> Group | None:
        """The group, from memory or else from the store (written by another coordinator, or
        dropped here after this one was fenced); None when it does not exist."""
        group = self.groups.get(group_id)
        if group is not None:
            return group
        kv = await self._store.get(keys.group_key(group_id))
        if kv is None or group_id in self.groups:
            return self.groups.get(group_id)
        loaded = Group.from_record(group_id, keys.decode(kv.value), kv.mod_revision)
        prefix = keys.offsets_prefix(group_id)
        for okv in await self._store.range(prefix):
            loaded.offsets.update(decode_topic_offsets(okv.key[len(prefix) :], okv.value))
        if group_id in self.groups:  # loaded concurrently by another request
            return self.groups[group_id]
        self.groups[group_id] = loaded
        self._on_loaded(loaded)
        return loaded

    async def write_group(self, group: Group, assignment: dict[str, bytes] | None = None) -> None:
        """Store the group record as it is now (with ``assignment`` in place of the members'
        current assignments when given)."""
        async with group.lock:
            if not self.holds(group):
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
            await self.txn(group, [], with_record=True, assignment=assignment)

    async def txn(
        self,
        group: Group,
        writes: Sequence[Put | Delete],
        *,
        with_record: bool = False,
        assignment: dict[str, bytes] | None = None,
    ) -> None:
        """One transaction for ``group`` (the caller holds ``group.lock``), guarded by the group
        record's revision; ``with_record`` also writes the record. Raises KafkaError with
        COORDINATOR_NOT_AVAILABLE when the store fails, NOT_COORDINATOR when fenced."""
        key = keys.group_key(group.group_id)
        ops: list[Put | Delete] = list(writes)
        if with_record:
            ops.insert(0, Put(key, keys.encode(group.to_record(assignment))))
        try:
            result = await self._store.txn([Compare(key, "==", group.meta_revision)], ops)
        except StreambedError as exc:
            log.warning("store write for group %s failed: %s", group.group_id, exc)
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, str(exc)) from exc
        if not result.succeeded:
            log.warning("group %s was changed by another coordinator; dropping it", group.group_id)
            self._on_fenced(group)
            raise KafkaError(ErrorCode.NOT_COORDINATOR)
        if any(isinstance(op, Put) and op.key == key for op in ops):
            group.meta_revision = result.revision
        elif any(isinstance(op, Delete) and op.key == key for op in ops):
            group.meta_revision = 0


def topic_offsets_writes(
    group_id: str, offsets: Mapping[TopicPartition, CommittedOffset], topics: Iterable[str]
) -> list[Put | Delete]:
    """The writes that make the store hold ``offsets`` for each of ``topics``."""
    out: list[Put | Delete] = []
    for topic in sorted(set(topics)):
        key = keys.offset_key(group_id, topic)
        entries = {str(tp.partition): c.to_json() for tp, c in offsets.items() if tp.topic == topic}
        out.append(Put(key, keys.encode(entries)) if entries else Delete(key))
    return out


def decode_topic_offsets(topic: str, raw: bytes) -> dict[TopicPartition, CommittedOffset]:
    return {
        TopicPartition(topic, int(partition)): CommittedOffset.from_json(entry)
        for partition, entry in keys.decode(raw).items()
    }
