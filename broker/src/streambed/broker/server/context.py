"""What a request handler sees: the request's context and the broker's services.

A handler is ``async def handle(ctx: RequestContext, request: XRequest) -> XResponse``: it gets the
decoded request body (a message class of ``streambed.broker.protocol.messages``) and returns the
response body; the connection encodes it in the request's version. Handlers answer per-item
failures with Kafka error codes in the response. An exception escaping a handler is logged and
closes that one connection (the client reconnects and retries), except :class:`KafkaError`, which
only makes sense per item and is therefore also treated as a bug.

Each handler module exposes ``handlers(services) -> dict[api_key, Handler]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streambed.broker.domain.broker_configs import BrokerConfigs
    from streambed.broker.domain.clock import Clock
    from streambed.broker.domain.groups import GroupCoordinator
    from streambed.broker.domain.producer_ids import ProducerIdManager
    from streambed.broker.domain.topics import TopicManager
    from streambed.broker.server.partitions import PartitionManager
    from streambed.core.config.model import BrokerSection
    from streambed.core.metadata.api import MetadataStore
    from streambed.core.stream.engine import StreamEngine

__all__ = ["Endpoint", "Handler", "RequestContext", "Services"]


@dataclass(frozen=True, slots=True)
class RequestContext:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    peer: str
    """``host:port`` of the client."""

    @property
    def who(self) -> str:
        """``client-id@host:port``, how log lines name the client that asked."""
        return f"{self.client_id or '-'}@{self.peer}"


Handler = Callable[[RequestContext, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where clients reach a broker (an advertised listener)."""

    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(slots=True)
class Services:
    """The broker's parts, shared by every handler of one broker process."""

    node_id: int
    cluster_id: str
    endpoint: Endpoint
    settings: BrokerSection
    store: MetadataStore
    engine: StreamEngine
    topics: TopicManager
    broker_configs: BrokerConfigs
    groups: GroupCoordinator
    producer_ids: ProducerIdManager
    partitions: PartitionManager
    clock: Clock
    extra: dict[str, Any] = field(default_factory=dict)

    def brokers(self) -> list[Endpoint]:
        """Every live broker (one until the cluster issue adds membership)."""
        return [self.endpoint]
