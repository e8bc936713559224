"""ApiVersions, Metadata, InitProducerId, Produce, ListOffsets, OffsetForLeaderEpoch."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from streambed.broker.domain.errors import KafkaError
from streambed.broker.domain.operations import (
    CLUSTER_OPERATIONS,
    TOPIC_OPERATIONS,
    UNKNOWN_AUTHORIZED_OPERATIONS,
)
from streambed.broker.domain.producer_ids import ProducerIdAndEpoch
from streambed.broker.domain.topic_names import validate_topic_name
from streambed.broker.domain.topics import TopicInfo
from streambed.broker.protocol.errors import ErrorCode, RecordBatchError
from streambed.broker.protocol.messages import (
    api_versions,
    init_producer_id,
    list_offsets,
    offset_for_leader_epoch,
    produce,
)
from streambed.broker.protocol.messages import (
    metadata as md,
)
from streambed.broker.server.context import Handler, RequestContext, Services
from streambed.broker.server.network import NO_RESPONSE
from streambed.broker.server.partitions import Partition, storage_error_code
from streambed.core.errors import StreambedError

__all__ = ["handlers"]

log = logging.getLogger("streambed.broker.handlers")

_EARLIEST, _LATEST, _MAX_TIMESTAMP = -2, -1, -3
# KIP-405/KIP-1023: the local log start, the latest offset in tiered storage, the earliest offset
# not yet uploaded to it. streambed keeps no local-only log (every partition is in the shared
# store), so the local start is the log start, and like Kafka without remote.storage.enable the
# two tiered lookups find no offset.
_EARLIEST_LOCAL, _LATEST_TIERED, _EARLIEST_PENDING_UPLOAD = -4, -5, -6


def handlers(services: Services, versions: Callable[[], list[api_versions.ApiVersion]]) -> dict[
    int, Handler
]:
    h = _CoreHandlers(services, versions)
    return {
        api_versions.SPEC.api_key: h.api_versions,
        md.SPEC.api_key: h.metadata,
        init_producer_id.SPEC.api_key: h.init_producer_id,
        produce.SPEC.api_key: h.produce,
        list_offsets.SPEC.api_key: h.list_offsets,
        offset_for_leader_epoch.SPEC.api_key: h.offset_for_leader_epoch,
    }


class _CoreHandlers:
    def __init__(
        self, services: Services, versions: Callable[[], list[api_versions.ApiVersion]]
    ) -> None:
        self.s = services
        self._versions = versions
        self._refused_transactional_ids: set[str] = set()

    # -- ApiVersions -------------------------------------------------------------------------

    async def api_versions(
        self, ctx: RequestContext, request: api_versions.ApiVersionsRequest
    ) -> api_versions.ApiVersionsResponse:
        return api_versions.ApiVersionsResponse(api_keys=self._versions())

    # -- Metadata ----------------------------------------------------------------------------

    async def metadata(
        self, ctx: RequestContext, request: md.MetadataRequest
    ) -> md.MetadataResponse:
        s = self.s
        topics: list[md.MetadataResponseTopic] = []
        if request.topics is None or (ctx.api_version == 0 and not request.topics):
            # v0 has no null array: an empty list asks for every topic.
            for info in s.topics.topics():
                topics.append(self._topic_metadata(info))
        else:
            auto = (
                s.settings.auto_create_topics
                and (request.allow_auto_topic_creation or ctx.api_version < 4)
            )
            for wanted in request.topics:
                name = wanted.name
                if name is None:
                    found = s.topics.get_by_id(wanted.topic_id)
                    if found is None:
                        topics.append(
                            md.MetadataResponseTopic(
                                error_code=ErrorCode.UNKNOWN_TOPIC_ID, topic_id=wanted.topic_id
                            )
                        )
                    else:
                        topics.append(self._topic_metadata(found))
                    continue
                topics.append(await self._named_topic(ctx, name, auto))
        brokers = [
            md.MetadataResponseBroker(e.node_id, e.host, e.port, e.rack)
            for e in s.brokers()
        ]
        if request.include_topic_authorized_operations:
            for topic in topics:
                if topic.error_code == ErrorCode.NONE:
                    topic.topic_authorized_operations = TOPIC_OPERATIONS
        return md.MetadataResponse(
            brokers=brokers,
            cluster_id=s.cluster_id,
            controller_id=s.node_id,
            topics=topics,
            cluster_authorized_operations=(
                CLUSTER_OPERATIONS
                if request.include_cluster_authorized_operations
                else UNKNOWN_AUTHORIZED_OPERATIONS
            ),
        )

    async def _named_topic(
        self, ctx: RequestContext, name: str, auto: bool
    ) -> md.MetadataResponseTopic:
        s = self.s
        info = s.topics.get(name)
        if info is None:
            try:
                validate_topic_name(name)
            except KafkaError:
                return md.MetadataResponseTopic(
                    error_code=ErrorCode.INVALID_TOPIC_EXCEPTION, name=name
                )
            if auto:
                try:
                    info = await s.partitions.ensure_topic(name, s.settings.num_partitions)
                except KafkaError as exc:
                    log.warning("auto-creating topic %s failed: %s", name, exc)
                    return md.MetadataResponseTopic(error_code=int(exc.code), name=name)
                if info is not None:
                    log.info("%s auto-created topic %s (%s) with %d partition(s)", ctx.who,
                             name, info.topic_id, len(info.partitions))
        if info is None:
            return md.MetadataResponseTopic(
                error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name
            )
        return self._topic_metadata(info)

    @staticmethod
    def _topic_metadata(info: TopicInfo) -> md.MetadataResponseTopic:
        return md.MetadataResponseTopic(
            name=info.name,
            topic_id=info.topic_id,
            partitions=[
                md.MetadataResponsePartition(
                    partition_index=p.index,
                    leader_id=p.leader,
                    leader_epoch=p.leader_epoch,
                    replica_nodes=list(p.replicas),
                    isr_nodes=list(p.replicas),
                )
                for p in info.partitions
            ],
        )

    # -- InitProducerId ----------------------------------------------------------------------

    async def init_producer_id(
        self, ctx: RequestContext, request: init_producer_id.InitProducerIdRequest
    ) -> init_producer_id.InitProducerIdResponse:
        if request.transactional_id is not None:
            # Transactions are not served (AddPartitionsToTxn, EndTxn ... are not advertised).
            # Refusing here makes every client fail at once in init_transactions() with a fatal
            # authorization error; accepting it left librdkafka waiting out its transaction
            # timeout and others failing later with unrelated errors.
            if request.transactional_id not in self._refused_transactional_ids:
                if len(self._refused_transactional_ids) < 1024:
                    self._refused_transactional_ids.add(request.transactional_id)
                log.warning(
                    "refused transactional producer %r from %s (client %s): transactions are "
                    "not supported", request.transactional_id, ctx.peer, ctx.client_id,
                )
            return init_producer_id.InitProducerIdResponse(
                error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            )
        expected = None
        if request.producer_id >= 0:
            expected = ProducerIdAndEpoch(request.producer_id, request.producer_epoch)
        try:
            got = await self.s.producer_ids.init_producer_id(
                request.transactional_id,
                transaction_timeout_ms=request.transaction_timeout_ms,
                expected=expected,
            )
        except KafkaError as exc:
            return init_producer_id.InitProducerIdResponse(error_code=int(exc.code))
        return init_producer_id.InitProducerIdResponse(
            producer_id=got.producer_id, producer_epoch=got.epoch
        )

    # -- Produce -----------------------------------------------------------------------------

    async def produce(self, ctx: RequestContext, request: produce.ProduceRequest) -> Any:
        if request.acks not in (-1, 0, 1):
            return _produce_error(request, ErrorCode.INVALID_REQUIRED_ACKS)
        if request.transactional_id is not None:
            return _produce_error(request, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        now_ms = int(time.time() * 1000)
        # Validation and the appends' offset assignment happen before the first await, in
        # request order; only then are the appends awaited together.
        pending: list[tuple[produce.PartitionProduceResponse, Partition, Any]] = []
        responses: list[produce.TopicProduceResponse] = []
        for topic in request.topic_data:
            name = topic.name
            if not name and topic.topic_id.int:
                info = self.s.topics.get_by_id(topic.topic_id)
                name = info.name if info is not None else ""
            topic_response = produce.TopicProduceResponse(
                topic_id=topic.topic_id, name=topic.name
            )
            responses.append(topic_response)
            for data in topic.partition_data:
                out = produce.PartitionProduceResponse(index=data.index, base_offset=-1)
                topic_response.partition_responses.append(out)
                partition = self.s.partitions.lookup(
                    name, data.index, by_id=not topic.name and topic.topic_id.int != 0
                )
                if isinstance(partition, int):
                    out.error_code = partition
                    continue
                records = data.records
                if not isinstance(records, bytes | bytearray | memoryview):
                    out.error_code = ErrorCode.CORRUPT_MESSAGE
                    continue
                try:
                    batch = partition.validate(
                        memoryview(records),
                        self.s.partitions.verify_records,
                    )
                except RecordBatchError as exc:
                    out.error_code = exc.error_code
                    out.error_message = str(exc)
                    log.warning(
                        "produce to %s-%d from %s rejected: %s", name, data.index, ctx.peer, exc
                    )
                    continue
                except KafkaError as exc:
                    out.error_code = int(exc.code)
                    out.error_message = exc.message
                    continue
                # A task per partition: the appends of one request run concurrently, and tasks
                # start in creation order, which keeps each partition's appends in request order.
                pending.append(
                    (out, partition, asyncio.ensure_future(partition.append(batch, now_ms)))
                )
        for out, partition, append in pending:
            try:
                result = await append
            except KafkaError as exc:
                out.error_code = int(exc.code)
                out.error_message = exc.message
            except StreambedError as exc:
                out.error_code = storage_error_code(exc)
                out.error_message = str(exc)
                out.current_leader = produce.LeaderIdAndEpoch(
                    self.s.node_id, partition.leader_epoch
                )
            else:
                out.base_offset = result.base_offset
                out.log_append_time_ms = result.log_append_time
                out.log_start_offset = result.log_start_offset
        if request.acks == 0:
            return NO_RESPONSE
        return produce.ProduceResponse(responses=responses)

    # -- ListOffsets -------------------------------------------------------------------------

    async def list_offsets(
        self, ctx: RequestContext, request: list_offsets.ListOffsetsRequest
    ) -> list_offsets.ListOffsetsResponse:
        topics = []
        for topic in request.topics:
            out_topic = list_offsets.ListOffsetsTopicResponse(name=topic.name)
            topics.append(out_topic)
            for p in topic.partitions:
                out = list_offsets.ListOffsetsPartitionResponse(partition_index=p.partition_index)
                out_topic.partitions.append(out)
                partition = self.s.partitions.lookup(
                    topic.name, p.partition_index, current_leader_epoch=p.current_leader_epoch
                )
                if isinstance(partition, int):
                    out.error_code = partition
                    continue
                out.leader_epoch = partition.leader_epoch
                try:
                    out.offset, out.timestamp = await self._offset_for(partition, p.timestamp)
                except StreambedError as exc:
                    out.error_code = storage_error_code(exc)
                    continue
        return list_offsets.ListOffsetsResponse(topics=topics)

    async def _offset_for(self, partition: Partition, timestamp: int) -> tuple[int, int]:
        if timestamp in (_EARLIEST, _EARLIEST_LOCAL):
            return partition.log_start_offset, -1
        if timestamp == _LATEST:
            return partition.high_watermark, -1
        if timestamp in (_LATEST_TIERED, _EARLIEST_PENDING_UPLOAD):
            return -1, -1
        if timestamp == _MAX_TIMESTAMP:
            return await partition.max_timestamp_offset()
        return await partition.offset_for_timestamp(timestamp)

    # -- OffsetForLeaderEpoch ----------------------------------------------------------------

    async def offset_for_leader_epoch(
        self, ctx: RequestContext, request: offset_for_leader_epoch.OffsetForLeaderEpochRequest
    ) -> offset_for_leader_epoch.OffsetForLeaderEpochResponse:
        m = offset_for_leader_epoch
        topics = []
        for topic in request.topics:
            out_topic = m.OffsetForLeaderTopicResult(topic=topic.topic)
            topics.append(out_topic)
            for p in topic.partitions:
                out = m.EpochEndOffset(partition=p.partition)
                out_topic.partitions.append(out)
                partition = self.s.partitions.lookup(
                    topic.topic, p.partition, current_leader_epoch=p.current_leader_epoch
                )
                if isinstance(partition, int):
                    out.error_code = partition
                    continue
                out.leader_epoch, out.end_offset = _epoch_end(partition, p.leader_epoch)
        return m.OffsetForLeaderEpochResponse(topics=topics)


def _epoch_end(partition: Partition, requested: int) -> tuple[int, int]:
    """Kafka's answer: the largest epoch <= ``requested`` and the offset where it ended (the
    start of the next epoch), or the high watermark for the current epoch."""
    if requested >= partition.leader_epoch:
        return partition.leader_epoch, partition.high_watermark
    ranges = sorted(partition.stream.ranges)
    best: tuple[int, int] = (-1, -1)
    for i, (epoch, _node, _start, _end) in enumerate(ranges):
        if epoch > requested:
            break
        following = ranges[i + 1][2] if i + 1 < len(ranges) else partition.high_watermark
        best = (epoch, following)
    if best[0] < 0:
        return -1, -1
    return best


def _produce_error(request: produce.ProduceRequest, code: int) -> produce.ProduceResponse:
    return produce.ProduceResponse(
        responses=[
            produce.TopicProduceResponse(
                topic_id=t.topic_id,
                name=t.name,
                partition_responses=[
                    produce.PartitionProduceResponse(index=d.index, error_code=code, base_offset=-1)
                    for d in t.partition_data
                ],
            )
            for t in request.topic_data
        ]
    )
