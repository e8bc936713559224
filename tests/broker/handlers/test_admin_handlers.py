"""The admin handlers (CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
AlterConfigs, IncrementalAlterConfigs, DeleteRecords, DescribeLogDirs, DescribeCluster,
DescribeTopicPartitions, ListPartitionReassignments) on the real topic and broker config managers
over the in-memory metadata store, with a fake partition manager.

Every response goes through :func:`call`, which encodes it in every version of its API and hands
back what a client of the requested version decodes, so the assertions are about the wire.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from streambed.broker.domain.broker_configs import BrokerConfigs
from streambed.broker.domain.configs import ConfigSource, OpType
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.topics import NewTopic, TopicInfo, TopicManager
from streambed.broker.handlers.admin import handlers
from streambed.broker.protocol.codec import decode_response, encode_response
from streambed.broker.protocol.errors import ErrorCode as WireCode
from streambed.broker.protocol.messages import SUPPORTED_VERSIONS
from streambed.broker.protocol.messages import alter_configs as ac
from streambed.broker.protocol.messages import create_partitions as cp
from streambed.broker.protocol.messages import create_topics as ct
from streambed.broker.protocol.messages import delete_records as dr
from streambed.broker.protocol.messages import delete_topics as dt
from streambed.broker.protocol.messages import describe_cluster as dc
from streambed.broker.protocol.messages import describe_configs as dcf
from streambed.broker.protocol.messages import describe_log_dirs as dld
from streambed.broker.protocol.messages import describe_topic_partitions as dtp
from streambed.broker.protocol.messages import incremental_alter_configs as iac
from streambed.broker.protocol.messages import list_partition_reassignments as lpr
from streambed.broker.server.context import Endpoint, Handler, RequestContext, Services
from streambed.broker.server.partitions import PartitionManager
from streambed.core.config.model import BrokerSection
from streambed.core.context import NodeContext
from streambed.core.errors import NotFound, StreambedError
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata

NODE = 1
ZERO = uuid.UUID(int=0)
_names = itertools.count()


# -- fakes --------------------------------------------------------------------------------------


class FakeAllocator:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.live: set[int] = set()
        self.fail: StreambedError | None = None

    async def create_stream(self) -> int:
        if self.fail is not None:
            raise self.fail
        sid = next(self.ids)
        self.live.add(sid)
        return sid

    async def delete_stream(self, stream_id: int) -> None:
        if stream_id not in self.live:
            raise NotFound(f"stream {stream_id}")
        self.live.remove(stream_id)


@dataclass
class FakePartition:
    topic: str
    index: int
    stream_id: int
    leader_epoch: int
    log_start_offset: int = 0
    high_watermark: int = 0
    size_bytes: int = 0

    async def delete_records(self, offset: int) -> int:
        if offset == -1:
            offset = self.high_watermark
        if offset > self.high_watermark:
            raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE, f"{offset} > {self.high_watermark}")
        self.log_start_offset = max(self.log_start_offset, offset)
        return self.log_start_offset


@dataclass
class FakePartitions:
    """The PartitionManager API on a real TopicManager: partitions led here are "open"."""

    topics: TopicManager
    parts: dict[tuple[str, int], FakePartition] = field(default_factory=dict)
    configs_changed_for: list[str] = field(default_factory=list)

    def get(self, topic: str, index: int) -> FakePartition | None:
        return self.parts.get((topic, index))

    @property
    def _partitions(self) -> dict[tuple[str, int], FakePartition]:
        return self.parts

    def lookup(self, topic: str, index: int, **kwargs: Any) -> FakePartition | int:
        # The real lookup (its error codes are part of what these tests check).
        return PartitionManager.lookup(self, topic, index, **kwargs)  # type: ignore[arg-type,return-value]

    def all(self) -> list[FakePartition]:
        return list(self.parts.values())

    def _open(self, info: TopicInfo) -> None:
        for p in info.partitions:
            if p.leader == NODE and (info.name, p.index) not in self.parts:
                self.parts[(info.name, p.index)] = FakePartition(
                    info.name, p.index, p.stream_id, p.leader_epoch
                )

    def _close(self, name: str) -> None:
        for key in [k for k in self.parts if k[0] == name]:
            del self.parts[key]

    async def create_topic(self, spec: NewTopic, *, validate_only: bool = False) -> TopicInfo:
        info = await self.topics.create_topic(spec, validate_only=validate_only)
        if not validate_only:
            self._open(info)
        return info

    async def create_partitions(
        self,
        name: str,
        count: int,
        assignments: Sequence[Sequence[int]] | None,
        *,
        validate_only: bool = False,
    ) -> TopicInfo:
        info = await self.topics.create_partitions(
            name, count, assignments, validate_only=validate_only
        )
        if not validate_only:
            self._open(info)
        return info

    async def delete_topic(self, name: str) -> TopicInfo:
        info = await self.topics.delete_topic(name)
        self._close(name)
        return info

    async def delete_topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo:
        info = await self.topics.delete_topic_by_id(topic_id)
        self._close(info.name)
        return info

    async def configs_changed(self, name: str | None) -> None:
        self.configs_changed_for.append(name or "*")


@dataclass
class Env:
    services: Services
    topics: TopicManager
    configs: BrokerConfigs
    partitions: FakePartitions
    allocator: FakeAllocator
    handlers: dict[int, Handler]


async def make_env(tmp_path: Path, static: dict[str, str] | None = None) -> AsyncIterator[Env]:
    store = await open_memory_metadata(
        MemoryMetadataOptions(name=f"admin-{next(_names)}"), NodeContext(data_dir=tmp_path)
    )
    configs = BrokerConfigs(store, node_id=NODE, static=static)
    await configs.load()
    allocator = FakeAllocator()
    topics = TopicManager(store, allocator, configs, node_id=NODE, live_brokers=lambda: (1, 2))
    await topics.start()
    partitions = FakePartitions(topics)
    none = cast(Any, None)
    services = Services(
        node_id=NODE,
        cluster_id="cluster-0",
        endpoint=Endpoint(NODE, "127.0.0.1", 9092),
        settings=BrokerSection(node_id=NODE, data_dir=tmp_path / "data"),
        store=store,
        engine=none,
        topics=topics,
        broker_configs=configs,
        groups=none,
        producer_ids=none,
        partitions=cast(Any, partitions),
        clock=none,
    )
    yield Env(services, topics, configs, partitions, allocator, handlers(services))
    await store.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in make_env(tmp_path):
        yield e


def _versions(api_key: int, request: object) -> range:
    low, high = SUPPORTED_VERSIONS[api_key]
    if isinstance(request, dt.DeleteTopicsRequest) and request.topics:
        low = 6  # topics by id only exist in v6 (names may then be null)
    return range(low, high + 1)


async def call(env: Env, api_key: int, version: int, request: Any) -> Any:
    """Run the handler; encode its response in every version a request like this one can come
    in; return what a client of ``version`` decodes."""
    ctx = RequestContext(api_key, version, 42, "admin-test", "10.0.0.9:5000")
    response = await env.handlers[api_key](ctx, request)
    frames = {}
    for v in _versions(api_key, request):
        frames[v] = b"".join(bytes(b) for b in encode_response(api_key, v, 42, response))
    correlation_id, decoded = decode_response(api_key, version, frames[version][4:])
    assert correlation_id == 42
    return decoded


async def create(env: Env, name: str, partitions: int = 1, **configs: str) -> TopicInfo:
    return await env.partitions.create_topic(NewTopic(name, partitions, configs=configs))


# -- registration ------------------------------------------------------------------------------


def test_handlers_cover_the_admin_apis(env: Env) -> None:
    keys = {19, 20, 37, 32, 33, 44, 21, 35, 60, 75, 46}
    assert set(env.handlers) == keys
    assert keys <= set(SUPPORTED_VERSIONS)


# -- CreateTopics ------------------------------------------------------------------------------


def _creatable(
    name: str, partitions: int = 1, rf: int = -1, configs: dict[str, str | None] | None = None
) -> ct.CreatableTopic:
    return ct.CreatableTopic(
        name,
        partitions,
        rf,
        configs=[ct.CreatableTopicConfig(k, v) for k, v in (configs or {}).items()],
    )


@pytest.mark.parametrize("version", [2, 7])
async def test_create_topics(env: Env, version: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "streambed.broker.admin")
    request = ct.CreateTopicsRequest([_creatable("orders", 3, 1, {"retention.ms": "1000"})])
    [result] = (await call(env, 19, version, request)).topics
    info = env.topics.get("orders")
    assert info is not None and len(info.partitions) == 3
    assert sorted(env.partitions.parts) == [("orders", 0), ("orders", 1), ("orders", 2)]
    assert (result.name, result.error_code, result.error_message) == ("orders", 0, None)
    if version >= 5:
        assert (result.num_partitions, result.replication_factor) == (3, 1)
        configs = {c.name: c for c in result.configs}
        assert (configs["retention.ms"].value, configs["retention.ms"].config_source) == (
            "1000",
            ConfigSource.DYNAMIC_TOPIC_CONFIG,
        )
        assert configs["cleanup.policy"].config_source == ConfigSource.DEFAULT_CONFIG
        assert result.topic_id == (info.topic_id if version >= 7 else ZERO)
    else:
        assert (result.num_partitions, result.configs) == (-1, None)
    [line] = [r.getMessage() for r in caplog.records if "created topic" in r.getMessage()]
    assert "admin-test@10.0.0.9:5000" in line and "orders" in line


@pytest.mark.parametrize("version", [2, 5, 7])
async def test_create_topics_errors(env: Env, version: int) -> None:
    await create(env, "taken")
    request = ct.CreateTopicsRequest(
        [
            _creatable("taken"),
            _creatable("zero", 0),
            _creatable("bad-config", 1, configs={"nope": "1"}),
            _creatable("null-config", 1, configs={"retention.ms": None}),
            _creatable("twice"),
            _creatable("twice", 2),
            _creatable("bad name"),
            _creatable("rf0", 1, 0),
            ct.CreatableTopic(
                "dup-assignment",
                -1,
                -1,
                [ct.CreatableReplicaAssignment(0, [1]), ct.CreatableReplicaAssignment(0, [1])],
            ),
            _creatable("fine", 2),
        ]
    )
    response = await call(env, 19, version, request)
    got = {t.name: (t.error_code, t.error_message) for t in response.topics}
    assert len(response.topics) == len(got)  # "twice" is answered once
    assert got == {
        "taken": (ErrorCode.TOPIC_ALREADY_EXISTS, "Topic 'taken' already exists."),
        "zero": (
            ErrorCode.INVALID_PARTITIONS,
            "Number of partitions was set to an invalid non-positive value.",
        ),
        "bad-config": (ErrorCode.INVALID_CONFIG, "Unknown topic config name: nope"),
        "null-config": (
            ErrorCode.INVALID_CONFIG,
            "Null value not supported for topic configs: retention.ms",
        ),
        "twice": (ErrorCode.INVALID_REQUEST, "Duplicate topic name."),
        "bad name": (ErrorCode.INVALID_TOPIC_EXCEPTION, got["bad name"][1]),
        "rf0": (
            ErrorCode.INVALID_REPLICATION_FACTOR,
            "Replication factor must be larger than 0, or -1 to use the default value.",
        ),
        "dup-assignment": (
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "partitions should be a consecutive 0-based integer sequence",
        ),
        "fine": (0, None),
    }
    assert "bad name" in (got["bad name"][1] or "")
    failed = [t for t in response.topics if t.error_code]
    assert all(t.num_partitions == -1 and t.configs is None for t in failed)
    assert [t.name for t in env.topics.topics()] == ["fine", "taken"]


async def test_create_topics_validate_only_and_assignments(env: Env) -> None:
    request = ct.CreateTopicsRequest(
        [
            _creatable("checked", 4, configs={"cleanup.policy": "compact"}),
            _creatable("bad", 1, configs={"segment.bytes": "1"}),
        ],
        validate_only=True,
    )
    response = await call(env, 19, 7, request)
    checked, bad = response.topics
    assert (checked.error_code, checked.num_partitions, checked.replication_factor) == (0, 4, 1)
    policy = next(c for c in checked.configs if c.name == "cleanup.policy")
    assert (policy.value, policy.config_source) == ("compact", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    retention = next(c for c in checked.configs if c.name == "retention.ms")
    assert (retention.value, retention.config_source) == ("604800000", ConfigSource.DEFAULT_CONFIG)
    assert bad.error_code == ErrorCode.INVALID_CONFIG and bad.error_message
    assert env.topics.topics() == [] and env.allocator.live == set()
    assert env.partitions.parts == {}

    manual = ct.CreateTopicsRequest(
        [
            ct.CreatableTopic(
                "manual",
                -1,
                -1,
                [ct.CreatableReplicaAssignment(1, [2]), ct.CreatableReplicaAssignment(0, [1])],
            )
        ]
    )
    [result] = (await call(env, 19, 6, manual)).topics
    assert (result.error_code, result.num_partitions) == (0, 2)
    info = env.topics.get("manual")
    assert info is not None and [p.leader for p in info.partitions] == [1, 2]
    assert sorted(env.partitions.parts) == [("manual", 0)]  # partition 1 is led by node 2


async def test_create_topics_storage_failure(env: Env) -> None:
    env.allocator.fail = StreambedError("object store unreachable")
    [result] = (await call(env, 19, 7, ct.CreateTopicsRequest([_creatable("t")]))).topics
    assert result.error_code == WireCode.KAFKA_STORAGE_ERROR
    assert result.error_message == "object store unreachable"
    assert env.topics.get("t") is None


# -- DeleteTopics ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 5])
async def test_delete_topics_by_name(
    env: Env, version: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "streambed.broker.admin")
    await create(env, "doomed", 2)
    await create(env, "kept")
    request = dt.DeleteTopicsRequest(topic_names=["doomed", "ghost", "dup", "dup"])
    response = await call(env, 20, version, request)
    got = {r.name: (r.error_code, r.error_message) for r in response.responses}
    message = version >= 5
    assert got == {
        "doomed": (0, None),
        "ghost": (
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            "This server does not host this topic-partition." if message else None,
        ),
        "dup": (ErrorCode.INVALID_REQUEST, "Duplicate topic name." if message else None),
    }
    assert env.topics.get("doomed") is None and env.topics.get("kept") is not None
    assert sorted(env.partitions.parts) == [("kept", 0)]
    assert any("deleted topic doomed" in r.getMessage() for r in caplog.records)


async def test_delete_topics_by_id(env: Env) -> None:
    by_id = await create(env, "by-id", 2)
    both = await create(env, "both")
    mapped = await create(env, "mapped")
    ghost = uuid.uuid4()
    request = dt.DeleteTopicsRequest(
        topics=[
            dt.DeleteTopicState(None, by_id.topic_id),
            dt.DeleteTopicState(None, ghost),
            dt.DeleteTopicState("both", both.topic_id),
            dt.DeleteTopicState(None, ZERO),
            dt.DeleteTopicState(None, mapped.topic_id),
            dt.DeleteTopicState("mapped", ZERO),
            dt.DeleteTopicState(None, by_id.topic_id),  # the second time: a duplicate
        ]
    )
    response = await call(env, 20, 6, request)
    got = {(r.name, r.topic_id): (r.error_code, r.error_message) for r in response.responses}
    assert got == {
        (None, by_id.topic_id): (ErrorCode.INVALID_REQUEST, "Duplicate topic id."),
        (None, ghost): (ErrorCode.UNKNOWN_TOPIC_ID, "This server does not host this topic ID."),
        ("both", both.topic_id): (
            ErrorCode.INVALID_REQUEST,
            "You may not specify both topic name and topic id.",
        ),
        (None, ZERO): (ErrorCode.INVALID_REQUEST, "Neither topic name nor id were specified."),
        ("mapped", mapped.topic_id): (
            ErrorCode.INVALID_REQUEST,
            "The provided topic name maps to an ID that was already supplied.",
        ),
    }
    assert len(response.responses) == 5
    # Nothing was deleted: every entry was refused.
    assert [t.name for t in env.topics.topics()] == ["both", "by-id", "mapped"]

    request = dt.DeleteTopicsRequest(
        topics=[dt.DeleteTopicState(None, by_id.topic_id), dt.DeleteTopicState("both", ZERO)]
    )
    response = await call(env, 20, 6, request)
    codes = {(r.name, r.topic_id): r.error_code for r in response.responses}
    assert codes == {("by-id", by_id.topic_id): 0, ("both", both.topic_id): 0}
    assert [t.name for t in env.topics.topics()] == ["mapped"]
    assert sorted(env.partitions.parts) == [("mapped", 0)]


@pytest.mark.parametrize(
    ("version", "code"),
    [
        (1, ErrorCode.INVALID_REQUEST),
        (2, ErrorCode.INVALID_REQUEST),
        (3, WireCode.TOPIC_DELETION_DISABLED),
        (6, WireCode.TOPIC_DELETION_DISABLED),
    ],
)
async def test_delete_topics_disabled(tmp_path: Path, version: int, code: int) -> None:
    async for env in make_env(tmp_path, {"delete.topic.enable": "false"}):
        info = await create(env, "stays")
        if version >= 6:
            request = dt.DeleteTopicsRequest(topics=[dt.DeleteTopicState(None, info.topic_id)])
        else:
            request = dt.DeleteTopicsRequest(topic_names=["stays"])
        [result] = (await call(env, 20, version, request)).responses
        assert result.error_code == code
        assert env.topics.get("stays") is not None


# -- CreatePartitions --------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 3])
async def test_create_partitions(env: Env, version: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "streambed.broker.admin")
    await create(env, "grow")
    await create(env, "same", 2)
    await create(env, "checked")
    await create(env, "manual")
    request = cp.CreatePartitionsRequest(
        [
            cp.CreatePartitionsTopic("grow", 3),
            cp.CreatePartitionsTopic("same", 2),
            cp.CreatePartitionsTopic("same", 1),
            cp.CreatePartitionsTopic("ghost", 2),
            cp.CreatePartitionsTopic("manual", 3, [cp.CreatePartitionsAssignment([2])]),
        ]
    )
    response = await call(env, 37, version, request)
    got = {r.name: (r.error_code, r.error_message) for r in response.results}
    assert got == {
        "grow": (0, None),
        "same": (ErrorCode.INVALID_REQUEST, "Duplicate topic name."),
        "ghost": (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The topic 'ghost' does not exist."),
        "manual": (
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.",
        ),
    }
    assert sorted(k for k in env.partitions.parts if k[0] == "grow") == [
        ("grow", 0),
        ("grow", 1),
        ("grow", 2),
    ]
    assert any("grew topic grow to 3 partitions" in r.getMessage() for r in caplog.records)

    request = cp.CreatePartitionsRequest(
        [cp.CreatePartitionsTopic("same", 2), cp.CreatePartitionsTopic("checked", 5)],
        validate_only=True,
    )
    response = await call(env, 37, version, request)
    got = {r.name: (r.error_code, r.error_message) for r in response.results}
    assert got == {
        "same": (ErrorCode.INVALID_PARTITIONS, "Topic already has 2 partition(s)."),
        "checked": (0, None),
    }
    checked = env.topics.get("checked")
    assert checked is not None and len(checked.partitions) == 1


# -- DescribeConfigs ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 4])
async def test_describe_topic_configs(env: Env, version: int) -> None:
    await create(env, "orders", 1, **{"retention.ms": " 1000 "})
    request = dcf.DescribeConfigsRequest(
        [
            dcf.DescribeConfigsResource(2, "orders", ["retention.ms", "cleanup.policy"]),
            dcf.DescribeConfigsResource(2, "orders", None),
            dcf.DescribeConfigsResource(2, "ghost", None),
            dcf.DescribeConfigsResource(2, "bad name", None),
            dcf.DescribeConfigsResource(16, "x", None),
        ],
        include_synonyms=True,
        include_documentation=True,
    )
    some, every, ghost, bad, unsupported = (await call(env, 32, version, request)).results
    assert (some.error_code, some.resource_type, some.resource_name) == (0, 2, "orders")
    configs = {c.name: c for c in some.configs}
    assert set(configs) == {"retention.ms", "cleanup.policy"}
    retention = configs["retention.ms"]
    assert (retention.value, retention.config_source, retention.read_only) == (
        "1000",
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
        False,
    )
    assert [(s.name, s.source) for s in retention.synonyms][:2] == [
        ("retention.ms", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.retention.hours", ConfigSource.DEFAULT_CONFIG),
    ]
    if version >= 3:
        assert retention.config_type == 5  # LONG
        assert retention.documentation
        assert configs["cleanup.policy"].config_type == 7  # LIST
    else:
        assert (retention.config_type, retention.documentation) == (0, None)
    assert len(every.configs) > 20 and every.error_code == 0
    assert (ghost.error_code, ghost.error_message) == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        "The topic 'ghost' does not exist.",
    )
    assert ghost.configs == []
    assert bad.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert (unsupported.error_code, unsupported.error_message) == (
        ErrorCode.INVALID_REQUEST,
        "Unsupported resource type: 16",
    )


@pytest.mark.parametrize("version", [1, 4])
async def test_describe_broker_configs_with_synonyms(env: Env, version: int) -> None:
    await env.configs.alter("", {"log.retention.ms": "5000"})
    request = dcf.DescribeConfigsRequest(
        [
            dcf.DescribeConfigsResource(4, "1", ["log.retention.ms", "num.partitions"]),
            dcf.DescribeConfigsResource(4, "", []),
            dcf.DescribeConfigsResource(4, "2", None),
            dcf.DescribeConfigsResource(8, "1", None),
            dcf.DescribeConfigsResource(8, "3", None),
        ],
        include_synonyms=True,
    )
    node, default, other, logger, other_logger = (await call(env, 32, version, request)).results
    configs = {c.name: c for c in node.configs}
    assert set(configs) == {"log.retention.ms", "num.partitions"}
    retention = configs["log.retention.ms"]
    assert (retention.value, retention.config_source, retention.read_only) == (
        "5000",
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
        False,
    )
    assert [(s.name, s.value, s.source) for s in retention.synonyms] == [
        ("log.retention.ms", "5000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
        ("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]
    partitions = configs["num.partitions"]
    assert (partitions.value, partitions.read_only) == ("1", True)
    assert [(c.name, c.value) for c in default.configs] == [("log.retention.ms", "5000")]
    assert (other.error_code, other.error_message) == (
        ErrorCode.INVALID_REQUEST,
        "Unexpected broker id, expected 1 or empty string, but received 2",
    )
    assert (logger.error_code, logger.configs) == (0, [])
    assert other_logger.error_code == ErrorCode.INVALID_REQUEST
    # Without include_synonyms there are none.
    request.include_synonyms = False
    node = (await call(env, 32, version, request)).results[0]
    assert all(c.synonyms == [] for c in node.configs)


# -- AlterConfigs ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2])
async def test_alter_configs(env: Env, version: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "streambed.broker.admin")
    await create(env, "t", 1, **{"retention.ms": "1000"})
    await create(env, "u")
    await create(env, "v")

    def res(kind: int, name: str, **configs: str | None) -> ac.AlterConfigsResource:
        return ac.AlterConfigsResource(
            kind, name, [ac.AlterableConfig(k.replace("_", "."), v) for k, v in configs.items()]
        )

    request = ac.AlterConfigsRequest(
        [
            res(2, "t", max_message_bytes="2000"),  # replaces retention.ms too
            res(2, "u", segment_bytes="1"),
            res(2, "ghost", max_message_bytes="2000"),
            res(4, "", log_retention_ms="9000"),
            res(4, "1", num_partitions="3"),
            res(8, "1"),
            res(2, "twice"),
            res(2, "twice"),
            res(2, "v", retention_ms="1", x="2"),
        ]
    )
    response = await call(env, 33, version, request)
    got = [
        (r.resource_type, r.resource_name, r.error_code, r.error_message)
        for r in response.responses
    ]
    assert got == [
        (2, "t", 0, None),
        (
            2,
            "u",
            ErrorCode.INVALID_CONFIG,
            "Invalid value 1 for configuration segment.bytes: Value must be at least 1048576",
        ),
        (2, "ghost", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The topic 'ghost' does not exist."),
        (4, "", 0, None),
        (
            4,
            "1",
            ErrorCode.INVALID_REQUEST,
            "Cannot update these configs dynamically: Set(num.partitions)",
        ),
        (
            8,
            "1",
            ErrorCode.INVALID_REQUEST,
            "AlterConfigs is deprecated and does not support the resource type BROKER_LOGGER",
        ),
        (2, "twice", ErrorCode.INVALID_REQUEST, "Each resource must appear at most once."),
        (2, "twice", ErrorCode.INVALID_REQUEST, "Each resource must appear at most once."),
        (2, "v", ErrorCode.INVALID_CONFIG, "Unknown topic config name: x"),
    ]
    info = env.topics.get("t")
    assert info is not None and dict(info.configs) == {"max.message.bytes": "2000"}
    assert env.configs.topic_default("retention.ms")[0] == "9000"
    assert env.partitions.configs_changed_for == ["t", "*"]  # the broker default changed too
    assert any("altered configs of topic t" in r.getMessage() for r in caplog.records)
    assert any("altered configs of broker default" in r.getMessage() for r in caplog.records)


async def test_alter_configs_duplicate_keys_and_validate_only(env: Env) -> None:
    await create(env, "t")
    request = ac.AlterConfigsRequest(
        [
            ac.AlterConfigsResource(
                2,
                "t",
                [ac.AlterableConfig("retention.ms", "1"), ac.AlterableConfig("retention.ms", "2")],
            ),
            ac.AlterConfigsResource(2, "t2", [ac.AlterableConfig("retention.ms", None)]),
        ]
    )
    await create(env, "t2")
    dup, null = (await call(env, 33, 1, request)).responses
    assert (dup.error_code, dup.error_message) == (
        ErrorCode.INVALID_REQUEST,
        "Error due to duplicate config keys",
    )
    assert (null.error_code, null.error_message) == (
        ErrorCode.INVALID_REQUEST,
        "Null value not supported for : retention.ms",
    )
    request = ac.AlterConfigsRequest(
        [ac.AlterConfigsResource(2, "t", [ac.AlterableConfig("retention.ms", "5")])],
        validate_only=True,
    )
    [ok] = (await call(env, 33, 2, request)).responses
    assert ok.error_code == 0
    info = env.topics.get("t")
    assert info is not None and dict(info.configs) == {}
    assert env.partitions.configs_changed_for == []


# -- IncrementalAlterConfigs -------------------------------------------------------------------


def _ops(*ops: tuple[str, int, str | None]) -> list[iac.AlterableConfig]:
    return [iac.AlterableConfig(name, op, value) for name, op, value in ops]


@pytest.mark.parametrize("version", [0, 1])
async def test_incremental_alter_topic(env: Env, version: int) -> None:
    await create(env, "t", 1, **{"retention.ms": "1000"})

    async def alter(*ops: tuple[str, int, str | None], validate: bool = False) -> Any:
        request = iac.IncrementalAlterConfigsRequest(
            [iac.AlterConfigsResource(2, "t", _ops(*ops))], validate_only=validate
        )
        [result] = (await call(env, 44, version, request)).responses
        return result

    def overrides() -> dict[str, str]:
        info = env.topics.get("t")
        assert info is not None
        return dict(info.configs)

    result = await alter(
        ("max.message.bytes", OpType.SET, "5000"),
        ("retention.ms", OpType.DELETE, None),
        ("cleanup.policy", OpType.APPEND, "compact"),
    )
    assert (result.error_code, result.resource_name) == (0, "t")
    assert overrides() == {"max.message.bytes": "5000", "cleanup.policy": "delete,compact"}
    assert (await alter(("cleanup.policy", OpType.SUBTRACT, "delete"))).error_code == 0
    assert overrides()["cleanup.policy"] == "compact"
    assert env.partitions.configs_changed_for == ["t", "t"]
    # validate_only: checked, not applied.
    assert (await alter(("segment.bytes", OpType.SET, "2000000"), validate=True)).error_code == 0
    assert "segment.bytes" not in overrides()
    bad = await alter(("max.message.bytes", OpType.APPEND, "1"))
    assert (bad.error_code, bad.error_message) == (
        ErrorCode.INVALID_CONFIG,
        "Can't APPEND to key max.message.bytes because its type is not LIST.",
    )
    unknown_op = await alter(("retention.ms", 9, "1"))
    assert (unknown_op.error_code, unknown_op.error_message) == (
        ErrorCode.INVALID_REQUEST,
        "Unknown operations type 9",
    )
    invalid = await alter(("retention.ms", OpType.SET, "soon"))
    assert invalid.error_code == ErrorCode.INVALID_CONFIG
    assert env.partitions.configs_changed_for == ["t", "t"]


@pytest.mark.parametrize("version", [0, 1])
async def test_incremental_alter_broker_and_others(env: Env, version: int) -> None:
    request = iac.IncrementalAlterConfigsRequest(
        [
            iac.AlterConfigsResource(4, "1", _ops(("message.max.bytes", OpType.SET, "2000000"))),
            iac.AlterConfigsResource(4, "", _ops(("num.partitions", OpType.SET, "2"))),
            iac.AlterConfigsResource(4, "9", _ops(("message.max.bytes", OpType.SET, "1"))),
            iac.AlterConfigsResource(8, "1", _ops(("root", OpType.SET, "DEBUG"))),
            iac.AlterConfigsResource(2, "ghost", _ops(("retention.ms", OpType.SET, "1"))),
            iac.AlterConfigsResource(3, "x", []),
        ]
    )
    response = await call(env, 44, version, request)
    got = [(r.resource_type, r.resource_name, r.error_code) for r in response.responses]
    assert got == [
        (4, "1", 0),
        (4, "", ErrorCode.INVALID_REQUEST),
        (4, "9", ErrorCode.INVALID_REQUEST),
        (8, "1", ErrorCode.INVALID_REQUEST),
        (2, "ghost", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        (3, "x", ErrorCode.INVALID_REQUEST),
    ]
    assert response.responses[2].error_message == "Unexpected broker id, expected 1, but received 9"
    assert env.configs.value("message.max.bytes") == "2000000"
    assert env.partitions.configs_changed_for == ["*"]  # a broker config: every partition refreshes


# -- DeleteRecords -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2])
async def test_delete_records(env: Env, version: int) -> None:
    await create(env, "log", 4)
    for p in env.partitions.all():
        p.high_watermark = 10
    await env.topics.move_partition("log", 3, 2)
    del env.partitions.parts[("log", 3)]  # now led by node 2
    request = dr.DeleteRecordsRequest(
        [
            dr.DeleteRecordsTopic(
                "log",
                [
                    dr.DeleteRecordsPartition(0, 5),
                    dr.DeleteRecordsPartition(1, -1),
                    dr.DeleteRecordsPartition(2, 11),
                    dr.DeleteRecordsPartition(3, 1),
                    dr.DeleteRecordsPartition(4, 1),
                    dr.DeleteRecordsPartition(0, -2),
                ],
            ),
            dr.DeleteRecordsTopic("ghost", [dr.DeleteRecordsPartition(0, 1)]),
        ]
    )
    log_topic, ghost = (await call(env, 21, version, request)).topics
    assert [(p.partition_index, p.low_watermark, p.error_code) for p in log_topic.partitions] == [
        (0, 5, 0),
        (1, 10, 0),
        (2, -1, ErrorCode.OFFSET_OUT_OF_RANGE),
        (3, -1, ErrorCode.NOT_LEADER_OR_FOLLOWER),
        (4, -1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        (0, -1, ErrorCode.OFFSET_OUT_OF_RANGE),
    ]
    assert [(p.partition_index, p.error_code) for p in ghost.partitions] == [
        (0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    ]
    part = env.partitions.get("log", 0)
    assert part is not None and part.log_start_offset == 5


# -- DescribeLogDirs ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 4, 5])
async def test_describe_log_dirs(env: Env, version: int, tmp_path: Path) -> None:
    await create(env, "b", 2)
    await create(env, "a")
    for i, p in enumerate(env.partitions.all()):
        p.size_bytes = 100 * (i + 1)

    async def describe(topics: list[dld.DescribableLogDirTopic] | None) -> Any:
        response = await call(env, 35, version, dld.DescribeLogDirsRequest(topics))
        assert response.error_code == 0
        [result] = response.results
        assert (result.error_code, result.log_dir) == (0, str(tmp_path / "data"))
        return {
            t.name: [(p.partition_index, p.partition_size, p.offset_lag) for p in t.partitions]
            for t in result.topics
        }

    sizes = {(p.topic, p.index): p.size_bytes for p in env.partitions.all()}
    assert await describe(None) == {
        "a": [(0, sizes[("a", 0)], 0)],
        "b": [(0, sizes[("b", 0)], 0), (1, sizes[("b", 1)], 0)],
    }
    wanted = [dld.DescribableLogDirTopic("b", [1, 7]), dld.DescribableLogDirTopic("ghost", [0])]
    assert await describe(wanted) == {"b": [(1, sizes[("b", 1)], 0)]}
    assert await describe([]) == {}


# -- DescribeCluster ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 2])
async def test_describe_cluster(env: Env, version: int) -> None:
    request = dc.DescribeClusterRequest(include_cluster_authorized_operations=True)
    response = await call(env, 60, version, request)
    assert (response.error_code, response.cluster_id, response.controller_id) == (
        0,
        "cluster-0",
        NODE,
    )
    assert [(b.broker_id, b.host, b.port, b.rack, b.is_fenced) for b in response.brokers] == [
        (NODE, "127.0.0.1", 9092, None, False)
    ]
    assert response.cluster_authorized_operations == 0b1_1111_1010_0000  # ops 5, 7-12
    plain = await call(env, 60, version, dc.DescribeClusterRequest())
    assert plain.cluster_authorized_operations == -(2**31)
    if version >= 1:
        controllers = await call(env, 60, version, dc.DescribeClusterRequest(endpoint_type=2))
        assert controllers.error_code == WireCode.UNSUPPORTED_ENDPOINT_TYPE
        assert controllers.error_message and controllers.brokers == []


# -- DescribeTopicPartitions -------------------------------------------------------------------


async def test_describe_topic_partitions_pages(env: Env) -> None:
    infos = {name: await create(env, name, n) for name, n in (("c", 1), ("a", 3), ("b", 2))}
    seen: list[tuple[str, int]] = []
    cursors: list[tuple[str, int] | None] = []
    cursor: dtp.Cursor | None = None
    while True:
        request = dtp.DescribeTopicPartitionsRequest([], 2, cursor)
        response = await call(env, 75, 0, request)
        for t in response.topics:
            assert (t.error_code, t.topic_id, t.is_internal) == (0, infos[t.name].topic_id, False)
            for p in t.partitions:
                assert (p.error_code, p.leader_id, p.leader_epoch) == (0, NODE, 0)
                assert (p.replica_nodes, p.isr_nodes, p.eligible_leader_replicas) == (
                    [NODE],
                    [NODE],
                    [],
                )
                seen.append((t.name, p.partition_index))
        cursor = response.next_cursor
        cursors.append(None if cursor is None else (cursor.topic_name, cursor.partition_index))
        if cursor is None:
            break
    assert seen == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("c", 0)]
    assert cursors == [("a", 2), ("b", 1), None]
    # A full page that ends exactly with a topic points at the next topic's first partition.
    response = await call(env, 75, 0, dtp.DescribeTopicPartitionsRequest([], 3))
    assert [t.name for t in response.topics] == ["a"]
    assert (response.next_cursor.topic_name, response.next_cursor.partition_index) == ("b", 0)


async def test_describe_topic_partitions_by_name(env: Env) -> None:
    await create(env, "b", 2)
    await create(env, "a")
    await env.topics.move_partition("b", 1, 7)  # a node that is not a live broker
    request = dtp.DescribeTopicPartitionsRequest(
        [dtp.TopicRequest(n) for n in ("b", "ghost", "a", "bad name", "a")]
    )
    response = await call(env, 75, 0, request)
    got = {t.name: t.error_code for t in response.topics}
    assert [t.name for t in response.topics] == ["a", "b", "bad name", "ghost"]
    assert got == {
        "a": 0,
        "b": 0,
        "bad name": ErrorCode.INVALID_TOPIC_EXCEPTION,
        "ghost": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    b = next(t for t in response.topics if t.name == "b")
    assert [
        (p.partition_index, p.error_code, p.leader_id, p.leader_epoch) for p in b.partitions
    ] == [
        (0, 0, NODE, 0),
        (1, WireCode.LEADER_NOT_AVAILABLE, -1, 1),
    ]
    # A cursor restricts the named topics to those at or after it ...
    request.cursor = dtp.Cursor("b", 1)
    response = await call(env, 75, 0, request)
    assert [t.name for t in response.topics] == ["b", "bad name", "ghost"]
    assert [p.partition_index for p in response.topics[0].partitions] == [1]
    # ... and must name one of them, with a valid partition.
    for bad_cursor in (dtp.Cursor("zzz", 0), dtp.Cursor("a", -1)):
        request.cursor = bad_cursor
        response = await call(env, 75, 0, request)
        assert {t.error_code for t in response.topics} == {ErrorCode.INVALID_REQUEST}
        assert len(response.topics) == 5 and response.next_cursor is None


# -- ListPartitionReassignments ----------------------------------------------------------------


async def test_list_partition_reassignments(env: Env) -> None:
    await create(env, "t")
    for topics in (None, [lpr.ListPartitionReassignmentsTopics("t", [0])]):
        request = lpr.ListPartitionReassignmentsRequest(topics=topics)
        response = await call(env, 46, 0, request)
        assert (response.error_code, response.topics) == (0, [])
