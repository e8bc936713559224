"""Broker configs in layers, as Kafka resolves them: dynamic per-broker, dynamic cluster default,
static (the broker's settings file), then the built-in default.

The two dynamic layers live in the metadata store (``kafka/config/broker/<id>`` and
``kafka/config/broker/default``) so every broker sharing the store sees the same cluster default
after :meth:`BrokerConfigs.load`. Topic configs that are not overridden take their value from the
broker configs behind them (``retention.ms`` from ``log.retention.ms``, ``log.retention.minutes``
then ``log.retention.hours``); :meth:`BrokerConfigs.topic_default` does that lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from streambed.broker.domain import keys
from streambed.broker.domain.config_defs import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    ConfigDef,
    ConfigType,
    Synonym,
)
from streambed.broker.domain.configs import (
    AlterConfigOp,
    ConfigEntry,
    ConfigSource,
    ConfigSynonym,
    OpType,
    apply_incremental,
    parse_value,
)
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.core.metadata.api import Compare, Delete, MetadataStore, Put

__all__ = ["BrokerConfigs"]

_RETRIES = 16
_Change = Callable[[dict[str, str]], dict[str, str]]


def _families() -> dict[str, tuple[Synonym, ...]]:
    """Broker config -> the broker configs that stand for the same setting, highest priority
    first, starting at that config (``log.retention.minutes`` -> minutes, hours)."""
    out: dict[str, tuple[Synonym, ...]] = {}
    for defn in TOPIC_CONFIGS.values():
        syns = defn.synonyms
        for i, syn in enumerate(syns):
            out[syn.name] = syns[i:]
    return out


_FAMILIES = _families()


class BrokerConfigs:
    def __init__(
        self, store: MetadataStore, *, node_id: int, static: Mapping[str, str] | None = None
    ) -> None:
        self._store = store
        self._node_id = node_id
        merged = {"node.id": str(node_id), "broker.id": str(node_id), **(static or {})}
        for name, raw in merged.items():
            defn = BROKER_CONFIGS.get(name)
            if defn is not None:
                parse_value(defn, raw)  # a bad settings file fails at start-up, loudly
        self._static = merged
        self._dynamic: dict[str, dict[str, str]] = {"": {}, str(node_id): {}}

    async def load(self) -> None:
        """(Re)read the dynamic layers from the store."""
        for broker in self._dynamic:
            kv = await self._store.get(keys.broker_config_key(broker))
            self._dynamic[broker] = dict(keys.decode(kv.value)) if kv is not None else {}

    # -- lookups ---------------------------------------------------------------------------

    def value(self, name: str) -> str | None:
        """The effective value of broker config ``name`` (its own layers only)."""
        layers = self._layers(name, per_broker=True)
        return layers[0].value if layers else None

    def int_value(self, name: str) -> int:
        raw = self.value(name)
        if raw is None:
            raise KeyError(name)
        return int(raw.strip())

    def _layers(self, name: str, *, per_broker: bool) -> list[ConfigSynonym]:
        out: list[ConfigSynonym] = []
        if per_broker and name in self._dynamic[str(self._node_id)]:
            node = self._dynamic[str(self._node_id)][name]
            out.append(ConfigSynonym(name, node, ConfigSource.DYNAMIC_BROKER_CONFIG))
        if name in self._dynamic[""]:
            out.append(
                ConfigSynonym(
                    name, self._dynamic[""][name], ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
                )
            )
        if name in self._static:
            out.append(ConfigSynonym(name, self._static[name], ConfigSource.STATIC_BROKER_CONFIG))
        defn = BROKER_CONFIGS.get(name)
        if defn is not None and defn.default is not None:
            out.append(ConfigSynonym(name, defn.default, ConfigSource.DEFAULT_CONFIG))
        return out

    def topic_default(
        self, topic_config: str
    ) -> tuple[str | None, ConfigSource, list[ConfigSynonym]]:
        """Value, source and synonyms of a topic config nobody overrode on the topic.

        Like Kafka the value comes from the first synonym set in any layer (``log.retention.ms``
        beats ``log.retention.hours`` whatever their layers); unlike Kafka the synonyms are listed
        in that same order, so the first synonym always is the one in force.
        """
        defn = TOPIC_CONFIGS[topic_config]
        synonyms: list[ConfigSynonym] = []
        chosen: tuple[str, ConfigSource] | None = None
        for syn in defn.synonyms:
            for layer in self._layers(syn.name, per_broker=True):
                synonyms.append(layer)
                if chosen is None and layer.value is not None:
                    chosen = (_convert(defn, syn, layer.value), layer.source)
        if chosen is None:
            return defn.default, ConfigSource.DEFAULT_CONFIG, synonyms
        return chosen[0], chosen[1], synonyms

    # -- DescribeConfigs -------------------------------------------------------------------

    def describe(
        self,
        resource_name: str,
        names: Sequence[str] | None = None,
        *,
        include_synonyms: bool = False,
        include_documentation: bool = False,
    ) -> list[ConfigEntry]:
        """The broker resource ``resource_name``: this node's id (every config), or ``""`` for
        the cluster default (only the configs set there, as Kafka answers)."""
        per_broker = self._check_resource(resource_name, describe=True)
        candidates = sorted(BROKER_CONFIGS if per_broker else self._dynamic[""])
        wanted = None if names is None else set(names)
        out: list[ConfigEntry] = []
        for name in candidates:
            if wanted is not None and name not in wanted:
                continue
            defn = BROKER_CONFIGS.get(name)
            family = _FAMILIES.get(name, (Synonym(name),))
            synonyms = [
                layer for syn in family for layer in self._layers(syn.name, per_broker=per_broker)
            ]
            own = self._layers(name, per_broker=per_broker)
            value, source = (
                (own[0].value, own[0].source) if own else (None, ConfigSource.DEFAULT_CONFIG)
            )
            sensitive = defn.sensitive if defn is not None else False
            out.append(
                ConfigEntry(
                    name=name,
                    value=None if sensitive else value,
                    source=source,
                    read_only=defn is None or not defn.dynamic,
                    sensitive=sensitive,
                    config_type=defn.type if defn is not None else ConfigType.UNKNOWN,
                    documentation=(defn.doc if defn is not None else None)
                    if include_documentation
                    else None,
                    synonyms=tuple(synonyms) if include_synonyms else (),
                )
            )
        return out

    # -- AlterConfigs / IncrementalAlterConfigs --------------------------------------------

    async def incremental_alter(
        self, resource_name: str, ops: Sequence[AlterConfigOp], *, validate_only: bool = False
    ) -> None:
        resource_name = self._resource_key(resource_name)
        for op in ops:
            if op.op not in tuple(OpType):
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown operations type {op.op}")
        await self._update(
            resource_name,
            lambda current: apply_incremental(
                current, ops, BROKER_CONFIGS, error=ErrorCode.INVALID_REQUEST
            ),
            changed={op.name for op in ops},
            validate_only=validate_only,
        )

    async def alter(
        self, resource_name: str, configs: Mapping[str, str | None], *, validate_only: bool = False
    ) -> None:
        """Legacy AlterConfigs: the given configs replace every dynamic config of the resource."""
        resource_name = self._resource_key(resource_name)
        nulls = [name for name, value in configs.items() if value is None]
        if nulls:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST, "Null value not supported for : " + ", ".join(nulls)
            )
        replacement = {name: value for name, value in configs.items() if value is not None}
        await self._update(
            resource_name,
            lambda _current: dict(replacement),
            changed=set(replacement),
            validate_only=validate_only,
        )

    async def _update(
        self,
        resource_name: str,
        change: _Change,
        *,
        changed: set[str],
        validate_only: bool,
    ) -> None:
        key = keys.broker_config_key(resource_name)
        for _ in range(_RETRIES):
            kv = await self._store.get(key)
            current: dict[str, str] = dict(keys.decode(kv.value)) if kv is not None else {}
            updated = change(current)
            self._validate(updated, changed)
            if validate_only:
                return
            op: Put | Delete = Put(key, keys.encode(updated)) if updated else Delete(key)
            revision = kv.mod_revision if kv is not None else 0
            result = await self._store.txn([Compare(key, "==", revision)], [op])
            if result.succeeded:
                self._dynamic[resource_name] = updated
                return
        raise KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"{key} kept changing; giving up")

    @staticmethod
    def _validate(updated: Mapping[str, str], changed: set[str]) -> None:
        unknown = sorted(name for name in changed if name not in BROKER_CONFIGS)
        if unknown:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST, f"Unknown broker configs: {', '.join(unknown)}"
            )
        static_only = sorted(name for name in changed if not BROKER_CONFIGS[name].dynamic)
        if static_only:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                f"Cannot update these configs dynamically: Set({', '.join(static_only)})",
            )
        for name, raw in updated.items():
            try:
                parse_value(BROKER_CONFIGS[name], raw)
            except ValueError as exc:
                # KAFKA-13609: brokers answer INVALID_REQUEST, not INVALID_CONFIG, here.
                raise KafkaError(ErrorCode.INVALID_REQUEST, str(exc)) from None

    def _resource_key(self, resource_name: str) -> str:
        """The canonical name a change is stored under: ``""`` or this node's id as written by
        ``str`` (``"01"`` and ``" 1"`` name this node too, and must not land on other keys)."""
        return str(self._node_id) if self._check_resource(resource_name, describe=False) else ""

    def _check_resource(self, resource_name: str, *, describe: bool) -> bool:
        """True for this node's resource, False for the cluster default."""
        if resource_name == "":
            return False
        if not resource_name.strip().lstrip("-").isdigit():
            raise KafkaError(
                ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {resource_name}"
            )
        if int(resource_name) != self._node_id:
            expected = f"{self._node_id} or empty string" if describe else str(self._node_id)
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {expected}, but received {resource_name}",
            )
        return True


def _convert(defn: ConfigDef, syn: Synonym, raw: str) -> str:
    if syn.scale == 1:
        return raw.strip()
    return str(int(raw.strip()) * syn.scale)
