"""Kafka's topic name rules (``org.apache.kafka.common.internals.Topic``), with its messages."""

from __future__ import annotations

import re

from streambed.broker.domain.errors import ErrorCode, KafkaError

__all__ = [
    "COLLISION_WARNING",
    "MAX_NAME_LENGTH",
    "has_collision_chars",
    "topic_name_error",
    "unify_collision_chars",
    "validate_topic_name",
]

MAX_NAME_LENGTH = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")
COLLISION_WARNING = (
    "WARNING: Due to limitations in metric names, topics with a period ('.') or underscore ('_') "
    "could collide. To avoid issues it is best to use either, but not both."
)


def topic_name_error(name: str) -> str | None:
    """Kafka's message for an illegal name, or None when the name is legal."""
    reason = _invalid_reason(name)
    return None if reason is None else f"Topic name is invalid: {reason}"


def _invalid_reason(name: str) -> str | None:
    if not name:
        return "the empty string is not allowed"
    if name == ".":
        return "'.' is not allowed"
    if name == "..":
        return "'..' is not allowed"
    # Java counts UTF-16 code units; a name of astral characters is "too long" before it is
    # "illegal", exactly as Kafka reports it.
    if len(name.encode("utf-16-le")) // 2 > MAX_NAME_LENGTH:
        return f"the length of '{name}' is longer than the max allowed length {MAX_NAME_LENGTH}"
    if not _LEGAL.fullmatch(name):
        return (
            f"'{name}' contains one or more characters other than "
            "ASCII alphanumerics, '.', '_' and '-'"
        )
    return None


def validate_topic_name(name: str) -> None:
    """Raise ``INVALID_TOPIC_EXCEPTION`` with Kafka's message when ``name`` is illegal."""
    error = topic_name_error(name)
    if error is not None:
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, error)


def has_collision_chars(name: str) -> bool:
    return "." in name or "_" in name


def unify_collision_chars(name: str) -> str:
    """The form two colliding names share: metrics replace '.' with '_'."""
    return name.replace(".", "_")
