"""The broker's domain logic: topics and configs, idempotent producers, consumer groups.

No protocol encoding and no sockets here: the request handlers decode a request, call these
classes, and encode what they return. All persistent state lives in the metadata store under
``kafka/`` (see ``docs/rfcs/0004-broker-state-in-metadata.md``).
"""

from streambed.broker.domain.broker_configs import BrokerConfigs
from streambed.broker.domain.clock import Clock, ManualClock, SystemClock
from streambed.broker.domain.configs import (
    AlterConfigOp,
    ConfigEntry,
    ConfigSource,
    ConfigSynonym,
    OpType,
)
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.group_model import (
    FetchedOffset,
    GroupDescription,
    GroupState,
    JoinResult,
    LeaveResult,
    ListedGroup,
    MemberIdentity,
    OffsetCommitEntry,
    SyncResult,
    TopicPartition,
)
from streambed.broker.domain.groups import GroupConfig, GroupCoordinator
from streambed.broker.domain.producer_ids import ProducerIdAndEpoch, ProducerIdManager
from streambed.broker.domain.producers import (
    BatchMeta,
    Duplicate,
    PartitionProducerState,
    ProducerSnapshot,
    ProducerSnapshotStore,
    ProducerStateManager,
)
from streambed.broker.domain.topic_names import validate_topic_name
from streambed.broker.domain.topics import (
    NewTopic,
    PartitionInfo,
    StreamAllocator,
    TopicConfig,
    TopicInfo,
    TopicManager,
)

__all__ = [
    "AlterConfigOp",
    "BatchMeta",
    "BrokerConfigs",
    "Clock",
    "ConfigEntry",
    "ConfigSource",
    "ConfigSynonym",
    "Duplicate",
    "ErrorCode",
    "FetchedOffset",
    "GroupConfig",
    "GroupCoordinator",
    "GroupDescription",
    "GroupState",
    "JoinResult",
    "KafkaError",
    "LeaveResult",
    "ListedGroup",
    "ManualClock",
    "MemberIdentity",
    "NewTopic",
    "OffsetCommitEntry",
    "OpType",
    "PartitionInfo",
    "PartitionProducerState",
    "ProducerIdAndEpoch",
    "ProducerIdManager",
    "ProducerSnapshot",
    "ProducerSnapshotStore",
    "ProducerStateManager",
    "StreamAllocator",
    "SyncResult",
    "SystemClock",
    "TopicConfig",
    "TopicInfo",
    "TopicManager",
    "TopicPartition",
    "validate_topic_name",
]
