"""The catalog of topic and broker configs: Kafka's names, types, defaults, validators, and which
broker config stands behind each topic config.

Values are strings exactly as Kafka describes them (``retention.ms`` defaults to ``"604800000"``);
the defaults follow Kafka 4.x (``message.timestamp.after.max.ms`` is one hour since KIP-1030, and
``segment.bytes`` is at least 1 MiB).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BROKER_CONFIGS",
    "LONG_MAX",
    "TOPIC_CONFIGS",
    "ConfigDef",
    "ConfigType",
    "Synonym",
    "Validator",
    "at_least",
    "between",
    "one_of",
]

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class ConfigType(enum.IntEnum):
    """``DescribeConfigsResponse`` ``config_type`` (v3+)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


Validator = Callable[[object], str | None]
"""Takes the parsed value; returns Kafka's reason text when it is not allowed."""


def at_least(minimum: float) -> Validator:
    def check(value: object) -> str | None:
        assert isinstance(value, int | float)
        return None if value >= minimum else f"Value must be at least {_num(minimum)}"

    return check


def between(minimum: float, maximum: float) -> Validator:
    def check(value: object) -> str | None:
        assert isinstance(value, int | float)
        if not value >= minimum:  # also rejects NaN
            return f"Value must be at least {_num(minimum)}"
        if not value <= maximum:
            return f"Value must be no more than {_num(maximum)}"
        return None

    return check


def one_of(*choices: str) -> Validator:
    def check(value: object) -> str | None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item not in choices:
                return f"String must be one of: {', '.join(choices)}"
        return None

    return check


def _gzip_level(value: object) -> str | None:
    assert isinstance(value, int)
    if value == -1 or 1 <= value <= 9:
        return None
    return "Value must be between 1 and 9, or -1 (the default level)"


def _throttled_replicas(value: object) -> str | None:
    # Kafka accepts "*" or "partition:broker" pairs; the broker ignores them (no replication).
    assert isinstance(value, list)
    if value == ["*"] or all(_is_pair(v) for v in value):
        return None
    return (
        "must be the literal '*' or a list of replicas in the following format: "
        "[partitionId]:[brokerId],..."
    )


def _is_pair(text: str) -> bool:
    left, sep, right = text.strip().partition(":")
    return bool(sep) and left.isdigit() and right.isdigit()


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True, slots=True)
class Synonym:
    """A broker config that supplies a topic config's default; ``scale`` converts its unit into
    the topic config's (``log.retention.hours`` * 3 600 000 = ``retention.ms``)."""

    name: str
    scale: int = 1


@dataclass(frozen=True, slots=True)
class ConfigDef:
    name: str
    type: ConfigType
    default: str | None
    doc: str
    validator: Validator | None = None
    synonyms: tuple[Synonym, ...] = ()
    """Topic configs only: the broker configs behind it, highest priority first."""
    dynamic: bool = True
    """Broker configs only: whether IncrementalAlterConfigs may change it at runtime."""
    sensitive: bool = False


_HOUR = 3_600_000
_MINUTE = 60_000
_CODECS = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")


def _t(
    name: str,
    kind: ConfigType,
    default: str,
    doc: str,
    validator: Validator | None = None,
    *synonyms: Synonym | str,
) -> ConfigDef:
    syns = tuple(s if isinstance(s, Synonym) else Synonym(s) for s in synonyms)
    return ConfigDef(name, kind, default, doc, validator, syns)


_L, _I, _S, _B, _D, _LIST = (
    ConfigType.LONG,
    ConfigType.INT,
    ConfigType.STRING,
    ConfigType.BOOLEAN,
    ConfigType.DOUBLE,
    ConfigType.LIST,
)

TOPIC_CONFIGS: dict[str, ConfigDef] = {
    d.name: d
    for d in (
        _t(
            "cleanup.policy",
            _LIST,
            "delete",
            "The retention policy for old log data: delete, compact, or both.",
            one_of("compact", "delete"),
            "log.cleanup.policy",
        ),
        _t(
            "compression.gzip.level",
            _I,
            "-1",
            "The compression level to use if compression.type is gzip.",
            _gzip_level,
            "compression.gzip.level",
        ),
        _t(
            "compression.lz4.level",
            _I,
            "9",
            "The compression level to use if compression.type is lz4.",
            between(1, 17),
            "compression.lz4.level",
        ),
        _t(
            "compression.type",
            _S,
            "producer",
            "The final compression type for a topic; 'producer' keeps the producer's codec.",
            one_of(*_CODECS),
            "compression.type",
        ),
        _t(
            "compression.zstd.level",
            _I,
            "3",
            "The compression level to use if compression.type is zstd.",
            between(-131072, 22),
            "compression.zstd.level",
        ),
        _t(
            "delete.retention.ms",
            _L,
            "86400000",
            "How long delete tombstones are retained for compacted topics.",
            at_least(0),
            "log.cleaner.delete.retention.ms",
        ),
        _t(
            "file.delete.delay.ms",
            _L,
            "60000",
            "The time to wait before deleting a file.",
            at_least(0),
            "log.segment.delete.delay.ms",
        ),
        _t(
            "flush.messages",
            _L,
            str(LONG_MAX),
            "Messages between forced fsyncs of the log.",
            at_least(1),
            "log.flush.interval.messages",
        ),
        _t(
            "flush.ms",
            _L,
            str(LONG_MAX),
            "Time between forced fsyncs of the log.",
            at_least(0),
            "log.flush.interval.ms",
            "log.flush.scheduler.interval.ms",
        ),
        _t(
            "follower.replication.throttled.replicas",
            _LIST,
            "",
            "Replicas whose log replication is throttled on the follower side.",
            _throttled_replicas,
        ),
        _t(
            "index.interval.bytes",
            _I,
            "4096",
            "How often an offset index entry is added.",
            at_least(0),
            "log.index.interval.bytes",
        ),
        _t(
            "leader.replication.throttled.replicas",
            _LIST,
            "",
            "Replicas whose log replication is throttled on the leader side.",
            _throttled_replicas,
        ),
        _t(
            "local.retention.bytes",
            _L,
            "-2",
            "Local retention size with tiered storage (-2: retention.bytes).",
            at_least(-2),
            "log.local.retention.bytes",
        ),
        _t(
            "local.retention.ms",
            _L,
            "-2",
            "Local retention time with tiered storage (-2: retention.ms).",
            at_least(-2),
            "log.local.retention.ms",
        ),
        _t(
            "max.compaction.lag.ms",
            _L,
            str(LONG_MAX),
            "The longest a message stays ineligible for compaction.",
            at_least(1),
            "log.cleaner.max.compaction.lag.ms",
        ),
        _t(
            "max.message.bytes",
            _I,
            "1048588",
            "The largest record batch size allowed by Kafka (after compression).",
            at_least(0),
            "message.max.bytes",
        ),
        _t(
            "message.timestamp.after.max.ms",
            _L,
            "3600000",
            "How far a CreateTime timestamp may be ahead of the broker's clock.",
            at_least(0),
            "log.message.timestamp.after.max.ms",
        ),
        _t(
            "message.timestamp.before.max.ms",
            _L,
            str(LONG_MAX),
            "How far a CreateTime timestamp may be behind the broker's clock.",
            at_least(0),
            "log.message.timestamp.before.max.ms",
        ),
        _t(
            "message.timestamp.type",
            _S,
            "CreateTime",
            "Whether the timestamp in the message is create time or log append time.",
            one_of("CreateTime", "LogAppendTime"),
            "log.message.timestamp.type",
        ),
        _t(
            "min.cleanable.dirty.ratio",
            _D,
            "0.5",
            "How dirty the log must be before the compactor runs.",
            between(0, 1),
            "log.cleaner.min.cleanable.ratio",
        ),
        _t(
            "min.compaction.lag.ms",
            _L,
            "0",
            "The shortest a message stays uncompacted.",
            at_least(0),
            "log.cleaner.min.compaction.lag.ms",
        ),
        _t(
            "min.insync.replicas",
            _I,
            "1",
            "The minimum number of replicas that must acknowledge a write with acks=all.",
            at_least(1),
            "min.insync.replicas",
        ),
        _t(
            "preallocate",
            _B,
            "false",
            "Whether to preallocate the file when creating a segment.",
            None,
            "log.preallocate",
        ),
        _t(
            "remote.log.copy.disable", _B, "false", "Whether copying to remote storage is disabled."
        ),
        _t(
            "remote.log.delete.on.disable",
            _B,
            "false",
            "Whether remote data is deleted when tiered storage is disabled.",
        ),
        _t(
            "remote.storage.enable", _B, "false", "Whether tiered storage is enabled for the topic."
        ),
        _t(
            "retention.bytes",
            _L,
            "-1",
            "The most bytes a partition keeps before deleting old data (-1: no limit).",
            None,
            "log.retention.bytes",
        ),
        _t(
            "retention.ms",
            _L,
            "604800000",
            "The longest a log is retained before old data is deleted (-1: no limit).",
            at_least(-1),
            "log.retention.ms",
            Synonym("log.retention.minutes", _MINUTE),
            Synonym("log.retention.hours", _HOUR),
        ),
        _t(
            "segment.bytes",
            _I,
            "1073741824",
            "The segment file size for the log.",
            at_least(1024 * 1024),
            "log.segment.bytes",
        ),
        _t(
            "segment.index.bytes",
            _I,
            "10485760",
            "The size of the offset index.",
            at_least(4),
            "log.index.size.max.bytes",
        ),
        _t(
            "segment.jitter.ms",
            _L,
            "0",
            "The maximum random jitter subtracted from segment.ms.",
            at_least(0),
            "log.roll.jitter.ms",
            Synonym("log.roll.jitter.hours", _HOUR),
        ),
        _t(
            "segment.ms",
            _L,
            "604800000",
            "The period after which a segment is rolled.",
            at_least(1),
            "log.roll.ms",
            Synonym("log.roll.hours", _HOUR),
        ),
        _t(
            "unclean.leader.election.enable",
            _B,
            "false",
            "Whether out-of-sync replicas may become leader (always safe here: storage is shared).",
            None,
            "unclean.leader.election.enable",
        ),
    )
}


def _b(
    name: str,
    kind: ConfigType,
    default: str | None,
    doc: str,
    validator: Validator | None = None,
    *,
    dynamic: bool = True,
) -> ConfigDef:
    return ConfigDef(name, kind, default, doc, validator, (), dynamic)


BROKER_CONFIGS: dict[str, ConfigDef] = {
    d.name: d
    for d in (
        # Identity and placement: fixed at start-up.
        _b("node.id", _I, None, "The node id of this broker.", dynamic=False),
        _b("broker.id", _I, None, "The broker id (equal to node.id).", dynamic=False),
        _b("log.dirs", _S, None, "Where this broker keeps its local state.", dynamic=False),
        _b("listeners", _LIST, None, "The addresses the broker listens on.", dynamic=False),
        _b(
            "advertised.listeners",
            _LIST,
            None,
            "The addresses clients are told to use.",
            dynamic=False,
        ),
        _b(
            "num.partitions",
            _I,
            "1",
            "The default number of partitions per topic.",
            at_least(1),
            dynamic=False,
        ),
        _b(
            "default.replication.factor",
            _I,
            "1",
            "The default replication factor of new topics.",
            at_least(1),
            dynamic=False,
        ),
        _b(
            "auto.create.topics.enable",
            _B,
            "true",
            "Whether topics are created on first use.",
            dynamic=False,
        ),
        _b("delete.topic.enable", _B, "true", "Whether topics may be deleted.", dynamic=False),
        _b(
            "connections.max.idle.ms",
            _L,
            "600000",
            "Close a connection after this long without a request (-1: never).",
            dynamic=False,
        ),
        _b(
            "fetch.max.bytes",
            _I,
            "57671680",
            "The most record bytes one Fetch response carries, whatever the client asks.",
            at_least(1024),
        ),
        _b(
            "socket.request.max.bytes",
            _I,
            "104857600",
            "The largest request the broker accepts.",
            at_least(1),
            dynamic=False,
        ),
        # Topic defaults (each stands behind a topic config; see TOPIC_CONFIGS synonyms).
        _b(
            "message.max.bytes",
            _I,
            "1048588",
            "The largest record batch the broker accepts.",
            at_least(0),
        ),
        _b(
            "log.cleanup.policy",
            _LIST,
            "delete",
            "The default cleanup policy.",
            one_of("compact", "delete"),
        ),
        _b(
            "log.retention.ms",
            _L,
            None,
            "Default retention time in ms (overrides minutes and hours).",
            at_least(-1),
        ),
        _b("log.retention.minutes", _I, None, "Default retention time in minutes.", dynamic=False),
        _b("log.retention.hours", _I, "168", "Default retention time in hours.", dynamic=False),
        _b("log.retention.bytes", _L, "-1", "Default retention size per partition."),
        _b(
            "log.retention.check.interval.ms",
            _L,
            "300000",
            "How often retention is enforced.",
            at_least(1),
            dynamic=False,
        ),
        _b("log.segment.bytes", _I, "1073741824", "Default segment size.", at_least(1024 * 1024)),
        _b("log.roll.ms", _L, None, "Default segment roll time in ms."),
        _b(
            "log.roll.hours",
            _I,
            "168",
            "Default segment roll time in hours.",
            at_least(1),
            dynamic=False,
        ),
        _b("log.roll.jitter.ms", _L, None, "Default segment roll jitter in ms."),
        _b(
            "log.roll.jitter.hours",
            _I,
            "0",
            "Default segment roll jitter in hours.",
            at_least(0),
            dynamic=False,
        ),
        _b("log.index.size.max.bytes", _I, "10485760", "Default offset index size.", at_least(4)),
        _b("log.index.interval.bytes", _I, "4096", "Default offset index interval.", at_least(0)),
        _b(
            "log.flush.interval.messages",
            _L,
            str(LONG_MAX),
            "Default messages between flushes.",
            at_least(1),
        ),
        _b("log.flush.interval.ms", _L, None, "Default time between flushes."),
        _b(
            "log.flush.scheduler.interval.ms",
            _L,
            str(LONG_MAX),
            "How often flushes are checked.",
            dynamic=False,
        ),
        _b(
            "log.segment.delete.delay.ms",
            _L,
            "60000",
            "Default delay before deleting a file.",
            at_least(0),
        ),
        _b(
            "log.cleaner.delete.retention.ms",
            _L,
            "86400000",
            "Default tombstone retention.",
            at_least(0),
        ),
        _b(
            "log.cleaner.min.compaction.lag.ms",
            _L,
            "0",
            "Default minimum compaction lag.",
            at_least(0),
        ),
        _b(
            "log.cleaner.max.compaction.lag.ms",
            _L,
            str(LONG_MAX),
            "Default maximum compaction lag.",
            at_least(1),
        ),
        _b(
            "log.cleaner.min.cleanable.ratio",
            _D,
            "0.5",
            "Default minimum dirty ratio.",
            between(0, 1),
        ),
        _b("log.preallocate", _B, "false", "Default segment preallocation."),
        _b(
            "log.message.timestamp.type",
            _S,
            "CreateTime",
            "Default timestamp type.",
            one_of("CreateTime", "LogAppendTime"),
        ),
        _b(
            "log.message.timestamp.before.max.ms",
            _L,
            str(LONG_MAX),
            "Default allowed lag of CreateTime behind the broker clock.",
            at_least(0),
        ),
        _b(
            "log.message.timestamp.after.max.ms",
            _L,
            "3600000",
            "Default allowed lead of CreateTime over the broker clock.",
            at_least(0),
        ),
        _b("log.local.retention.ms", _L, "-2", "Default local retention time.", at_least(-2)),
        _b("log.local.retention.bytes", _L, "-2", "Default local retention size.", at_least(-2)),
        _b("min.insync.replicas", _I, "1", "Default min.insync.replicas.", at_least(1)),
        _b("unclean.leader.election.enable", _B, "false", "Default unclean leader election."),
        _b("compression.type", _S, "producer", "Default compression type.", one_of(*_CODECS)),
        _b("compression.gzip.level", _I, "-1", "Default gzip level.", _gzip_level),
        _b("compression.lz4.level", _I, "9", "Default lz4 level.", between(1, 17)),
        _b("compression.zstd.level", _I, "3", "Default zstd level.", between(-131072, 22)),
        # Groups, offsets and producers: fixed at start-up, except producer.id.expiration.ms.
        _b(
            "offsets.retention.minutes",
            _I,
            "10080",
            "How long committed offsets of an empty group are kept.",
            at_least(1),
            dynamic=False,
        ),
        _b(
            "offsets.retention.check.interval.ms",
            _L,
            "600000",
            "How often offsets expire.",
            at_least(1),
            dynamic=False,
        ),
        _b(
            "offset.metadata.max.bytes",
            _I,
            "4096",
            "The largest metadata string of a commit.",
            dynamic=False,
        ),
        _b(
            "group.initial.rebalance.delay.ms",
            _I,
            "3000",
            "How long the first rebalance of an empty group waits for more members.",
            dynamic=False,
        ),
        _b(
            "group.min.session.timeout.ms",
            _I,
            "6000",
            "The smallest allowed session timeout.",
            dynamic=False,
        ),
        _b(
            "group.max.session.timeout.ms",
            _I,
            "1800000",
            "The largest allowed session timeout.",
            dynamic=False,
        ),
        _b(
            "group.max.size",
            _I,
            str(INT_MAX),
            "The most members a classic group may have.",
            at_least(1),
            dynamic=False,
        ),
        _b(
            "producer.id.expiration.ms",
            _I,
            "86400000",
            "How long idempotent-producer state of an idle producer is kept.",
            at_least(1),
        ),
        _b(
            "transactional.id.expiration.ms",
            _I,
            "604800000",
            "How long an unused transactional id is kept.",
            at_least(1),
            dynamic=False,
        ),
        _b(
            "transaction.max.timeout.ms",
            _I,
            "900000",
            "The largest transaction timeout allowed.",
            at_least(1),
            dynamic=False,
        ),
    )
}
