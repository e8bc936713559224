"""The broker's key layout in the metadata store, and the JSON codec of its values.

Everything lives under ``kafka/`` so it never meets the engine's keys (``sb/...``). The layout and
the reasons for it are in ``docs/rfcs/0004-broker-state-in-metadata.md``; every key this package
writes is built here, nowhere else.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "CREATING",
    "DELETING",
    "GROUPS",
    "OFFSETS",
    "PARTITIONS",
    "PRODUCER_IDS",
    "PRODUCER_STATE",
    "ROOT",
    "TIME_INDEX",
    "TOPICS",
    "TOPIC_COLLISIONS",
    "TOPIC_IDS",
    "TRANSACTIONAL_IDS",
    "broker_config_key",
    "creating_key",
    "decode",
    "decode_component",
    "deleting_key",
    "encode",
    "encode_component",
    "group_key",
    "offset_key",
    "offsets_prefix",
    "partition_key",
    "partitions_prefix",
    "producer_state_key",
    "time_index_key",
    "topic_collision_key",
    "topic_id_key",
    "topic_key",
    "transactional_id_key",
]

ROOT = "kafka/"
TOPICS = ROOT + "topics/"
TOPIC_IDS = ROOT + "topic-ids/"
TOPIC_COLLISIONS = ROOT + "topic-collisions/"
PARTITIONS = ROOT + "partitions/"
CREATING = ROOT + "creating/"
DELETING = ROOT + "deleting/"
BROKER_CONFIGS = ROOT + "config/broker/"
GROUPS = ROOT + "groups/"
OFFSETS = ROOT + "offsets/"
PRODUCER_IDS = ROOT + "producer-ids"
TRANSACTIONAL_IDS = ROOT + "transactional-ids/"
PRODUCER_STATE = ROOT + "producer-state/"
TIME_INDEX = ROOT + "time-index/"

# quote() never emits a lone "%", so it can stand for the empty string (Kafka accepts "" as a
# group id for offset commits) without clashing with any encoded id.
_EMPTY = "%"


def encode_component(text: str) -> str:
    """A key component for free-form ids (group ids, transactional ids): ``/`` and every other
    character that could make one id a prefix of another's key are percent-encoded."""
    return quote(text, safe="") if text else _EMPTY


def decode_component(component: str) -> str:
    return "" if component == _EMPTY else unquote(component)


def topic_key(name: str) -> str:
    return TOPICS + name


def topic_id_key(topic_id_hex: str) -> str:
    return TOPIC_IDS + topic_id_hex


def topic_collision_key(unified_name: str) -> str:
    return TOPIC_COLLISIONS + unified_name


def partitions_prefix(name: str) -> str:
    return f"{PARTITIONS}{name}/"


def partition_key(name: str, index: int) -> str:
    # Zero-padded so a prefix range returns partitions in index order.
    return f"{PARTITIONS}{name}/{index:010d}"


def creating_key(op_id: str) -> str:
    return CREATING + op_id


def deleting_key(topic_id_hex: str) -> str:
    return DELETING + topic_id_hex


def broker_config_key(broker: str) -> str:
    """``broker`` is a node id, or ``""`` for the cluster-wide default."""
    return BROKER_CONFIGS + (broker if broker else "default")


def group_key(group_id: str) -> str:
    return GROUPS + encode_component(group_id)


def offsets_prefix(group_id: str) -> str:
    return f"{OFFSETS}{encode_component(group_id)}/"


def offset_key(group_id: str, topic: str) -> str:
    """One record per (group, topic) holding every partition's committed offset: a commit is
    then one write per topic, however many partitions it covers (etcd caps the operations of
    one transaction, 128 by default)."""
    return f"{offsets_prefix(group_id)}{topic}"


def transactional_id_key(transactional_id: str) -> str:
    return TRANSACTIONAL_IDS + encode_component(transactional_id)


def producer_state_key(stream_id: int) -> str:
    return f"{PRODUCER_STATE}{stream_id:020d}"


def time_index_key(stream_id: int) -> str:
    return f"{TIME_INDEX}{stream_id:020d}"


def encode(value: Any) -> bytes:
    """Compact, key-sorted JSON: equal values always encode to equal bytes."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def decode(raw: bytes) -> Any:
    return json.loads(raw)
