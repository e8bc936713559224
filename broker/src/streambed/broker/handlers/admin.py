"""The admin APIs: topics (CreateTopics, DeleteTopics, CreatePartitions), configs
(DescribeConfigs, AlterConfigs, IncrementalAlterConfigs), DeleteRecords, and the describe-only
DescribeLogDirs, DescribeCluster, DescribeTopicPartitions and ListPartitionReassignments.

The handlers are thin: each topic or resource of a request becomes one domain call, and a
:class:`KafkaError` it raises becomes that item's error code and message, so one bad item never
fails its neighbours. Creating, growing and deleting topics goes through the partition manager,
which opens and closes the partitions' streams; config changes go to the topic manager and are
then announced to the partition manager.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from functools import partial
from typing import Protocol, TypeVar

from streambed.broker.domain.config_defs import TOPIC_CONFIGS
from streambed.broker.domain.configs import AlterConfigOp, ConfigEntry, ConfigSource, OpType
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.operations import CLUSTER_OPERATIONS, TOPIC_OPERATIONS
from streambed.broker.domain.topic_names import validate_topic_name
from streambed.broker.domain.topics import NewTopic, PartitionInfo, TopicInfo
from streambed.broker.protocol.errors import ErrorCode as WireCode
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
from streambed.broker.server.context import Handler, RequestContext, Services
from streambed.broker.server.partitions import storage_error_code
from streambed.core.errors import StreambedError

__all__ = ["handlers"]

log = logging.getLogger("streambed.broker.admin")

# ConfigResource.Type ids.
TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4
BROKER_LOGGER_RESOURCE = 8

_ZERO_ID = uuid.UUID(int=0)
_BROKERS_ENDPOINT = 1
_MAX_RESPONSE_PARTITIONS = 2000
"""Kafka's ``max.request.partition.size.limit`` default: DescribeTopicPartitions' page cap."""
_INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})

_K = TypeVar("_K", bound=Hashable)


_Failure = (KafkaError, StreambedError)
"""What one topic, partition or resource may fail with; the others carry on."""


def _failure(exc: KafkaError | StreambedError) -> tuple[int, str | None]:
    if isinstance(exc, KafkaError):
        return int(exc.code), exc.message
    log.warning("admin request hit a storage failure: %r", exc)
    return storage_error_code(exc), str(exc)


def _duplicates(items: Iterable[_K]) -> set[_K]:
    return {item for item, n in Counter(items).items() if n > 1}


class _Resource(Protocol):
    """What the AlterConfigs and IncrementalAlterConfigs resources have in common."""

    resource_type: int
    resource_name: str


_R = TypeVar("_R", bound=_Resource)


def handlers(services: Services) -> dict[int, Handler]:
    admin = _Admin(services)
    return {
        ct.SPEC.api_key: admin.create_topics,
        dt.SPEC.api_key: admin.delete_topics,
        cp.SPEC.api_key: admin.create_partitions,
        dcf.SPEC.api_key: admin.describe_configs,
        ac.SPEC.api_key: admin.alter_configs,
        iac.SPEC.api_key: admin.incremental_alter_configs,
        dr.SPEC.api_key: admin.delete_records,
        dld.SPEC.api_key: admin.describe_log_dirs,
        dc.SPEC.api_key: admin.describe_cluster,
        dtp.SPEC.api_key: admin.describe_topic_partitions,
        lpr.SPEC.api_key: admin.list_partition_reassignments,
    }


class _Admin:
    def __init__(self, services: Services) -> None:
        self._s = services

    # -- CreateTopics ------------------------------------------------------------------------

    async def create_topics(
        self, ctx: RequestContext, request: ct.CreateTopicsRequest
    ) -> ct.CreateTopicsResponse:
        duplicates = _duplicates(t.name for t in request.topics)
        results: list[ct.CreatableTopicResult] = []
        for name in sorted(duplicates):
            results.append(
                ct.CreatableTopicResult(
                    name=name,
                    error_code=ErrorCode.INVALID_REQUEST,
                    error_message="Duplicate topic name.",
                )
            )
        for topic in request.topics:
            if topic.name in duplicates:
                continue
            try:
                info = await self._s.partitions.create_topic(
                    _new_topic(topic), validate_only=request.validate_only
                )
            except _Failure as exc:
                code, message = _failure(exc)
                results.append(
                    ct.CreatableTopicResult(name=topic.name, error_code=code, error_message=message)
                )
                continue
            if not request.validate_only:
                log.info(
                    "%s created topic %s (%s) with %d partition(s), configs %s",
                    ctx.who,
                    info.name,
                    info.topic_id,
                    len(info.partitions),
                    dict(info.configs),
                )
            configs = self._created_configs(info, validate_only=request.validate_only)
            results.append(
                ct.CreatableTopicResult(
                    name=info.name,
                    topic_id=info.topic_id,
                    num_partitions=len(info.partitions),
                    replication_factor=info.replication_factor,
                    configs=[
                        ct.CreatableTopicConfigs(
                            name=e.name,
                            value=None if e.sensitive else e.value,
                            read_only=e.read_only,
                            config_source=e.source,
                            is_sensitive=e.sensitive,
                        )
                        for e in configs
                    ],
                )
            )
        return ct.CreateTopicsResponse(topics=results)

    def _created_configs(self, info: TopicInfo, *, validate_only: bool) -> list[ConfigEntry]:
        """The configs a CreateTopics v5+ answer lists: the topic's, as DescribeConfigs gives
        them; for a topic only validated, its overrides in front of the broker defaults."""
        if not validate_only:
            try:
                return self._s.topics.describe_configs(info.name)
            except KafkaError:
                pass  # deleted again already: describe what was created
        entries: list[ConfigEntry] = []
        for key in sorted(TOPIC_CONFIGS):
            if key in info.configs:
                value: str | None = info.configs[key].strip()
                source = ConfigSource.DYNAMIC_TOPIC_CONFIG
            else:
                value, source, _synonyms = self._s.broker_configs.topic_default(key)
            entries.append(ConfigEntry(key, value, source, False, False, TOPIC_CONFIGS[key].type))
        return entries

    # -- DeleteTopics ------------------------------------------------------------------------

    async def delete_topics(
        self, ctx: RequestContext, request: dt.DeleteTopicsRequest
    ) -> dt.DeleteTopicsResponse:
        # v1-v5 name topics in topic_names, v6 in topics (by name or by id); the other list is
        # empty, so both are read whatever the version.
        results: list[dt.DeletableTopicResult] = []

        def answer(name: str | None, topic_id: uuid.UUID, code: int, message: str | None) -> None:
            results.append(dt.DeletableTopicResult(name, topic_id, code, message))

        if (self._s.broker_configs.value("delete.topic.enable") or "").strip().lower() != "true":
            code = (
                ErrorCode.INVALID_REQUEST
                if ctx.api_version < 3
                else WireCode.TOPIC_DELETION_DISABLED
            )
            for name in request.topic_names:
                answer(name, _ZERO_ID, code, "Topic deletion is disabled.")
            for state in request.topics:
                answer(state.name, state.topic_id, code, "Topic deletion is disabled.")
            return dt.DeleteTopicsResponse(responses=results)

        names: list[str] = list(request.topic_names)
        ids: list[uuid.UUID] = []
        for state in request.topics:
            by_id = state.topic_id != _ZERO_ID
            if state.name is None and not by_id:
                message = "Neither topic name nor id were specified."
                answer(None, _ZERO_ID, ErrorCode.INVALID_REQUEST, message)
            elif state.name is not None and by_id:
                message = "You may not specify both topic name and topic id."
                answer(state.name, state.topic_id, ErrorCode.INVALID_REQUEST, message)
            elif state.name is not None:
                names.append(state.name)
            else:
                ids.append(state.topic_id)
        duplicate_names, duplicate_ids = _duplicates(names), _duplicates(ids)
        for name in sorted(duplicate_names):
            answer(name, _ZERO_ID, ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
        for topic_id in sorted(duplicate_ids):
            answer(None, topic_id, ErrorCode.INVALID_REQUEST, "Duplicate topic id.")
        unique_ids = [i for i in dict.fromkeys(ids) if i not in duplicate_ids]
        named_by_id: dict[str, uuid.UUID] = {}
        for topic_id in unique_ids:
            info = self._s.topics.get_by_id(topic_id)
            if info is not None:
                named_by_id[info.name] = topic_id

        deletions: list[tuple[str | None, uuid.UUID, Callable[[], Awaitable[TopicInfo]]]] = []
        for name in dict.fromkeys(names):
            if name in duplicate_names:
                continue
            if name in named_by_id:
                topic_id = named_by_id[name]
                unique_ids.remove(topic_id)
                message = "The provided topic name maps to an ID that was already supplied."
                answer(name, topic_id, ErrorCode.INVALID_REQUEST, message)
                continue
            deletions.append((name, _ZERO_ID, partial(self._s.partitions.delete_topic, name)))
        deletions.extend(
            (None, i, partial(self._s.partitions.delete_topic_by_id, i)) for i in unique_ids
        )
        for name_or_none, topic_id, delete in deletions:
            try:
                info = await delete()
            except _Failure as exc:
                answer(name_or_none, topic_id, *_failure(exc))
                continue
            log.info("%s deleted topic %s (%s)", ctx.who, info.name, info.topic_id)
            answer(info.name, info.topic_id, ErrorCode.NONE, None)
        return dt.DeleteTopicsResponse(responses=results)

    # -- CreatePartitions --------------------------------------------------------------------

    async def create_partitions(
        self, ctx: RequestContext, request: cp.CreatePartitionsRequest
    ) -> cp.CreatePartitionsResponse:
        duplicates = _duplicates(t.name for t in request.topics)
        results = [
            cp.CreatePartitionsTopicResult(name, ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
            for name in sorted(duplicates)
        ]
        for topic in request.topics:
            if topic.name in duplicates:
                continue
            assignments = (
                None if topic.assignments is None else [a.broker_ids for a in topic.assignments]
            )
            try:
                info = await self._s.partitions.create_partitions(
                    topic.name, topic.count, assignments, validate_only=request.validate_only
                )
            except _Failure as exc:
                results.append(cp.CreatePartitionsTopicResult(topic.name, *_failure(exc)))
                continue
            if not request.validate_only:
                log.info(
                    "%s grew topic %s to %d partitions", ctx.who, info.name, len(info.partitions)
                )
            results.append(cp.CreatePartitionsTopicResult(topic.name, ErrorCode.NONE, None))
        return cp.CreatePartitionsResponse(results=results)

    # -- DescribeConfigs ---------------------------------------------------------------------

    async def describe_configs(
        self, ctx: RequestContext, request: dcf.DescribeConfigsRequest
    ) -> dcf.DescribeConfigsResponse:
        results: list[dcf.DescribeConfigsResult] = []
        for res in request.resources:
            try:
                entries = self._describe(
                    res, request.include_synonyms, request.include_documentation
                )
            except _Failure as exc:
                code, message = _failure(exc)
                results.append(
                    dcf.DescribeConfigsResult(code, message, res.resource_type, res.resource_name)
                )
                continue
            configs = [
                dcf.DescribeConfigsResourceResult(
                    name=e.name,
                    value=None if e.sensitive else e.value,
                    read_only=e.read_only,
                    config_source=e.source,
                    is_sensitive=e.sensitive,
                    synonyms=[
                        dcf.DescribeConfigsSynonym(
                            s.name, None if e.sensitive else s.value, s.source
                        )
                        for s in e.synonyms
                    ],
                    config_type=e.config_type,
                    documentation=e.documentation,
                )
                for e in entries
            ]
            results.append(
                dcf.DescribeConfigsResult(
                    ErrorCode.NONE, None, res.resource_type, res.resource_name, configs
                )
            )
        return dcf.DescribeConfigsResponse(results=results)

    def _describe(
        self, res: dcf.DescribeConfigsResource, synonyms: bool, documentation: bool
    ) -> list[ConfigEntry]:
        # Null or empty configuration_keys: every config, as Kafka answers.
        names = res.configuration_keys or None
        if res.resource_type == TOPIC_RESOURCE:
            validate_topic_name(res.resource_name)
            return self._s.topics.describe_configs(
                res.resource_name,
                names,
                include_synonyms=synonyms,
                include_documentation=documentation,
            )
        if res.resource_type == BROKER_RESOURCE:
            return self._s.broker_configs.describe(
                res.resource_name,
                names,
                include_synonyms=synonyms,
                include_documentation=documentation,
            )
        if res.resource_type == BROKER_LOGGER_RESOURCE:
            self._check_logger_resource(res.resource_name)
            return []  # log levels are not exposed
        raise KafkaError(
            ErrorCode.INVALID_REQUEST, f"Unsupported resource type: {res.resource_type}"
        )

    def _check_logger_resource(self, name: str) -> None:
        if not name:
            raise KafkaError(ErrorCode.INVALID_REQUEST, "Broker id must not be empty")
        if name.strip() != str(self._s.node_id):
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {self._s.node_id}, but received {name}",
            )

    # -- AlterConfigs / IncrementalAlterConfigs ----------------------------------------------

    async def alter_configs(
        self, ctx: RequestContext, request: ac.AlterConfigsRequest
    ) -> ac.AlterConfigsResponse:
        async def apply(res: ac.AlterConfigsResource) -> str:
            names = [c.name for c in res.configs]
            if len(set(names)) != len(names):
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
            configs = {c.name: c.value for c in res.configs}
            if res.resource_type == TOPIC_RESOURCE:
                await self._s.topics.alter_configs(
                    res.resource_name, configs, validate_only=request.validate_only
                )
            elif res.resource_type == BROKER_RESOURCE:
                await self._s.broker_configs.alter(
                    res.resource_name, configs, validate_only=request.validate_only
                )
            elif res.resource_type == BROKER_LOGGER_RESOURCE:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST,
                    "AlterConfigs is deprecated and does not support the resource type "
                    "BROKER_LOGGER",
                )
            else:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST, f"Unsupported resource type: {res.resource_type}"
                )
            return f"replaced configs with {configs}"

        outcomes = await self._alter_each(ctx, request.resources, request.validate_only, apply)
        return ac.AlterConfigsResponse(
            responses=[
                ac.AlterConfigsResourceResponse(code, message, res.resource_type, res.resource_name)
                for res, code, message in outcomes
            ]
        )

    async def incremental_alter_configs(
        self, ctx: RequestContext, request: iac.IncrementalAlterConfigsRequest
    ) -> iac.IncrementalAlterConfigsResponse:
        async def apply(res: iac.AlterConfigsResource) -> str:
            ops = [_alter_op(c) for c in res.configs]
            if res.resource_type == TOPIC_RESOURCE:
                await self._s.topics.incremental_alter_configs(
                    res.resource_name, ops, validate_only=request.validate_only
                )
            elif res.resource_type == BROKER_RESOURCE:
                await self._s.broker_configs.incremental_alter(
                    res.resource_name, ops, validate_only=request.validate_only
                )
            elif res.resource_type == BROKER_LOGGER_RESOURCE:
                self._check_logger_resource(res.resource_name)
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Changing log levels is not supported")
            else:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST, f"Unsupported resource type: {res.resource_type}"
                )
            return ", ".join(
                f"{op.op.name} {op.name}" + ("" if op.value is None else f"={op.value}")
                for op in ops
            )

        outcomes = await self._alter_each(ctx, request.resources, request.validate_only, apply)
        return iac.IncrementalAlterConfigsResponse(
            responses=[
                iac.AlterConfigsResourceResponse(
                    code, message, res.resource_type, res.resource_name
                )
                for res, code, message in outcomes
            ]
        )

    async def _alter_each(
        self,
        ctx: RequestContext,
        resources: Sequence[_R],
        validate_only: bool,
        apply: Callable[[_R], Awaitable[str]],
    ) -> list[tuple[_R, int, str | None]]:
        """Run ``apply`` on each resource (it returns what it changed, for the log); a resource
        named twice is refused both times, as Kafka does."""
        duplicates = _duplicates((r.resource_type, r.resource_name) for r in resources)
        out: list[tuple[_R, int, str | None]] = []
        for res in resources:
            resource_type, name = res.resource_type, res.resource_name
            if (resource_type, name) in duplicates:
                message = "Each resource must appear at most once."
                out.append((res, ErrorCode.INVALID_REQUEST, message))
                continue
            try:
                change = await apply(res)
            except _Failure as exc:
                out.append((res, *_failure(exc)))
                continue
            if not validate_only:
                kind = "topic" if resource_type == TOPIC_RESOURCE else "broker"
                target = f"{kind} {name}" if name else f"{kind} default"
                log.info("%s altered configs of %s: %s", ctx.who, target, change)
                await self._s.partitions.configs_changed(
                    name if resource_type == TOPIC_RESOURCE else None
                )
            out.append((res, ErrorCode.NONE, None))
        return out

    # -- DeleteRecords -----------------------------------------------------------------------

    async def delete_records(
        self, ctx: RequestContext, request: dr.DeleteRecordsRequest
    ) -> dr.DeleteRecordsResponse:
        topics: list[dr.DeleteRecordsTopicResult] = []
        for topic in request.topics:
            results: list[dr.DeleteRecordsPartitionResult] = []
            for req in topic.partitions:
                index = req.partition_index
                try:
                    low = await self._delete_records(topic.name, index, req.offset)
                except _Failure as exc:
                    results.append(dr.DeleteRecordsPartitionResult(index, -1, _failure(exc)[0]))
                    continue
                results.append(dr.DeleteRecordsPartitionResult(index, low, ErrorCode.NONE))
            done = {r.partition_index: r.low_watermark for r in results if r.error_code == 0}
            if done:
                log.info("%s deleted records of topic %s: %s", ctx.who, topic.name, done)
            topics.append(dr.DeleteRecordsTopicResult(topic.name, results))
        return dr.DeleteRecordsResponse(topics=topics)

    async def _delete_records(self, topic: str, index: int, offset: int) -> int:
        partition = self._s.partitions.lookup(topic, index)
        if isinstance(partition, int):
            raise KafkaError(ErrorCode(partition))
        if offset < -1:  # -1 is "the high watermark"; anything lower is no offset at all
            raise KafkaError(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"The offset {offset} for partition {topic}-{index} should not be negative.",
            )
        return await partition.delete_records(offset)

    # -- DescribeLogDirs ---------------------------------------------------------------------

    async def describe_log_dirs(
        self, ctx: RequestContext, request: dld.DescribeLogDirsRequest
    ) -> dld.DescribeLogDirsResponse:
        wanted: dict[str, set[int]] | None = None
        if request.topics is not None:  # null: every partition; empty: none
            wanted = {}
            for t in request.topics:
                wanted.setdefault(t.topic, set()).update(t.partitions)
        by_topic: dict[str, list[dld.DescribeLogDirsPartition]] = {}
        for p in sorted(self._s.partitions.all(), key=lambda p: (p.topic, p.index)):
            if wanted is not None and p.index not in wanted.get(p.topic, ()):
                continue
            by_topic.setdefault(p.topic, []).append(
                dld.DescribeLogDirsPartition(p.index, p.size_bytes, 0, False)
            )
        result = dld.DescribeLogDirsResult(
            error_code=ErrorCode.NONE,
            log_dir=str(self._s.settings.data_dir),
            topics=[dld.DescribeLogDirsTopic(name, parts) for name, parts in by_topic.items()],
        )
        return dld.DescribeLogDirsResponse(results=[result])

    # -- DescribeCluster ---------------------------------------------------------------------

    async def describe_cluster(
        self, ctx: RequestContext, request: dc.DescribeClusterRequest
    ) -> dc.DescribeClusterResponse:
        if request.endpoint_type != _BROKERS_ENDPOINT:
            return dc.DescribeClusterResponse(
                error_code=WireCode.UNSUPPORTED_ENDPOINT_TYPE,
                error_message=(
                    f"The broker does not support endpoint type {request.endpoint_type}; "
                    "only 1 (brokers)."
                ),
                endpoint_type=request.endpoint_type,
                cluster_id=self._s.cluster_id,
            )
        brokers = [
            dc.DescribeClusterBroker(b.node_id, b.host, b.port, b.rack, False)
            for b in sorted(self._s.brokers(), key=lambda b: b.node_id)
        ]
        operations = (
            CLUSTER_OPERATIONS
            if request.include_cluster_authorized_operations
            else dc.DescribeClusterResponse().cluster_authorized_operations
        )
        return dc.DescribeClusterResponse(
            endpoint_type=_BROKERS_ENDPOINT,
            cluster_id=self._s.cluster_id,
            controller_id=self._s.node_id,
            brokers=brokers,
            cluster_authorized_operations=operations,
        )

    # -- DescribeTopicPartitions -------------------------------------------------------------

    async def describe_topic_partitions(
        self, ctx: RequestContext, request: dtp.DescribeTopicPartitionsRequest
    ) -> dtp.DescribeTopicPartitionsResponse:
        cursor = request.cursor
        after = cursor.topic_name if cursor is not None else ""
        every = not request.topics
        if every:
            names = [info.name for info in self._s.topics.topics() if info.name >= after]
        else:
            names = sorted({t.name for t in request.topics if t.name >= after})
            if cursor is not None and cursor.topic_name not in names:
                return _topic_errors(
                    request,
                    "DescribeTopicPartitionsRequest topic list should contain the cursor topic: "
                    + cursor.topic_name,
                )
        if cursor is not None and cursor.partition_index < 0:
            return _topic_errors(
                request,
                f"DescribeTopicPartitionsRequest cursor partition must be valid: {cursor}",
            )
        live = {b.node_id for b in self._s.brokers()}
        remaining = max(1, min(request.response_partition_limit, _MAX_RESPONSE_PARTITIONS))
        response = dtp.DescribeTopicPartitionsResponse()
        for name in names:
            if remaining == 0:
                # The page is full: the next one starts at this topic's first partition.
                response.next_cursor = dtp.Cursor(name, 0)
                break
            info = self._s.topics.get(name)
            if info is None:
                if not every:
                    try:
                        validate_topic_name(name)
                        code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    except KafkaError as exc:
                        code = exc.code
                    response.topics.append(
                        dtp.DescribeTopicPartitionsResponseTopic(
                            code, name, is_internal=name in _INTERNAL_TOPICS
                        )
                    )
                continue
            start = cursor.partition_index if cursor is not None and name == after else 0
            chosen = info.partitions[start : start + remaining]
            response.topics.append(
                dtp.DescribeTopicPartitionsResponseTopic(
                    ErrorCode.NONE,
                    name,
                    info.topic_id,
                    name in _INTERNAL_TOPICS,
                    [_partition_entry(p, live) for p in chosen],
                    topic_authorized_operations=TOPIC_OPERATIONS,
                )
            )
            if start + len(chosen) < len(info.partitions):
                response.next_cursor = dtp.Cursor(name, start + len(chosen))
                break
            remaining -= len(chosen)
        return response

    # -- ListPartitionReassignments ----------------------------------------------------------

    async def list_partition_reassignments(
        self, ctx: RequestContext, request: lpr.ListPartitionReassignmentsRequest
    ) -> lpr.ListPartitionReassignmentsResponse:
        # A partition has one replica, its owner, and moves at once: nothing is ever ongoing.
        return lpr.ListPartitionReassignmentsResponse()


# -- helpers -------------------------------------------------------------------------------


def _new_topic(topic: ct.CreatableTopic) -> NewTopic:
    assignments = {a.partition_index: list(a.broker_ids) for a in topic.assignments}
    if len(assignments) != len(topic.assignments):
        raise KafkaError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "partitions should be a consecutive 0-based integer sequence",
        )
    return NewTopic(
        name=topic.name,
        num_partitions=topic.num_partitions,
        replication_factor=topic.replication_factor,
        assignments=assignments or None,
        configs={c.name: c.value for c in topic.configs},
    )


def _alter_op(config: iac.AlterableConfig) -> AlterConfigOp:
    try:
        op = OpType(config.config_operation)
    except ValueError:
        raise KafkaError(
            ErrorCode.INVALID_REQUEST, f"Unknown operations type {config.config_operation}"
        ) from None
    return AlterConfigOp(config.name, op, config.value)


def _partition_entry(
    p: PartitionInfo, live: set[int]
) -> dtp.DescribeTopicPartitionsResponsePartition:
    """Like Metadata: every replica is in sync (the log is shared); a leader that is not a live
    broker is answered as Kafka does, LEADER_NOT_AVAILABLE and no leader id."""
    alive = p.leader in live
    return dtp.DescribeTopicPartitionsResponsePartition(
        error_code=ErrorCode.NONE if alive else WireCode.LEADER_NOT_AVAILABLE,
        partition_index=p.index,
        leader_id=p.leader if alive else -1,
        leader_epoch=p.leader_epoch,
        replica_nodes=list(p.replicas),
        isr_nodes=list(p.replicas),
        eligible_leader_replicas=[],
        last_known_elr=[],
        offline_replicas=[],
    )


def _topic_errors(
    request: dtp.DescribeTopicPartitionsRequest, message: str
) -> dtp.DescribeTopicPartitionsResponse:
    """A request Kafka refuses as a whole: every topic it names answers INVALID_REQUEST."""
    log.debug("DescribeTopicPartitions refused: %s", message)
    return dtp.DescribeTopicPartitionsResponse(
        topics=[
            dtp.DescribeTopicPartitionsResponseTopic(ErrorCode.INVALID_REQUEST, t.name)
            for t in request.topics
        ]
    )
