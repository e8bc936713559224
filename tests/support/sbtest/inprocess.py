"""An in-process Kafka server over in-memory storage, and an asyncio client speaking the codec:
fast tests of the server's logic (retention, sessions, idempotence) without a broker process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streambed.broker.protocol.connection import NEED_DATA, ClientConnection, Response
from streambed.broker.server.kafka import KafkaServer
from streambed.core.config.model import BrokerSection
from streambed.core.context import NodeContext
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.stream.engine import StreamEngine
from streambed.core.stream.settings import EngineSettings
from streambed.core.wal.memory import MemoryWalOptions, open_memory_wal


class AsyncKafkaClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.codec = ClientConnection("server-test")

    @classmethod
    async def connect(cls, port: int) -> AsyncKafkaClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, api_key: int, version: int, body: Any) -> Any:
        _, buffers = self.codec.send_request(api_key, version, body)
        self.writer.writelines(buffers)
        await self.writer.drain()
        return (await self.response()).body

    async def response(self) -> Response:
        while True:
            got = self.codec.next_response()
            if got is not NEED_DATA:
                assert isinstance(got, Response)
                return got
            data = await asyncio.wait_for(self.reader.read(1 << 16), 30)
            if not data:
                raise ConnectionError("closed by the broker")
            self.codec.receive_data(data)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass
class InProcessKafka:
    server: KafkaServer
    engine: StreamEngine
    port: int
    name: str
    tmp: Path

    async def client(self) -> AsyncKafkaClient:
        return await AsyncKafkaClient.connect(self.port)


async def start_kafka(
    tmp: Path,
    name: str,
    kafka_configs: Mapping[str, str] | None = None,
    broker: Mapping[str, Any] | None = None,
) -> InProcessKafka:
    ctx = NodeContext(data_dir=tmp, node_id=1)
    wal = await open_memory_wal(MemoryWalOptions(name=name), ctx)
    objects = await open_memory_store(MemoryObjectStoreOptions(name=name), ctx)
    store = await open_memory_metadata(MemoryMetadataOptions(name=name), ctx)
    engine = StreamEngine(wal, objects, store, EngineSettings(), node_id=1)
    await engine.start()
    settings = BrokerSection(
        listeners=["PLAINTEXT://127.0.0.1:0"],
        data_dir=tmp,
        kafka_configs={"group.initial.rebalance.delay.ms": "0", **(kafka_configs or {})},
        **(broker or {}),
    )
    server = KafkaServer(settings, engine, store)
    await server.start()
    return InProcessKafka(server, engine, server.bound[0][1], name, tmp)


async def stop_kafka(kafka: InProcessKafka) -> None:
    await kafka.server.close()
    await kafka.engine.close()
