"""Just enough of the embedded consumer protocol to know which topics a group subscribes to
(OffsetDelete answers GROUP_SUBSCRIBED_TO_TOPIC for those).

Like Kafka's coordinator it reads every subscription as version 0, the prefix all later versions
share: int16 version, then an array (int32 count) of int16-length strings.
"""

from __future__ import annotations

import struct

__all__ = ["CONSUMER_PROTOCOL_TYPE", "subscription_topics"]

CONSUMER_PROTOCOL_TYPE = "consumer"


def subscription_topics(metadata: bytes) -> list[str] | None:
    """The subscribed topics, or None when ``metadata`` is not a consumer subscription."""
    try:
        (version,) = struct.unpack_from(">h", metadata, 0)
        if version < 0:
            return None
        (count,) = struct.unpack_from(">i", metadata, 2)
        if count < 0 or count > len(metadata):
            return None
        pos = 6
        topics = []
        for _ in range(count):
            (length,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if length < 0 or pos + length > len(metadata):
                return None
            topics.append(metadata[pos : pos + length].decode("utf-8"))
            pos += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
