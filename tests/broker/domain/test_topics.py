"""TopicManager: Kafka's CreateTopics/DeleteTopics/CreatePartitions/configs rules, partition
ownership, and state that survives a restart or a crash at any step."""

from __future__ import annotations

import uuid

import pytest
from domain_fakes import Crashed, CrashingStore, FakeAllocator

from streambed.broker.domain import keys
from streambed.broker.domain.broker_configs import BrokerConfigs
from streambed.broker.domain.config_defs import TOPIC_CONFIGS
from streambed.broker.domain.configs import AlterConfigOp, ConfigSource, OpType
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.producers import PartitionProducerState, ProducerSnapshotStore
from streambed.broker.domain.topics import NewTopic, TopicManager, new_topic_id
from streambed.core.metadata.api import MetadataStore


async def manager(
    store: MetadataStore, allocator: FakeAllocator, node_id: int = 1, **kw: object
) -> TopicManager:
    configs = BrokerConfigs(store, node_id=node_id, static=kw.pop("static", None))  # type: ignore[arg-type]
    await configs.load()
    tm = TopicManager(store, allocator, configs, node_id=node_id, **kw)  # type: ignore[arg-type]
    await tm.start()
    return tm


async def test_create_describe_delete(store: MetadataStore, allocator: FakeAllocator) -> None:
    tm = await manager(store, allocator, static={"num.partitions": "3"})
    info = await tm.create_topic(NewTopic("orders", configs={"retention.ms": "1000"}))
    snapshots = ProducerSnapshotStore(store)
    for p in info.partitions:
        await snapshots.save(p.stream_id, PartitionProducerState().snapshot())
    assert [p.index for p in info.partitions] == [0, 1, 2]  # num.partitions from the broker
    assert len({p.stream_id for p in info.partitions}) == 3
    assert allocator.live == {p.stream_id for p in info.partitions}
    assert all(
        p.leader == 1 and p.leader_epoch == 0 and p.replicas == (1,) for p in info.partitions
    )
    assert tm.get("orders") == info and tm.get_by_id(info.topic_id) == info
    cfg = tm.topic_config("orders")
    assert (cfg.retention_ms, cfg.max_message_bytes, cfg.cleanup_policy) == (
        1000,
        1048588,
        ("delete",),
    )
    deleted = await tm.delete_topic("orders")
    assert deleted.topic_id == info.topic_id
    assert tm.get("orders") is None and tm.get_by_id(info.topic_id) is None
    assert allocator.live == set()
    assert await store.range(keys.ROOT) == []  # nothing left behind
    with pytest.raises(KafkaError) as err:
        await tm.delete_topic("orders")
    assert err.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    with pytest.raises(KafkaError) as err:
        await tm.delete_topic_by_id(info.topic_id)
    assert err.value.code == ErrorCode.UNKNOWN_TOPIC_ID


async def test_create_errors(memory_store: MetadataStore, allocator: FakeAllocator) -> None:
    tm = await manager(memory_store, allocator)
    await tm.create_topic(NewTopic("a.b", 1))
    cases = [
        (NewTopic("a.b", 1), ErrorCode.TOPIC_ALREADY_EXISTS, "Topic 'a.b' already exists."),
        (
            NewTopic("a_b", 1),
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            "Topic 'a_b' collides with existing topic: a.b",
        ),
        (NewTopic("bad name", 1), ErrorCode.INVALID_TOPIC_EXCEPTION, None),
        (
            NewTopic("t", 0),
            ErrorCode.INVALID_PARTITIONS,
            "Number of partitions was set to an invalid non-positive value.",
        ),
        (NewTopic("t", -2), ErrorCode.INVALID_PARTITIONS, None),
        (
            NewTopic("t", 1, 0),
            ErrorCode.INVALID_REPLICATION_FACTOR,
            "Replication factor must be larger than 0, or -1 to use the default value.",
        ),
        (
            NewTopic("t", 1, configs={"retention.ms": None}),
            ErrorCode.INVALID_CONFIG,
            "Null value not supported for topic configs: retention.ms",
        ),
        (
            NewTopic("t", 1, configs={"nope": "1"}),
            ErrorCode.INVALID_CONFIG,
            "Unknown topic config name: nope",
        ),
        (NewTopic("t", 1, configs={"segment.bytes": "1"}), ErrorCode.INVALID_CONFIG, None),
        (NewTopic("t", 2, assignments={0: [1]}), ErrorCode.INVALID_REQUEST, None),
        (
            NewTopic("t", assignments={0: [1], 2: [1]}),
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "partitions should be a consecutive 0-based integer sequence",
        ),
        (
            NewTopic("t", assignments={0: [5]}),
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "The manual partition assignment includes broker 5, but no such broker is registered.",
        ),
        (
            NewTopic("t", assignments={0: []}),
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "The manual partition assignment includes an empty replica list.",
        ),
        (
            NewTopic("t", assignments={0: [1, 1]}),
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "The manual partition assignment includes the broker 1 more than once.",
        ),
    ]
    before = set(allocator.live)
    for spec, code, message in cases:
        with pytest.raises(KafkaError) as err:
            await tm.create_topic(spec)
        assert err.value.code == code, spec
        if message is not None:
            assert err.value.message == message
    assert allocator.live == before  # failed creations create no streams


async def test_replication_factor_and_manual_assignment(
    memory_store: MetadataStore, allocator: FakeAllocator
) -> None:
    tm = await manager(memory_store, allocator, live_brokers=lambda: {1, 2, 3})
    # Storage is shared: a requested factor is accepted, each partition has its owner as replica.
    info = await tm.create_topic(NewTopic("rf3", 2, 3))
    assert info.replication_factor == 1
    manual = await tm.create_topic(NewTopic("manual", assignments={0: [2, 3], 1: [3, 1]}))
    assert [(p.replicas, p.leader) for p in manual.partitions] == [((2, 3), 2), ((3, 1), 3)]
    with pytest.raises(KafkaError) as err:
        await tm.create_topic(NewTopic("m2", assignments={0: [2, 3], 1: [1]}))
    assert err.value.message == (
        "The manual partition assignment includes a partition with 1 replica(s), but this is not "
        "consistent with previous partitions, which have 2 replica(s)."
    )


async def test_validate_only_changes_nothing(
    memory_store: MetadataStore, allocator: FakeAllocator
) -> None:
    tm = await manager(memory_store, allocator)
    info = await tm.create_topic(
        NewTopic("v", 4, configs={"cleanup.policy": "compact"}), validate_only=True
    )
    assert len(info.partitions) == 4 and info.configs == {"cleanup.policy": "compact"}
    assert (
        tm.get("v") is None
        and allocator.live == set()
        and await memory_store.range(keys.ROOT) == []
    )
    await tm.create_topic(NewTopic("v", 1))
    await tm.create_partitions("v", 3, validate_only=True)
    await tm.incremental_alter_configs(
        "v", [AlterConfigOp("retention.ms", OpType.SET, "5")], validate_only=True
    )
    assert len(tm.get("v").partitions) == 1 and tm.get("v").configs == {}  # type: ignore[union-attr]


async def test_create_partitions(store: MetadataStore, allocator: FakeAllocator) -> None:
    tm = await manager(store, allocator)
    info = await tm.create_topic(NewTopic("p", 2))
    grown = await tm.create_partitions("p", 5)
    assert [p.index for p in grown.partitions] == [0, 1, 2, 3, 4]
    assert grown.partitions[:2] == info.partitions  # existing partitions untouched
    assert grown.topic_id == info.topic_id
    for count, code, message in [
        (5, ErrorCode.INVALID_PARTITIONS, "Topic already has 5 partition(s)."),
        (
            3,
            ErrorCode.INVALID_PARTITIONS,
            "The topic p currently has 5 partition(s); 3 would not be an increase.",
        ),
    ]:
        with pytest.raises(KafkaError) as err:
            await tm.create_partitions("p", count)
        assert (err.value.code, err.value.message) == (code, message)
    with pytest.raises(KafkaError) as err:
        await tm.create_partitions("p", 7, [[1]])
    assert (
        err.value.message
        == "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified."
    )
    with pytest.raises(KafkaError) as err:
        await tm.create_partitions("nope", 7)
    assert err.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert allocator.live == {p.stream_id for p in grown.partitions}


async def test_configs_describe_and_alter(store: MetadataStore, allocator: FakeAllocator) -> None:
    tm = await manager(store, allocator, static={"log.retention.hours": "1"})
    await tm.create_topic(NewTopic("c", 1, configs={"max.message.bytes": " 2000 "}))
    entries = {e.name: e for e in tm.describe_configs("c", include_synonyms=True)}
    assert set(entries) == set(TOPIC_CONFIGS)
    mmb = entries["max.message.bytes"]
    assert (mmb.value, mmb.source, mmb.read_only, mmb.sensitive) == (
        "2000",
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
        False,
        False,
    )
    assert [(s.name, s.source) for s in mmb.synonyms] == [
        ("max.message.bytes", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("message.max.bytes", ConfigSource.DEFAULT_CONFIG),
    ]
    ret = entries["retention.ms"]
    assert (ret.value, ret.source) == ("3600000", ConfigSource.STATIC_BROKER_CONFIG)
    assert entries["cleanup.policy"].is_default
    await tm.incremental_alter_configs(
        "c",
        [
            AlterConfigOp("max.message.bytes", OpType.DELETE),
            AlterConfigOp("cleanup.policy", OpType.APPEND, "compact"),
            AlterConfigOp("retention.bytes", OpType.SET, "100"),
        ],
    )
    assert tm.get("c").configs == {"cleanup.policy": "delete,compact", "retention.bytes": "100"}  # type: ignore[union-attr]
    cfg = tm.topic_config("c")
    assert (cfg.cleanup_policy, cfg.retention_bytes, cfg.max_message_bytes) == (
        ("delete", "compact"),
        100,
        1048588,
    )
    # Legacy AlterConfigs replaces every override.
    await tm.alter_configs("c", {"retention.ms": "10"})
    assert tm.get("c").configs == {"retention.ms": "10"}  # type: ignore[union-attr]
    for call, code in [
        (
            tm.incremental_alter_configs("c", [AlterConfigOp("retention.ms", OpType.SET, "x")]),
            ErrorCode.INVALID_CONFIG,
        ),
        (
            tm.incremental_alter_configs("c", [AlterConfigOp("foo", OpType.SET, "1")]),
            ErrorCode.INVALID_CONFIG,
        ),
        (tm.alter_configs("c", {"retention.ms": None}), ErrorCode.INVALID_REQUEST),
        (tm.incremental_alter_configs("zz", []), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    ]:
        with pytest.raises(KafkaError) as err:
            await call
        assert err.value.code == code
    with pytest.raises(KafkaError, match=r"The topic 'zz' does not exist\.") as err:
        tm.describe_configs("zz")
    assert err.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert tm.get("c").configs == {"retention.ms": "10"}  # type: ignore[union-attr]


async def test_restart_sees_the_same_topics(store: MetadataStore, allocator: FakeAllocator) -> None:
    tm = await manager(store, allocator)
    await tm.create_topic(NewTopic("x", 3, configs={"retention.ms": "99"}))
    await tm.create_topic(NewTopic("y.z", 1))
    await tm.create_partitions("y.z", 2)
    await tm.move_partition("x", 1, 7)
    again = await manager(store, allocator)
    assert again.topics() == tm.topics()
    assert again.describe_configs("x") == tm.describe_configs("x")
    # The collision index survived too.
    with pytest.raises(KafkaError) as err:
        await again.create_topic(NewTopic("y_z", 1))
    assert err.value.code == ErrorCode.INVALID_TOPIC_EXCEPTION


async def test_partition_moves_are_fenced(store: MetadataStore, allocator: FakeAllocator) -> None:
    tm = await manager(store, allocator)
    await tm.create_topic(NewTopic("m", 2))
    other = await manager(store, allocator, node_id=2)  # a second broker on the same store
    moved = await other.move_partition("m", 0, 2, expected_epoch=0)
    assert (moved.leader, moved.leader_epoch) == (2, 1)
    # The first broker still believes epoch 0: its move is refused.
    with pytest.raises(KafkaError) as err:
        await tm.move_partition("m", 0, 1, expected_epoch=0)
    assert err.value.code == ErrorCode.FENCED_LEADER_EPOCH
    await tm.refresh()
    assert tm.get("m").partitions[0].leader == 2  # type: ignore[union-attr]
    back = await tm.move_partition("m", 0, 1, expected_epoch=1)
    assert (back.leader, back.leader_epoch) == (1, 2)
    # Moves do not conflict with config changes, and leave the other partition alone.
    await tm.incremental_alter_configs("m", [AlterConfigOp("retention.ms", OpType.SET, "1")])
    parts = tm.get("m").partitions  # type: ignore[union-attr]
    assert (parts[0].leader_epoch, parts[1].leader_epoch) == (2, 0)
    with pytest.raises(KafkaError) as err:
        await tm.move_partition("m", 5, 1)
    assert err.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    # A re-created topic starts over: no ownership record outlives its topic.
    await tm.delete_topic("m")
    fresh = await tm.create_topic(NewTopic("m", 1))
    assert fresh.partitions[0].leader_epoch == 0


async def test_two_brokers_race_to_create(memory_store: MetadataStore) -> None:
    a_alloc, b_alloc = FakeAllocator(), FakeAllocator()
    b_alloc.next_id = 1000
    a = await manager(memory_store, a_alloc)
    b = await manager(memory_store, b_alloc, node_id=2)
    import asyncio

    results = await asyncio.gather(
        a.create_topic(NewTopic("race", 3)),
        b.create_topic(NewTopic("race", 3)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, KafkaError)]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].code == ErrorCode.TOPIC_ALREADY_EXISTS
    # The loser deleted the streams it had made; only the winner's remain.
    assert a_alloc.live | b_alloc.live == {p.stream_id for p in winners[0].partitions}


@pytest.mark.parametrize("crash_after", range(1, 6))
async def test_crash_during_creation_leaks_no_stream(
    memory_store: MetadataStore, crash_after: int
) -> None:
    allocator = FakeAllocator()
    configs = BrokerConfigs(memory_store, node_id=1)
    crashing = CrashingStore(memory_store, crash_after=crash_after)
    tm = TopicManager(crashing, allocator, configs, node_id=1)
    await tm.start()
    with pytest.raises(Crashed):
        await tm.create_topic(NewTopic("t", 3))
    # The broker comes back: either the topic exists with its streams, or its streams are gone,
    # except the one the engine made in the instant before its id could be recorded (RFC 0004:
    # at most one empty stream per interrupted creation).
    again = await manager(memory_store, allocator)
    info = again.get("t")
    expected = {p.stream_id for p in info.partitions} if info is not None else set()
    leaked = allocator.live - expected
    assert expected <= allocator.live
    assert leaked <= {allocator.next_id - 1}
    assert bool(leaked) == (crash_after in (1, 2, 3))  # crashed while recording a new stream's id
    assert await memory_store.range(keys.CREATING) == []


async def test_crash_during_deletion_is_finished_on_restart(
    store: MetadataStore, allocator: FakeAllocator
) -> None:
    tm = await manager(store, allocator)
    info = await tm.create_topic(NewTopic("d", 3))
    allocator.fail_delete = True  # object store unreachable: metadata goes, data stays for now
    await tm.delete_topic("d")
    assert tm.get("d") is None and len(allocator.live) == 3
    assert len(await store.range(keys.DELETING)) == 1
    # The name is free at once, as in Kafka.
    await tm.create_topic(NewTopic("d", 1))
    allocator.fail_delete = False
    again = await manager(store, allocator)
    assert allocator.live == {again.get("d").partitions[0].stream_id}  # type: ignore[union-attr]
    assert not (set(allocator.live) & {p.stream_id for p in info.partitions})
    assert await store.range(keys.DELETING) == []


async def test_crash_between_deletion_steps(memory_store: MetadataStore) -> None:
    allocator = FakeAllocator()
    tm = await manager(memory_store, allocator)
    await tm.create_topic(NewTopic("d", 2))
    crashing = CrashingStore(memory_store, crash_after=1)  # dies right after the metadata txn
    victim = TopicManager(crashing, allocator, BrokerConfigs(memory_store, node_id=1), node_id=1)
    await victim.refresh()
    with pytest.raises(Crashed):
        await victim.delete_topic("d")
    assert len(await memory_store.range(keys.DELETING)) == 1
    again = await manager(memory_store, allocator)
    assert again.get("d") is None and allocator.live == set()
    assert await memory_store.range(keys.ROOT) == []


async def test_stream_creation_failure_cleans_up(
    memory_store: MetadataStore, allocator: FakeAllocator
) -> None:
    tm = await manager(memory_store, allocator)
    allocator.fail_create_after = 2
    with pytest.raises(OSError):
        await tm.create_topic(NewTopic("f", 5))
    assert allocator.live == set() and tm.get("f") is None
    assert await memory_store.range(keys.ROOT) == []


def test_topic_ids_are_valid_kafka_uuids() -> None:
    from base64 import urlsafe_b64encode

    for _ in range(2000):
        tid = new_topic_id()
        assert tid.int != 0 and not urlsafe_b64encode(tid.bytes).startswith(b"-")
        assert isinstance(tid, uuid.UUID)
