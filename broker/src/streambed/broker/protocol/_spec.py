"""The per-API table the generated modules fill in and the codec dispatches on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from streambed.broker.protocol._wire import Buffer

__all__ = ["ApiSpec", "Decoder", "Encoder"]

Encoder: TypeAlias = Callable[[Any, bytearray, list[Buffer]], bytearray]
"""``encode(message, out, chunks) -> out``: appends to ``out``; large record data goes to ``chunks``
(then a fresh buffer is returned to continue in)."""

Decoder: TypeAlias = Callable[[memoryview, int], tuple[Any, int]]
"""``decode(frame, position) -> (message, new_position)``."""


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """What the codec knows about one API key; the tuples are indexed by ``version - min_version``."""

    api_key: int
    name: str
    min_version: int
    max_version: int
    flexible_min: int | None
    request_class: type[Any]
    response_class: type[Any]
    request_encoders: tuple[Encoder, ...]
    request_decoders: tuple[Decoder, ...]
    response_encoders: tuple[Encoder, ...]
    response_decoders: tuple[Decoder, ...]

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version

    def is_flexible(self, version: int) -> bool:
        return self.flexible_min is not None and version >= self.flexible_min
