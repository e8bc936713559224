"""Topics: creation, deletion, partitions, configs and partition ownership, kept in the metadata
store so any broker sharing the store sees the same topics.

Layout (see RFC 0004): one record per topic (``kafka/topics/<name>``: id, configs, and per
partition its stream id, replicas and first leader) so creating a topic of any size is one
transaction; an ownership record per moved partition (``kafka/partitions/<name>/<index>``:
leader and leader epoch) so a partition moves by one compare-and-swap that never conflicts with a
config change; a name index by id; an index of names with '.'/'_' that makes Kafka's collision
rule race-free between brokers.

Stream creation and deletion happen outside the store's transactions, so both are bracketed by an
intent record (``kafka/creating/<op>``, ``kafka/deleting/<topic id>``) that :meth:`TopicManager.start`
finishes after a crash: no stream is leaked and no deleted topic's data survives.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streambed.broker.domain import keys
from streambed.broker.domain.broker_configs import BrokerConfigs
from streambed.broker.domain.config_defs import TOPIC_CONFIGS
from streambed.broker.domain.configs import (
    AlterConfigOp,
    ConfigEntry,
    ConfigSource,
    ConfigSynonym,
    OpType,
    apply_incremental,
    parse_value,
    validate_topic_configs,
)
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.topic_names import (
    has_collision_chars,
    unify_collision_chars,
    validate_topic_name,
)
from streambed.core.errors import NotFound
from streambed.core.metadata.api import Compare, Delete, KeyValue, MetadataStore, Put

__all__ = [
    "NewTopic",
    "PartitionInfo",
    "StreamAllocator",
    "TopicConfig",
    "TopicInfo",
    "TopicManager",
    "new_topic_id",
]

log = logging.getLogger("streambed.broker.topics")

_RETRIES = 16


class StreamAllocator(Protocol):
    """What the topic manager needs from the stream engine (an adapter wires it later)."""

    async def create_stream(self) -> int:
        """A new, empty stream; its id."""
        ...

    async def delete_stream(self, stream_id: int) -> None:
        """Delete the stream and its data; may raise ``NotFound`` when it is already gone."""
        ...


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    topic: str
    index: int
    stream_id: int
    replicas: tuple[int, ...]
    leader: int
    """The node that owns the partition (serves produce and fetch for it)."""
    leader_epoch: int
    """Kafka's partition leader epoch: grows by one on every move."""
    revision: int
    """``mod_revision`` of the ownership record (0 while the partition never moved)."""


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: tuple[PartitionInfo, ...]
    configs: Mapping[str, str]
    """Only the overrides set on the topic; :meth:`TopicManager.topic_config` resolves the rest."""
    revision: int

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas) if self.partitions else 0

    def partition(self, index: int) -> PartitionInfo | None:
        return self.partitions[index] if 0 <= index < len(self.partitions) else None


@dataclass(frozen=True, slots=True)
class NewTopic:
    """A CreateTopics entry. -1 means "broker default" for both counts, as in the request."""

    name: str
    num_partitions: int = -1
    replication_factor: int = -1
    assignments: Mapping[int, Sequence[int]] | None = None
    configs: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """The effective values the produce, fetch and retention paths use."""

    retention_ms: int
    retention_bytes: int
    max_message_bytes: int
    message_timestamp_type: str
    message_timestamp_before_max_ms: int
    message_timestamp_after_max_ms: int
    cleanup_policy: tuple[str, ...]
    segment_bytes: int
    min_insync_replicas: int
    compression_type: str


def new_topic_id() -> uuid.UUID:
    """A random topic id Kafka would accept: never zero, and (like ``Uuid.randomUuid``) never
    one whose base64 form starts with '-', which would read as a command-line flag."""
    while True:
        candidate = uuid.uuid4()
        if candidate.int != 0 and not urlsafe_b64encode(candidate.bytes).startswith(b"-"):
            return candidate


class TopicManager:
    def __init__(
        self,
        store: MetadataStore,
        allocator: StreamAllocator,
        broker_configs: BrokerConfigs,
        *,
        node_id: int,
        live_brokers: Callable[[], Collection[int]] | None = None,
        placer: Callable[[str, int], int] | None = None,
    ) -> None:
        """``live_brokers`` lists the node ids manual assignments may name (default: this node);
        ``placer(topic, partition)`` picks the owner of a new partition (default: this node)."""
        self._store = store
        self._allocator = allocator
        self._configs = broker_configs
        self._node_id = node_id
        self._live = live_brokers or (lambda: (node_id,))
        self._placer = placer or (lambda _topic, _index: node_id)
        self._topics: dict[str, TopicInfo] = {}
        self._by_id: dict[uuid.UUID, str] = {}

    # -- lifecycle and reads ---------------------------------------------------------------

    async def start(self) -> None:
        """Load every topic and finish what a crash interrupted: creations this node started
        (their streams are deleted unless the topic was committed) and every pending deletion."""
        await self.refresh()
        for kv in await self._store.range(keys.CREATING):
            intent = keys.decode(kv.value)
            if intent["node"] == self._node_id:
                await self._abandon_creation(kv.key, intent)
        await self.resume_deletions()

    async def refresh(self) -> None:
        """Reload the cache from the store (other brokers' changes become visible)."""
        topics: dict[str, TopicInfo] = {}
        owners = {kv.key: kv for kv in await self._store.range(keys.PARTITIONS)}
        for kv in await self._store.range(keys.TOPICS):
            name = kv.key[len(keys.TOPICS) :]
            topics[name] = self._build(name, kv, owners)
        self._topics = topics
        self._by_id = {info.topic_id: name for name, info in topics.items()}

    def get(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    def get_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        name = self._by_id.get(topic_id)
        return None if name is None else self._topics.get(name)

    def topics(self) -> list[TopicInfo]:
        return [self._topics[name] for name in sorted(self._topics)]

    def _require(self, name: str) -> TopicInfo:
        info = self._topics.get(name)
        if info is None:
            raise KafkaError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
            )
        return info

    # -- CreateTopics ----------------------------------------------------------------------

    async def create_topic(self, spec: NewTopic, *, validate_only: bool = False) -> TopicInfo:
        """Create one topic (or only validate it); raises :class:`KafkaError` with the code and
        message Kafka's controller answers with."""
        name = spec.name
        validate_topic_name(name)
        if await self._store.get(keys.topic_key(name)) is not None:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        await self._check_collision(name)
        configs = dict(spec.configs)
        validate_topic_configs(configs)
        plans = self._plan_new_topic(spec)
        topic_id = new_topic_id()
        if validate_only:
            parts = tuple(
                PartitionInfo(name, i, -1, tuple(replicas), leader, 0, 0)
                for i, (replicas, leader) in enumerate(plans)
            )
            return TopicInfo(name, topic_id, parts, _str_map(configs), 0)
        op_id = uuid.uuid4().hex
        streams = await self._create_streams(op_id, name, topic_id, len(plans))
        record = {
            "id": topic_id.hex,
            "configs": _str_map(configs),
            "partitions": [
                {"stream": sid, "replicas": list(replicas), "leader": leader}
                for sid, (replicas, leader) in zip(streams, plans, strict=True)
            ],
        }
        compares = [Compare(keys.topic_key(name), "==", 0)]
        writes: list[Put | Delete] = [
            Put(keys.topic_key(name), keys.encode(record)),
            Put(keys.topic_id_key(topic_id.hex), keys.encode({"name": name})),
            Delete(keys.creating_key(op_id)),
        ]
        if has_collision_chars(name):
            collision = keys.topic_collision_key(unify_collision_chars(name))
            compares.append(Compare(collision, "==", 0))
            writes.append(Put(collision, keys.encode({"name": name})))
        result = await self._store.txn(compares, writes)
        if not result.succeeded:
            # Another broker created this name (or a colliding one) while our streams were made.
            await self._abandon_creation(
                keys.creating_key(op_id), {"streams": streams, "topic": topic_id.hex}
            )
            if await self._store.get(keys.topic_key(name)) is not None:
                raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
            await self._check_collision(name)
            raise KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"Creating topic '{name}' lost a race")
        await self._reload(name)
        # The request handler logs it at INFO, naming the client (one line per topic event).
        log.debug("created topic %s (%s) with %d partition(s)", name, topic_id, len(streams))
        return self._require(name)

    async def _check_collision(self, name: str) -> None:
        if not has_collision_chars(name):
            return
        kv = await self._store.get(keys.topic_collision_key(unify_collision_chars(name)))
        if kv is not None:
            other = keys.decode(kv.value)["name"]
            if other != name:
                raise KafkaError(
                    ErrorCode.INVALID_TOPIC_EXCEPTION,
                    f"Topic '{name}' collides with existing topic: {other}",
                )

    def _plan_new_topic(self, spec: NewTopic) -> list[tuple[list[int], int]]:
        """(replicas, leader) per partition."""
        if spec.assignments:
            if spec.replication_factor != -1:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST,
                    "A manual partition assignment was specified, but replication factor was not set to -1.",
                )
            if spec.num_partitions != -1:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST,
                    "A manual partition assignment was specified, but numPartitions was not set to -1.",
                )
            count = len(spec.assignments)
            for index in range(count):
                if index not in spec.assignments:
                    raise KafkaError(
                        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        "partitions should be a consecutive 0-based integer sequence",
                    )
            plans: list[tuple[list[int], int]] = []
            width: int | None = None
            for index in range(count):
                replicas = list(spec.assignments[index])
                self._validate_assignment(replicas, width)
                width = len(replicas)
                plans.append((replicas, replicas[0]))
            return plans
        if spec.replication_factor < -1 or spec.replication_factor == 0:
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            )
        if spec.num_partitions < -1 or spec.num_partitions == 0:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                "Number of partitions was set to an invalid non-positive value.",
            )
        count = (
            spec.num_partitions
            if spec.num_partitions != -1
            else self._configs.int_value("num.partitions")
        )
        return self._place(spec.name, 0, count)

    def _place(self, name: str, start: int, count: int) -> list[tuple[list[int], int]]:
        # The log is shared storage, so a partition has one replica: its owner. A requested
        # replication factor is accepted and durability comes from the WAL and object store.
        out: list[tuple[list[int], int]] = []
        for index in range(start, start + count):
            owner = self._placer(name, index)
            out.append(([owner], owner))
        return out

    def _validate_assignment(self, replicas: list[int], width: int | None) -> None:
        if not replicas:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                "The manual partition assignment includes an empty replica list.",
            )
        live = set(self._live())
        previous: int | None = None
        for broker in sorted(replicas):
            if broker not in live:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"The manual partition assignment includes broker {broker}, but no such "
                    "broker is registered.",
                )
            if broker == previous:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"The manual partition assignment includes the broker {broker} more than once.",
                )
            previous = broker
        if width is not None and len(replicas) != width:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes a partition with {len(replicas)} "
                "replica(s), but this is not consistent with previous partitions, which have "
                f"{width} replica(s).",
            )

    async def _create_streams(
        self, op_id: str, name: str, topic_id: uuid.UUID, count: int
    ) -> list[int]:
        """Create ``count`` streams, recording each id in an intent first durable, so a crash
        half-way leaves a record naming every stream that must be deleted again."""
        key = keys.creating_key(op_id)
        intent: dict[str, Any] = {
            "node": self._node_id,
            "name": name,
            "topic": topic_id.hex,
            "streams": [],
        }
        await self._store.txn([], [Put(key, keys.encode(intent))])
        streams: list[int] = intent["streams"]
        try:
            for _ in range(count):
                streams.append(await self._allocator.create_stream())
                await self._store.txn([], [Put(key, keys.encode(intent))])
        except BaseException:
            await self._abandon_creation(key, intent)
            raise
        return streams

    async def _abandon_creation(self, key: str, intent: Mapping[str, Any]) -> None:
        """Delete the intent's streams that no committed topic uses, then the intent."""
        used: set[int] = set()
        name_kv = await self._store.get(keys.topic_id_key(intent["topic"]))
        if name_kv is not None:
            topic_kv = await self._store.get(keys.topic_key(keys.decode(name_kv.value)["name"]))
            if topic_kv is not None:
                used = {p["stream"] for p in keys.decode(topic_kv.value)["partitions"]}
        for stream_id in intent["streams"]:
            if stream_id not in used:
                await self._delete_stream(stream_id)
        await self._store.txn([], [Delete(key)])

    # -- CreatePartitions ------------------------------------------------------------------

    async def create_partitions(
        self,
        name: str,
        count: int,
        assignments: Sequence[Sequence[int]] | None = None,
        *,
        validate_only: bool = False,
    ) -> TopicInfo:
        """Grow ``name`` to ``count`` partitions (never shrink)."""
        for _ in range(_RETRIES):
            kv = await self._store.get(keys.topic_key(name))
            if kv is None:
                raise KafkaError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
                )
            record = keys.decode(kv.value)
            current = len(record["partitions"])
            if count == current:
                raise KafkaError(
                    ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partition(s)."
                )
            if count < current:
                raise KafkaError(
                    ErrorCode.INVALID_PARTITIONS,
                    f"The topic {name} currently has {current} partition(s); {count} would not "
                    "be an increase.",
                )
            additional = count - current
            if assignments is not None:
                if len(assignments) != additional:
                    raise KafkaError(
                        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        f"Attempted to add {additional} additional partition(s), but only "
                        f"{len(assignments)} assignment(s) were specified.",
                    )
                width = len(record["partitions"][0]["replicas"])
                plans: list[tuple[list[int], int]] = []
                for replicas in assignments:
                    self._validate_assignment(list(replicas), width)
                    plans.append((list(replicas), replicas[0]))
            else:
                plans = self._place(name, current, additional)
            if validate_only:
                return self._require(name)
            op_id = uuid.uuid4().hex
            topic_id = uuid.UUID(hex=record["id"])
            streams = await self._create_streams(op_id, name, topic_id, additional)
            record["partitions"].extend(
                {"stream": sid, "replicas": replicas, "leader": leader}
                for sid, (replicas, leader) in zip(streams, plans, strict=True)
            )
            result = await self._store.txn(
                [Compare(kv.key, "==", kv.mod_revision)],
                [Put(kv.key, keys.encode(record)), Delete(keys.creating_key(op_id))],
            )
            if result.succeeded:
                await self._reload(name)
                return self._require(name)
            await self._abandon_creation(
                keys.creating_key(op_id), {"streams": streams, "topic": topic_id.hex}
            )
        raise KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"topic '{name}' kept changing; giving up")

    # -- DeleteTopics ----------------------------------------------------------------------

    async def delete_topic(self, name: str) -> TopicInfo:
        """Remove the topic from the metadata at once, then delete its streams. A crash after the
        first step leaves ``kafka/deleting/<id>``, which :meth:`resume_deletions` finishes."""
        for _ in range(_RETRIES):
            kv = await self._store.get(keys.topic_key(name))
            if kv is None:
                self._forget(name)
                raise KafkaError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    "This server does not host this topic-partition.",
                )
            info = self._build(name, kv, {})
            streams = [p.stream_id for p in info.partitions]
            writes: list[Put | Delete] = [
                Delete(kv.key),
                Delete(keys.partitions_prefix(name), prefix=True),
                Delete(keys.topic_id_key(info.topic_id.hex)),
                Put(
                    keys.deleting_key(info.topic_id.hex),
                    keys.encode({"name": name, "streams": streams}),
                ),
            ]
            if has_collision_chars(name):
                writes.append(Delete(keys.topic_collision_key(unify_collision_chars(name))))
            result = await self._store.txn([Compare(kv.key, "==", kv.mod_revision)], writes)
            if result.succeeded:
                self._forget(name)
                await self._finish_deletion(info.topic_id.hex, streams)
                log.debug("deleted topic %s (%s)", name, info.topic_id)
                return info
        raise KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"topic '{name}' kept changing; giving up")

    async def delete_topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo:
        kv = await self._store.get(keys.topic_id_key(topic_id.hex))
        if topic_id.int == 0 or kv is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID, "This server does not host this topic ID.")
        return await self.delete_topic(keys.decode(kv.value)["name"])

    async def resume_deletions(self) -> None:
        """Finish every deletion a crash interrupted (any broker may; deleting is idempotent)."""
        for kv in await self._store.range(keys.DELETING):
            await self._finish_deletion(
                kv.key[len(keys.DELETING) :], keys.decode(kv.value)["streams"]
            )

    async def _finish_deletion(self, topic_id_hex: str, streams: Sequence[int]) -> None:
        try:
            for stream_id in streams:
                await self._delete_stream(stream_id)
        except Exception:
            # The topic is already gone for clients; its data goes on the next resume.
            log.warning(
                "deleting the streams of topic %s failed; will retry", topic_id_hex, exc_info=True
            )
            return
        # The partitions' producer snapshots and saved time indexes go with them (both are
        # keyed by stream id).
        await self._store.txn(
            [],
            [Delete(keys.deleting_key(topic_id_hex))]
            + [Delete(keys.producer_state_key(sid)) for sid in streams]
            + [Delete(keys.time_index_key(sid)) for sid in streams],
        )

    async def _delete_stream(self, stream_id: int) -> None:
        with contextlib.suppress(NotFound):
            await self._allocator.delete_stream(stream_id)

    # -- configs ---------------------------------------------------------------------------

    def topic_config(self, name: str) -> TopicConfig:
        values = self.effective_configs(name)

        def num(key: str) -> int:
            return int(values[key])

        return TopicConfig(
            retention_ms=num("retention.ms"),
            retention_bytes=num("retention.bytes"),
            max_message_bytes=num("max.message.bytes"),
            message_timestamp_type=values["message.timestamp.type"],
            message_timestamp_before_max_ms=num("message.timestamp.before.max.ms"),
            message_timestamp_after_max_ms=num("message.timestamp.after.max.ms"),
            cleanup_policy=tuple(
                p.strip() for p in values["cleanup.policy"].split(",") if p.strip()
            ),
            segment_bytes=num("segment.bytes"),
            min_insync_replicas=num("min.insync.replicas"),
            compression_type=values["compression.type"],
        )

    def effective_configs(self, name: str) -> dict[str, str]:
        """Every topic config with the value in force (CreateTopics v5+ returns these)."""
        return {e.name: e.value or "" for e in self.describe_configs(name)}

    def describe_configs(
        self,
        name: str,
        names: Sequence[str] | None = None,
        *,
        include_synonyms: bool = False,
        include_documentation: bool = False,
    ) -> list[ConfigEntry]:
        info = self._require(name)
        wanted = None if names is None else set(names)
        out: list[ConfigEntry] = []
        for key in sorted(TOPIC_CONFIGS):
            if wanted is not None and key not in wanted:
                continue
            defn = TOPIC_CONFIGS[key]
            value, source, synonyms = self._configs.topic_default(key)
            if key in info.configs:
                override = info.configs[key]
                synonyms = [
                    ConfigSynonym(key, override, ConfigSource.DYNAMIC_TOPIC_CONFIG),
                    *synonyms,
                ]
                value, source = _normalise(key, override), ConfigSource.DYNAMIC_TOPIC_CONFIG
            out.append(
                ConfigEntry(
                    name=key,
                    value=value,
                    source=source,
                    read_only=False,
                    sensitive=False,
                    config_type=defn.type,
                    documentation=defn.doc if include_documentation else None,
                    synonyms=tuple(synonyms) if include_synonyms else (),
                )
            )
        return out

    async def incremental_alter_configs(
        self, name: str, ops: Sequence[AlterConfigOp], *, validate_only: bool = False
    ) -> None:
        for op in ops:
            if op.op not in tuple(OpType):
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown operations type {op.op}")
        await self._alter(
            name,
            lambda current: apply_incremental(
                current, ops, TOPIC_CONFIGS, error=ErrorCode.INVALID_CONFIG
            ),
            validate_only,
        )

    async def alter_configs(
        self, name: str, configs: Mapping[str, str | None], *, validate_only: bool = False
    ) -> None:
        """Legacy AlterConfigs: ``configs`` replaces every override of the topic."""
        nulls = [key for key, value in configs.items() if value is None]
        if nulls:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST, "Null value not supported for : " + ", ".join(nulls)
            )
        await self._alter(name, lambda _current: dict(configs), validate_only)

    async def _alter(
        self,
        name: str,
        change: Callable[[dict[str, str]], Mapping[str, str | None]],
        validate_only: bool,
    ) -> None:
        for _ in range(_RETRIES):
            kv = await self._store.get(keys.topic_key(name))
            if kv is None:
                raise KafkaError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
                )
            record = keys.decode(kv.value)
            updated = change(dict(record["configs"]))
            validate_topic_configs(updated)
            if validate_only:
                return
            record["configs"] = _str_map(updated)
            result = await self._store.txn(
                [Compare(kv.key, "==", kv.mod_revision)], [Put(kv.key, keys.encode(record))]
            )
            if result.succeeded:
                await self._reload(name)
                return
        raise KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"topic '{name}' kept changing; giving up")

    # -- ownership -------------------------------------------------------------------------

    async def move_partition(
        self, name: str, index: int, new_leader: int, *, expected_epoch: int | None = None
    ) -> PartitionInfo:
        """Hand partition ``index`` to ``new_leader`` with the next leader epoch. With
        ``expected_epoch`` the move only happens from that epoch (``FENCED_LEADER_EPOCH``
        otherwise), so two controllers cannot both move the same partition."""
        for _ in range(_RETRIES):
            topic_kv = await self._store.get(keys.topic_key(name))
            if topic_kv is None:
                raise KafkaError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
                )
            parts = keys.decode(topic_kv.value)["partitions"]
            if not 0 <= index < len(parts):
                raise KafkaError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"{name}-{index} does not exist."
                )
            owner_key = keys.partition_key(name, index)
            owner_kv = await self._store.get(owner_key)
            if owner_kv is not None:
                owner = keys.decode(owner_kv.value)
                epoch, revision = owner["epoch"], owner_kv.mod_revision
            else:
                epoch, revision = 0, 0
            if expected_epoch is not None and expected_epoch != epoch:
                raise KafkaError(
                    ErrorCode.FENCED_LEADER_EPOCH,
                    f"{name}-{index} is at leader epoch {epoch}, not {expected_epoch}",
                )
            # The id index is written once per topic incarnation: comparing it (not the topic
            # record) keeps config changes from conflicting with moves, yet a move can never land
            # on a re-created topic of the same name.
            id_key = keys.topic_id_key(keys.decode(topic_kv.value)["id"])
            id_kv = await self._store.get(id_key)
            if id_kv is None:
                continue
            result = await self._store.txn(
                [Compare(owner_key, "==", revision), Compare(id_key, "==", id_kv.mod_revision)],
                [Put(owner_key, keys.encode({"leader": new_leader, "epoch": epoch + 1}))],
            )
            if result.succeeded:
                await self._reload(name)
                moved = self._require(name).partition(index)
                assert moved is not None
                return moved
        raise KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"{name}-{index} kept changing; giving up")

    # -- cache -----------------------------------------------------------------------------

    async def _reload(self, name: str) -> None:
        kv = await self._store.get(keys.topic_key(name))
        if kv is None:
            self._forget(name)
            return
        owners = {o.key: o for o in await self._store.range(keys.partitions_prefix(name))}
        info = self._build(name, kv, owners)
        self._topics[name] = info
        self._by_id[info.topic_id] = name

    def _forget(self, name: str) -> None:
        info = self._topics.pop(name, None)
        if info is not None:
            self._by_id.pop(info.topic_id, None)

    @staticmethod
    def _build(name: str, kv: KeyValue, owners: Mapping[str, KeyValue]) -> TopicInfo:
        record = keys.decode(kv.value)
        parts = []
        for index, p in enumerate(record["partitions"]):
            owner_kv = owners.get(keys.partition_key(name, index))
            if owner_kv is not None:
                owner = keys.decode(owner_kv.value)
                leader, epoch, revision = owner["leader"], owner["epoch"], owner_kv.mod_revision
            else:
                leader, epoch, revision = p["leader"], 0, 0
            parts.append(
                PartitionInfo(
                    name, index, p["stream"], tuple(p["replicas"]), leader, epoch, revision
                )
            )
        return TopicInfo(
            name,
            uuid.UUID(hex=record["id"]),
            tuple(parts),
            dict(record["configs"]),
            kv.mod_revision,
        )


def _str_map(configs: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in configs.items() if v is not None}


def _normalise(name: str, raw: str) -> str:
    # Kafka describes an override as the string it stored; only surrounding blanks differ from
    # what the parser accepted, and those are dropped.
    parse_value(TOPIC_CONFIGS[name], raw)
    return raw.strip()
