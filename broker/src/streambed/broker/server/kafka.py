"""The Kafka layer of a broker: domain services over the metadata store, the partition manager
over the stream engine, the handler table and the listeners.

Start order: broker configs → topics (finishing interrupted creations/deletions) → partitions
(opening the streams this node leads, replaying producer state) → groups → listeners. Stop order
is the reverse, with the listeners finishing in-flight requests first.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator, Mapping

from streambed.broker.domain.broker_configs import BrokerConfigs
from streambed.broker.domain.clock import SystemClock
from streambed.broker.domain.config_defs import BROKER_CONFIGS
from streambed.broker.domain.groups import GroupConfig, GroupCoordinator
from streambed.broker.domain.producer_ids import ProducerIdManager
from streambed.broker.domain.producers import ProducerSnapshotStore
from streambed.broker.domain.time_index import TimeIndexStore
from streambed.broker.domain.topics import TopicManager
from streambed.broker.metrics import RequestMetrics, Sample, family, request_families
from streambed.broker.protocol.messages import SUPPORTED_VERSIONS
from streambed.broker.protocol.messages.api_versions import ApiVersion
from streambed.broker.server.context import Endpoint, Handler, Services
from streambed.broker.server.network import KafkaListener
from streambed.broker.server.partitions import PartitionManager
from streambed.core.config.model import BrokerSection
from streambed.core.metadata.api import Compare, MetadataStore, Put
from streambed.core.stream.engine import StreamEngine

__all__ = ["KafkaServer", "parse_listener"]

log = logging.getLogger("streambed.broker")

_CLUSTER_ID_KEY = "kafka/cluster-id"


def parse_listener(listener: str) -> tuple[str, str, int]:
    """``NAME://host:port`` → ``(name, host, port)``."""
    name, _, address = listener.partition("://")
    host, _, port = address.rpartition(":")
    return name, host.strip("[]"), int(port)


async def load_cluster_id(store: MetadataStore) -> str:
    """The cluster id, created by the first broker that starts on this metadata store."""
    kv = await store.get(_CLUSTER_ID_KEY)
    if kv is not None:
        return kv.value.decode()
    fresh = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    result = await store.txn(
        [Compare(_CLUSTER_ID_KEY, "==", 0)], [Put(_CLUSTER_ID_KEY, fresh.encode())]
    )
    if result.succeeded:
        log.info("new cluster id %s", fresh)
        return fresh
    kv = await store.get(_CLUSTER_ID_KEY)
    assert kv is not None
    return kv.value.decode()


def _int_config(configs: Mapping[str, str], name: str, default: int) -> int:
    raw = configs.get(name)
    return default if raw is None else int(raw)


class KafkaServer:
    def __init__(self, settings: BrokerSection, engine: StreamEngine, store: MetadataStore) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.services: Services | None = None
        self.listener: KafkaListener | None = None
        self.bound: list[tuple[str, int]] = []
        self.request_metrics = RequestMetrics()

    async def start(self) -> None:
        settings = self.settings
        node_id = settings.node_id
        static = _static_configs(settings)
        clock = SystemClock()
        broker_configs = BrokerConfigs(self.store, node_id=node_id, static=static)
        await broker_configs.load()
        cluster_id = await load_cluster_id(self.store)
        partitions_ref: list[PartitionManager] = []

        class _Allocator:
            async def create_stream(self) -> int:
                return await partitions_ref[0].create_stream()

            async def delete_stream(self, stream_id: int) -> None:
                await partitions_ref[0].delete_stream(stream_id)

        topics = TopicManager(self.store, _Allocator(), broker_configs, node_id=node_id)
        partitions = PartitionManager(
            self.engine,
            topics,
            ProducerSnapshotStore(self.store),
            time_indexes=TimeIndexStore(self.store),
            node_id=node_id,
            producer_id_expiration_ms=_int_config(
                static, "transactional.id.expiration.ms", 86_400_000
            ),
            verify_records=settings.verify_records,
            retention_check_interval_s=_int_config(
                static, "log.retention.check.interval.ms", 300_000
            )
            / 1000,
        )
        partitions_ref.append(partitions)
        await topics.start()
        await partitions.start()
        groups = GroupCoordinator(
            self.store,
            config=GroupConfig(
                initial_rebalance_delay_ms=_int_config(
                    static, "group.initial.rebalance.delay.ms", 3_000
                ),
                min_session_timeout_ms=_int_config(static, "group.min.session.timeout.ms", 6_000),
                max_session_timeout_ms=_int_config(
                    static, "group.max.session.timeout.ms", 1_800_000
                ),
            ),
            clock=clock,
        )
        await groups.start()
        partitions.on_topic_deleted = lambda name: groups.delete_topic_offsets([name])
        # The first listener is the one clients are told about unless advertised ones are set.
        advertised = (settings.advertised_listeners or settings.listeners)[0]
        _, adv_host, adv_port = parse_listener(advertised)
        if adv_host in ("", "0.0.0.0", "::"):
            adv_host = "127.0.0.1"
        services = Services(
            node_id=node_id,
            cluster_id=cluster_id,
            endpoint=Endpoint(node_id, adv_host, adv_port),
            settings=settings,
            store=self.store,
            engine=self.engine,
            topics=topics,
            broker_configs=broker_configs,
            groups=groups,
            producer_ids=ProducerIdManager(self.store, clock=clock),
            partitions=partitions,
            clock=clock,
        )
        self.services = services
        table = self._handlers(services)
        self.listener = KafkaListener(
            table,
            {k: SUPPORTED_VERSIONS[k] for k in table if k in SUPPORTED_VERSIONS},
            max_request_size=settings.max_request_bytes,
            metrics=self.request_metrics,
            idle_timeout_s=_idle_timeout_s(static),
        )
        bound: list[tuple[str, int]] = []
        for listener in settings.listeners:
            _, host, port = parse_listener(listener)
            server = await self.listener.listen(host or None, port)
            for sock in server.sockets:
                bound.append(sock.getsockname()[:2])
            addresses = ", ".join(
                f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"
                for a in (sock.getsockname()[:2] for sock in server.sockets)
            )
            log.info("listening for Kafka clients on %s (bound to %s)", listener, addresses)
        self.bound = bound
        if adv_port == 0 and bound:  # an ephemeral port (tests): advertise what was bound
            services.endpoint = Endpoint(node_id, adv_host, bound[0][1])

    def _handlers(self, services: Services) -> dict[int, Handler]:
        from streambed.broker.handlers import admin, core, fetch, groups

        def versions() -> list[ApiVersion]:
            assert self.listener is not None
            return self.listener.api_version_list()

        table: dict[int, Handler] = {}
        table.update(core.handlers(services, versions))
        table.update(fetch.handlers(services))
        table.update(groups.handlers(services))
        table.update(admin.handlers(services))
        return table

    def metric_families(self) -> Iterator[Sample]:
        """Requests, partitions and storage, for the metrics endpoint (read when scraped)."""
        connections = self.listener.connections if self.listener is not None else 0
        yield from request_families(self.request_metrics, connections)
        if self.services is not None:
            parts = sorted(self.services.partitions.all(), key=lambda p: (p.topic, p.index))
            labelled = [((("topic", p.topic), ("partition", str(p.index))), p) for p in parts]
            yield family("streambed_partitions", "gauge", "Partitions this broker leads.",
                         [((), len(parts))])
            yield family("streambed_partition_appended_bytes_total", "counter",
                         "Record-batch bytes appended to the partition by this broker since it "
                         "opened the partition.", [(lb, p.bytes_appended) for lb, p in labelled])
            yield family("streambed_partition_appended_records_total", "counter",
                         "Offsets appended to the partition by this broker since it opened it.",
                         [(lb, p.offsets_appended) for lb, p in labelled])
            yield family("streambed_partition_high_watermark", "gauge",
                         "The partition's next offset.", [(lb, p.high_watermark) for lb, p in labelled])
            yield family("streambed_partition_log_start_offset", "gauge",
                         "The partition's first offset.",
                         [(lb, p.log_start_offset) for lb, p in labelled])
            yield family("streambed_partition_size_bytes", "gauge",
                         "Estimated bytes the partition holds (what retention.bytes uses).",
                         [(lb, p.size_bytes) for lb, p in labelled])
        engine = self.engine
        wal = engine.wal.stats()
        yield family("streambed_wal_used_bytes", "gauge",
                     "WAL bytes held: acknowledged data not yet in objects, plus the newest "
                     "record until the next append lets it be trimmed.",
                     [((), wal.used)])
        yield family("streambed_wal_capacity_bytes", "gauge",
                     "WAL bytes at which appends wait for uploads.", [((), wal.capacity)])
        yield family("streambed_wal_appends_total", "counter", "Records appended to the WAL.",
                     [((), wal.appends)])
        yield family("streambed_wal_syncs_total", "counter",
                     "Durable WAL writes (fsync or PUT); appends per sync is the group-commit "
                     "factor.", [((), wal.syncs)])
        yield family("streambed_engine_memory_bytes", "gauge",
                     "Engine memory: the log cache (all of it, and what waits for upload), the "
                     "block cache.", [((("kind", k),), v) for k, v in sorted(engine.memory().items())])
        yield family("streambed_engine_uploads_total", "counter",
                     "Uploads of WAL data to object storage.", [((), engine.uploads)])
        yield family("streambed_engine_compactions_total", "counter",
                     "Compaction passes run (merges, retention, object cleanup).", [((), engine.compactions)])

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close(self.settings.shutdown_timeout_s)
            self.listener = None
        if self.services is not None:
            await self.services.groups.close()
            await self.services.partitions.close()
            self.services = None


def _static_configs(settings: BrokerSection) -> dict[str, str]:
    """The broker's static Kafka configs: ``broker.kafka_configs`` plus the Kafka names of the
    ``broker:`` settings that have one, so DescribeConfigs and CreateTopics (``num.partitions``
    for a topic created without a count) agree with what the broker does. The ``broker:`` key
    wins over a contradicting ``kafka_configs`` entry (with a warning)."""
    static = dict(settings.kafka_configs)
    derived = {
        "num.partitions": str(settings.num_partitions),
        "auto.create.topics.enable": str(settings.auto_create_topics).lower(),
        "socket.request.max.bytes": str(settings.max_request_bytes),
    }
    for name, value in derived.items():
        given = static.get(name)
        if given is not None and given != value:
            log.warning("broker.kafka_configs %s=%s is ignored: the broker: section sets %s",
                        name, given, value)
        if given is not None or value != BROKER_CONFIGS[name].default:
            static[name] = value
    return static


def _idle_timeout_s(static: Mapping[str, str]) -> float | None:
    """connections.max.idle.ms (Kafka's default 10 minutes; -1: never) in seconds."""
    idle_ms = _int_config(static, "connections.max.idle.ms", 600_000)
    return None if idle_ms < 0 else idle_ms / 1000
