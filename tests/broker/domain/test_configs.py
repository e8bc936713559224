"""Config parsing, validation and resolution with Kafka's names, defaults, messages and sources."""

from __future__ import annotations

import pytest

from streambed.broker.domain.broker_configs import BrokerConfigs
from streambed.broker.domain.config_defs import BROKER_CONFIGS, TOPIC_CONFIGS, ConfigType
from streambed.broker.domain.configs import (
    AlterConfigOp,
    ConfigSource,
    ConfigSynonym,
    OpType,
    apply_incremental,
    parse_value,
    validate_topic_configs,
)
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.core.metadata.api import MetadataStore


def test_kafka_defaults() -> None:
    defaults = {name: d.default for name, d in TOPIC_CONFIGS.items()}
    assert defaults["retention.ms"] == "604800000"
    assert defaults["retention.bytes"] == "-1"
    assert defaults["max.message.bytes"] == "1048588"
    assert defaults["message.timestamp.type"] == "CreateTime"
    assert defaults["cleanup.policy"] == "delete"
    assert defaults["segment.bytes"] == "1073741824"
    assert defaults["min.insync.replicas"] == "1"
    assert defaults["message.timestamp.after.max.ms"] == "3600000"  # Kafka 4.x (KIP-1030)
    # Every synonym of a topic config is a broker config we know.
    for defn in TOPIC_CONFIGS.values():
        for syn in defn.synonyms:
            assert syn.name in BROKER_CONFIGS, syn.name


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "retention.ms",
            "abc",
            "Invalid value abc for configuration retention.ms: Not a number of type LONG",
        ),
        (
            "retention.ms",
            "-2",
            "Invalid value -2 for configuration retention.ms: Value must be at least -1",
        ),
        (
            "retention.ms",
            "1_000",
            "Invalid value 1_000 for configuration retention.ms: Not a number of type LONG",
        ),
        (
            "segment.bytes",
            "1000",
            "Invalid value 1000 for configuration segment.bytes: Value must be at least 1048576",
        ),
        (
            "max.message.bytes",
            "4294967296",
            "Invalid value 4294967296 for configuration max.message.bytes: Not a number of type INT",
        ),
        (
            "message.timestamp.type",
            "Wall",
            "Invalid value Wall for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime",
        ),
        (
            "cleanup.policy",
            "delete,shred",
            "Invalid value delete,shred for configuration cleanup.policy: String must be one of: compact, delete",
        ),
        (
            "preallocate",
            "yes",
            "Invalid value yes for configuration preallocate: Expected value to be either true or false",
        ),
        (
            "min.cleanable.dirty.ratio",
            "1.5",
            "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1",
        ),
        (
            "min.cleanable.dirty.ratio",
            "nan",
            "Invalid value nan for configuration min.cleanable.dirty.ratio: Value must be at least 0",
        ),
        (
            "compression.gzip.level",
            "0",
            "Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9, or -1 (the default level)",
        ),
    ],
)
def test_bad_values_get_kafkas_messages(name: str, raw: str, message: str) -> None:
    with pytest.raises(
        ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"
    ):
        parse_value(TOPIC_CONFIGS[name], raw)
    with pytest.raises(KafkaError) as err:
        validate_topic_configs({name: raw})
    assert err.value.code == ErrorCode.INVALID_CONFIG


def test_good_values_parse() -> None:
    assert parse_value(TOPIC_CONFIGS["retention.ms"], " -1 ") == -1
    assert parse_value(TOPIC_CONFIGS["cleanup.policy"], "compact, delete") == ["compact", "delete"]
    assert parse_value(TOPIC_CONFIGS["preallocate"], "TRUE") is True
    assert parse_value(TOPIC_CONFIGS["min.cleanable.dirty.ratio"], "0.25") == 0.25
    assert parse_value(TOPIC_CONFIGS["follower.replication.throttled.replicas"], "0:1,1:2") == [
        "0:1",
        "1:2",
    ]


def test_topic_config_set_rules() -> None:
    with pytest.raises(KafkaError, match=r"Unknown topic config name: retention\.hours") as err:
        validate_topic_configs({"retention.hours": "1"})
    assert err.value.code == ErrorCode.INVALID_CONFIG
    with pytest.raises(KafkaError, match="Null value not supported for topic configs: a,b"):
        validate_topic_configs({"a": None, "b": None})
    with pytest.raises(
        KafkaError, match=r"min.compaction.lag.ms \(10\) > max.compaction.lag.ms \(5\)"
    ):
        validate_topic_configs({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"})
    with pytest.raises(KafkaError, match="Tiered Storage functionality is disabled"):
        validate_topic_configs({"remote.storage.enable": "true"})
    validate_topic_configs({"remote.storage.enable": "false", "retention.ms": "1000"})


def test_incremental_operations() -> None:
    current = {"retention.ms": "1000", "cleanup.policy": "delete"}
    ops = [
        AlterConfigOp("retention.ms", OpType.DELETE),
        AlterConfigOp("cleanup.policy", OpType.APPEND, "compact,delete"),
        AlterConfigOp("max.message.bytes", OpType.SET, "2000"),
    ]
    assert apply_incremental(current, ops, TOPIC_CONFIGS, error=ErrorCode.INVALID_CONFIG) == {
        "cleanup.policy": "delete,compact",
        "max.message.bytes": "2000",
    }
    # SUBTRACT starts from the default when nothing is set, like Kafka's controller.
    assert apply_incremental(
        {},
        [AlterConfigOp("cleanup.policy", OpType.SUBTRACT, "delete")],
        TOPIC_CONFIGS,
        error=ErrorCode.INVALID_CONFIG,
    ) == {"cleanup.policy": ""}
    with pytest.raises(
        KafkaError, match=r"Can't APPEND to key retention\.ms because its type is not LIST\."
    ) as err:
        apply_incremental(
            {},
            [AlterConfigOp("retention.ms", OpType.APPEND, "1")],
            TOPIC_CONFIGS,
            error=ErrorCode.INVALID_CONFIG,
        )
    assert err.value.code == ErrorCode.INVALID_CONFIG
    with pytest.raises(KafkaError, match="Error due to duplicate config keys") as err:
        apply_incremental(
            {},
            [AlterConfigOp("a", OpType.DELETE), AlterConfigOp("a", OpType.DELETE)],
            TOPIC_CONFIGS,
            error=ErrorCode.INVALID_CONFIG,
        )
    assert err.value.code == ErrorCode.INVALID_REQUEST
    with pytest.raises(KafkaError, match=r"Null value not supported for : retention\.ms"):
        apply_incremental(
            {},
            [AlterConfigOp("retention.ms", OpType.SET, None)],
            TOPIC_CONFIGS,
            error=ErrorCode.INVALID_CONFIG,
        )


async def test_broker_layers_and_topic_defaults(store: MetadataStore) -> None:
    configs = BrokerConfigs(
        store, node_id=3, static={"log.retention.hours": "24", "num.partitions": "4"}
    )
    await configs.load()
    assert configs.value("node.id") == "3"
    assert configs.int_value("num.partitions") == 4
    # Static hours stand behind retention.ms, converted to milliseconds.
    value, source, synonyms = configs.topic_default("retention.ms")
    assert (value, source) == ("86400000", ConfigSource.STATIC_BROKER_CONFIG)
    assert synonyms == [
        ConfigSynonym("log.retention.hours", "24", ConfigSource.STATIC_BROKER_CONFIG),
        ConfigSynonym("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]
    # A cluster-wide dynamic log.retention.ms beats the hours whatever their layer ...
    await configs.incremental_alter("", [AlterConfigOp("log.retention.ms", OpType.SET, "5000")])
    assert configs.topic_default("retention.ms")[:2] == (
        "5000",
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
    )
    # ... and this broker's own dynamic value beats the cluster default.
    await configs.incremental_alter("3", [AlterConfigOp("log.retention.ms", OpType.SET, "7000")])
    assert configs.topic_default("retention.ms")[:2] == ("7000", ConfigSource.DYNAMIC_BROKER_CONFIG)
    assert configs.topic_default("max.message.bytes") == (
        "1048588",
        ConfigSource.DEFAULT_CONFIG,
        [ConfigSynonym("message.max.bytes", "1048588", ConfigSource.DEFAULT_CONFIG)],
    )
    # Another broker (or this one after a restart) reads the same dynamic layers.
    again = BrokerConfigs(store, node_id=3)
    await again.load()
    assert again.topic_default("retention.ms")[:2] == ("7000", ConfigSource.DYNAMIC_BROKER_CONFIG)
    await configs.incremental_alter("3", [AlterConfigOp("log.retention.ms", OpType.DELETE)])
    await again.load()
    assert again.topic_default("retention.ms")[:2] == (
        "5000",
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
    )


async def test_describe_broker(memory_store: MetadataStore) -> None:
    configs = BrokerConfigs(memory_store, node_id=1, static={"log.dirs": "/data"})
    await configs.load()
    entries = {
        e.name: e for e in configs.describe("1", include_synonyms=True, include_documentation=True)
    }
    assert set(entries) == set(BROKER_CONFIGS)
    num = entries["num.partitions"]
    assert (num.value, num.source, num.read_only, num.sensitive, num.config_type) == (
        "1",
        ConfigSource.DEFAULT_CONFIG,
        True,
        False,
        ConfigType.INT,
    )
    assert num.documentation
    assert entries["log.dirs"].source == ConfigSource.STATIC_BROKER_CONFIG
    assert entries["log.retention.ms"].value is None and not entries["log.retention.ms"].read_only
    assert [s.name for s in entries["log.retention.ms"].synonyms] == ["log.retention.hours"]
    assert [e.name for e in configs.describe("1", ["message.max.bytes", "nope"])] == [
        "message.max.bytes"
    ]
    # The cluster default resource lists only what is set there.
    assert configs.describe("") == []
    await configs.alter("", {"message.max.bytes": "2000000"})
    [entry] = configs.describe("")
    assert (entry.name, entry.value, entry.source) == (
        "message.max.bytes",
        "2000000",
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
    )
    with pytest.raises(
        KafkaError, match="Unexpected broker id, expected 1 or empty string, but received 2"
    ):
        configs.describe("2")
    with pytest.raises(KafkaError, match="Node id must be an integer, but it is: x"):
        configs.describe("x")


async def test_broker_alter_errors(memory_store: MetadataStore) -> None:
    configs = BrokerConfigs(memory_store, node_id=1)
    await configs.load()
    cases = [
        (
            [AlterConfigOp("num.partitions", OpType.SET, "3")],
            "Cannot update these configs dynamically: Set(num.partitions)",
        ),
        (
            [AlterConfigOp("no.such.config", OpType.SET, "3")],
            "Unknown broker configs: no.such.config",
        ),
        (
            [AlterConfigOp("message.max.bytes", OpType.SET, "x")],
            "Invalid value x for configuration message.max.bytes: Not a number of type INT",
        ),
        (
            [AlterConfigOp("message.max.bytes", OpType.APPEND, "1")],
            "Can't APPEND to key message.max.bytes because its type is not LIST.",
        ),
    ]
    for ops, message in cases:
        with pytest.raises(KafkaError) as err:
            await configs.incremental_alter("", ops)
        assert err.value.code == ErrorCode.INVALID_REQUEST
        assert err.value.message == message
    with pytest.raises(KafkaError, match="Unexpected broker id, expected 1, but received 7"):
        await configs.incremental_alter("7", [])
    # validate_only checks everything and changes nothing.
    await configs.incremental_alter(
        "", [AlterConfigOp("log.retention.bytes", OpType.SET, "10")], validate_only=True
    )
    assert configs.topic_default("retention.bytes")[1] == ConfigSource.DEFAULT_CONFIG


def test_static_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"num\.partitions"):
        BrokerConfigs(None, node_id=1, static={"num.partitions": "zero"})  # type: ignore[arg-type]


async def test_broker_resource_names_are_canonical(store: MetadataStore) -> None:
    """"01" and " 1" name node 1: a change made through them must take effect."""
    configs = BrokerConfigs(store, node_id=1)
    await configs.load()
    await configs.incremental_alter(
        "01", [AlterConfigOp("message.max.bytes", OpType.SET, "2000000")]
    )
    assert configs.int_value("message.max.bytes") == 2_000_000
    keys = [kv.key for kv in await store.range("kafka/config/broker/")]
    assert keys == ["kafka/config/broker/1"]
