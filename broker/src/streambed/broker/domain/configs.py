"""Config values: parsing and validation with Kafka's messages, incremental changes, and the
resolved view DescribeConfigs answers with (value, source, read-only, sensitive, synonyms).

Pure functions over the catalog in :mod:`config_defs`; persistence lives in
:mod:`broker_configs` (broker layers) and :mod:`topics` (topic overrides).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from streambed.broker.domain.config_defs import TOPIC_CONFIGS, ConfigDef, ConfigType
from streambed.broker.domain.errors import ErrorCode, KafkaError

__all__ = [
    "AlterConfigOp",
    "ConfigEntry",
    "ConfigSource",
    "ConfigSynonym",
    "OpType",
    "apply_incremental",
    "parse_value",
    "validate_topic_configs",
]

_INTEGER = re.compile(r"[+-]?[0-9]+")
_BOUNDS = {ConfigType.INT: 2**31, ConfigType.SHORT: 2**15, ConfigType.LONG: 2**63}


class ConfigSource(enum.IntEnum):
    """``DescribeConfigsResponse`` ``config_source`` (v1+)."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class OpType(enum.IntEnum):
    """``IncrementalAlterConfigsRequest`` ``config_operation``."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


@dataclass(frozen=True, slots=True)
class AlterConfigOp:
    name: str
    op: OpType
    value: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigSynonym:
    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One row of a DescribeConfigs answer. ``is_default`` is what v0 calls it."""

    name: str
    value: str | None
    source: ConfigSource
    read_only: bool
    sensitive: bool
    config_type: ConfigType
    documentation: str | None = None
    synonyms: tuple[ConfigSynonym, ...] = field(default=())

    @property
    def is_default(self) -> bool:
        return self.source == ConfigSource.DEFAULT_CONFIG


def parse_value(defn: ConfigDef, raw: str) -> object:
    """Parse ``raw`` as Kafka's ConfigDef would and run the validator; raise ``ValueError`` with
    Kafka's message ("Invalid value ... for configuration ...: ...")."""
    text = raw.strip()
    value: object
    kind = defn.type
    if kind == ConfigType.BOOLEAN:
        if text.lower() not in ("true", "false"):
            raise ValueError(_invalid(defn, raw, "Expected value to be either true or false"))
        value = text.lower() == "true"
    elif kind in _BOUNDS:
        bound = _BOUNDS[kind]
        if not _INTEGER.fullmatch(text) or not -bound <= int(text) < bound:
            raise ValueError(_invalid(defn, raw, f"Not a number of type {kind.name}"))
        value = int(text)
    elif kind == ConfigType.DOUBLE:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(_invalid(defn, raw, "Not a number of type DOUBLE")) from None
    elif kind == ConfigType.LIST:
        value = [part.strip() for part in text.split(",")] if text else []
    else:
        value = text
    if defn.validator is not None:
        reason = defn.validator(value)
        if reason is not None:
            raise ValueError(_invalid(defn, raw, reason))
    return value


def _invalid(defn: ConfigDef, raw: str, reason: str) -> str:
    return f"Invalid value {raw} for configuration {defn.name}: {reason}"


def validate_topic_configs(configs: Mapping[str, str | None]) -> None:
    """Validate a full set of topic overrides (after a change); ``INVALID_CONFIG`` on the first
    problem, with Kafka's message."""
    nulls = [name for name, value in configs.items() if value is None]
    if nulls:
        raise KafkaError(
            ErrorCode.INVALID_CONFIG,
            "Null value not supported for topic configs: " + ",".join(nulls),
        )
    for name in configs:
        if name not in TOPIC_CONFIGS:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {name}")
    parsed: dict[str, object] = {}
    for name, raw in configs.items():
        assert raw is not None
        try:
            parsed[name] = parse_value(TOPIC_CONFIGS[name], raw)
        except ValueError as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from None
    min_lag = parsed.get("min.compaction.lag.ms", 0)
    max_lag = parsed.get("max.compaction.lag.ms", 2**63 - 1)
    assert isinstance(min_lag, int) and isinstance(max_lag, int)
    if min_lag > max_lag:
        raise KafkaError(
            ErrorCode.INVALID_CONFIG,
            f"conflict topic config setting min.compaction.lag.ms ({min_lag}) > "
            f"max.compaction.lag.ms ({max_lag})",
        )
    if parsed.get("remote.storage.enable") is True:
        raise KafkaError(
            ErrorCode.INVALID_CONFIG,
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured "
            "with remote log storage.",
        )


def apply_incremental(
    current: Mapping[str, str],
    ops: Sequence[AlterConfigOp],
    catalog: Mapping[str, ConfigDef],
    *,
    error: ErrorCode,
) -> dict[str, str]:
    """The overrides after ``ops`` (SET, DELETE, APPEND, SUBTRACT as Kafka's controller applies
    them). ``error`` is the code for request-shape problems, which Kafka reports as
    INVALID_REQUEST for brokers and INVALID_CONFIG for topics."""
    names = [op.name for op in ops]
    if len(names) != len(set(names)):
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
    nulls = [op.name for op in ops if op.op != OpType.DELETE and op.value is None]
    if nulls:
        raise KafkaError(
            ErrorCode.INVALID_REQUEST, "Null value not supported for : " + ", ".join(nulls)
        )
    result = dict(current)
    for op in ops:
        defn = catalog.get(op.name)
        if op.op == OpType.SET:
            assert op.value is not None
            result[op.name] = op.value
        elif op.op == OpType.DELETE:
            result.pop(op.name, None)
        else:
            if defn is None or defn.type != ConfigType.LIST:
                raise KafkaError(
                    error, f"Can't {op.op.name} to key {op.name} because its type is not LIST."
                )
            assert op.value is not None
            base = result.get(op.name, defn.default)
            parts = [p for p in (base or "").split(",") if p]
            for item in op.value.split(","):
                if op.op == OpType.APPEND and item not in parts:
                    parts.append(item)
                elif op.op == OpType.SUBTRACT and item in parts:
                    parts.remove(item)
            result[op.name] = ",".join(parts)
    return result
