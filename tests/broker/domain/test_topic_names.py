"""Topic names follow Kafka's ``Topic.validate`` exactly: the same names pass, the same fail,
with the same messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.topic_names import (
    has_collision_chars,
    topic_name_error,
    unify_collision_chars,
    validate_topic_name,
)


def kafka_reference(name: str) -> str | None:
    """Kafka's ``Topic.detectInvalidTopic``, transcribed character by character."""
    if name == "":
        return "the empty string is not allowed"
    if name == ".":
        return "'.' is not allowed"
    if name == "..":
        return "'..' is not allowed"
    java_length = sum(2 if ord(c) > 0xFFFF else 1 for c in name)
    if java_length > 249:
        return f"the length of '{name}' is longer than the max allowed length 249"
    for c in name:
        if not (("a" <= c <= "z") or ("0" <= c <= "9") or ("A" <= c <= "Z") or c in "._-"):
            return f"'{name}' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'"
    return None


@pytest.mark.parametrize(
    "name", ["a", "topic-1", "A.b_c-D", "x" * 249, "__consumer_offsets", "..."]
)
def test_legal_names(name: str) -> None:
    validate_topic_name(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Topic name is invalid: the empty string is not allowed"),
        (".", "Topic name is invalid: '.' is not allowed"),
        ("..", "Topic name is invalid: '..' is not allowed"),
        (
            "x" * 250,
            f"Topic name is invalid: the length of '{'x' * 250}' is longer than the max allowed length 249",
        ),
        (
            "a b",
            "Topic name is invalid: 'a b' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'",
        ),
        (
            "a/b",
            "Topic name is invalid: 'a/b' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'",
        ),
        (
            "café",
            "Topic name is invalid: 'café' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'",
        ),
        (
            "a\n",
            "Topic name is invalid: 'a\n' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'",
        ),
    ],
)
def test_illegal_names_get_kafkas_message(name: str, message: str) -> None:
    with pytest.raises(KafkaError) as err:
        validate_topic_name(name)
    assert err.value.code == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert err.value.message == message


def test_length_counts_utf16_units_like_java() -> None:
    # 125 astral characters are 250 UTF-16 units: Java reports the length first.
    name = "\U0001f600" * 125
    assert "longer than the max allowed length" in (topic_name_error(name) or "")


_alphabet = st.sampled_from([*"abcXYZ019._-", " ", "/", "é", "\U0001f600", "\x00", ":"])


@given(
    st.one_of(
        st.text(_alphabet, max_size=260),
        st.sampled_from(["", ".", "..", "...", "a" * 249, "a" * 250]),
    )
)
def test_agrees_with_kafkas_rules(name: str) -> None:
    expected = kafka_reference(name)
    got = topic_name_error(name)
    assert got == (None if expected is None else f"Topic name is invalid: {expected}")


@given(
    st.text(st.sampled_from("ab._-"), min_size=1, max_size=20),
    st.text(st.sampled_from("ab._-"), min_size=1, max_size=20),
)
def test_collision_rule(a: str, b: str) -> None:
    # Two names collide exactly when they differ only by '.' versus '_' at the same positions.
    same_shape = len(a) == len(b) and all(
        x == y or {x, y} == {".", "_"} for x, y in zip(a, b, strict=True)
    )
    assert (unify_collision_chars(a) == unify_collision_chars(b)) == same_shape
    assert has_collision_chars(a) == ("." in a or "_" in a)
