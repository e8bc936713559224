"""Authorized operations as Kafka reports them without an authorizer: every operation the
resource type supports, as a bit field of ``AclOperation`` ids (``1 << id``).

Metadata (v8+, when asked), DescribeTopicPartitions, DescribeCluster and DescribeGroups carry
these; admin clients show them (``describe_topics(include_authorized_operations=True)``). With
ACLs (not served yet) they would become the subset the principal holds.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLUSTER_OPERATIONS",
    "GROUP_OPERATIONS",
    "TOPIC_OPERATIONS",
    "UNKNOWN_AUTHORIZED_OPERATIONS",
]

UNKNOWN_AUTHORIZED_OPERATIONS: Final = -(2**31)
"""What a response carries when the client did not ask (Kafka's INT32_MIN)."""

# AclOperation ids: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
# DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
TOPIC_OPERATIONS: Final = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))
CLUSTER_OPERATIONS: Final = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))
GROUP_OPERATIONS: Final = sum(1 << op for op in (3, 6, 8, 10, 11))
