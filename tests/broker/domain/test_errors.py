"""The domain's error codes are Kafka's: every number agrees with the generated protocol table."""

from __future__ import annotations

from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.protocol._error_codes import ErrorCode as KafkaTable


def test_codes_agree_with_kafka() -> None:
    for code in ErrorCode:
        assert KafkaTable[code.name].value == code.value, code.name


def test_kafka_error_carries_code_and_message() -> None:
    err = KafkaError(ErrorCode.INVALID_CONFIG, "bad")
    assert (err.code, err.message, str(err)) == (ErrorCode.INVALID_CONFIG, "bad", "bad")
    assert str(KafkaError(ErrorCode.NOT_COORDINATOR)) == "NOT_COORDINATOR"
