"""Registries that plugins fill from their registration hooks.

A registration hook receives a :class:`KindRegistry` and calls :meth:`KindRegistry.add` once per
implementation: a *type name* (what users write as ``type:`` in YAML), a pydantic model validating
``options:``, and an async factory that builds the component::

    @hookimpl
    def streambed_register_wals(registry: KindRegistry[WriteAheadLog]) -> None:
        registry.add("ebs", EbsWalOptions, open_ebs_wal, description="O_DIRECT ring buffer")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from streambed.core.context import NodeContext
from streambed.core.errors import PluginError

__all__ = ["KNOWN_PLUGINS", "Factory", "Implementation", "Kind", "KindRegistry", "Registries"]

T = TypeVar("T")
Kind = Literal["wal", "objects", "metadata", "controller", "actuator"]

Factory = Callable[[Any, NodeContext], Awaitable[T]]
"""``async def factory(options: YourOptionsModel, context: NodeContext) -> Component``."""

KIND_TITLES: dict[Kind, str] = {
    "wal": "WAL",
    "objects": "object store",
    "metadata": "metadata store",
    "controller": "controller",
    "actuator": "auto-scale actuator",
}

KNOWN_PLUGINS: dict[tuple[Kind, str], str] = {
    ("wal", "ebs"): "streambed-wal-ebs",
    ("wal", "s3"): "streambed-wal-s3",
    ("objects", "s3"): "streambed-object-minio",
    ("objects", "minio"): "streambed-object-minio",
    ("objects", "hdfs"): "streambed-object-hdfs",
    ("objects", "fsspec"): "streambed-object-hdfs",
}
"""Type names served by first-party plugins, so an unknown type can say what to install."""


@dataclass(frozen=True, slots=True)
class Implementation(Generic[T]):
    kind: Kind
    name: str
    options_model: type[BaseModel]
    factory: Factory[T]
    plugin: str
    description: str = ""


class KindRegistry(Generic[T]):
    """The implementations of one kind (WALs, object stores, ...), keyed by type name."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self._impls: dict[str, Implementation[T]] = {}
        self._plugin = "?"

    def bind(self, plugin: str) -> KindRegistry[T]:
        """Attribute the following ``add`` calls to ``plugin`` (used by the plugin host)."""
        self._plugin = plugin
        return self

    def add(
        self,
        name: str,
        options_model: type[BaseModel],
        factory: Factory[T],
        *,
        description: str = "",
    ) -> None:
        """Register implementation ``name``; a name registered twice names both plugins."""
        if not name or not name.replace("-", "_").isidentifier():
            raise PluginError(f"plugin {self._plugin!r}: invalid {self.kind} type name {name!r}")
        if not (isinstance(options_model, type) and issubclass(options_model, BaseModel)):
            raise PluginError(
                f"plugin {self._plugin!r}: options model for {self.kind} {name!r} "
                "must be a pydantic BaseModel subclass"
            )
        if name in self._impls:
            other = self._impls[name].plugin
            raise PluginError(
                f"{KIND_TITLES[self.kind]} type {name!r} is registered by both "
                f"plugin {other!r} and plugin {self._plugin!r}; block one with "
                "STREAMBED_BLOCK_PLUGINS"
            )
        self._impls[name] = Implementation(
            self.kind, name, options_model, factory, self._plugin, description
        )

    def get(self, name: str) -> Implementation[T] | None:
        return self._impls.get(name)

    def names(self) -> list[str]:
        return sorted(self._impls)

    def __iter__(self) -> Iterator[Implementation[T]]:
        return iter(sorted(self._impls.values(), key=lambda i: i.name))

    def __len__(self) -> int:
        return len(self._impls)


@dataclass(slots=True)
class Registries:
    wal: KindRegistry[Any]
    objects: KindRegistry[Any]
    metadata: KindRegistry[Any]
    controller: KindRegistry[Any]
    actuator: KindRegistry[Any]
    blocked: frozenset[str] = frozenset()
    """Installed plugins left out by STREAMBED_BLOCK_PLUGINS (for error messages)."""

    @classmethod
    def empty(cls) -> Registries:
        return cls(
            KindRegistry("wal"),
            KindRegistry("objects"),
            KindRegistry("metadata"),
            KindRegistry("controller"),
            KindRegistry("actuator"),
        )

    def of(self, kind: Kind) -> KindRegistry[Any]:
        reg: KindRegistry[Any] = getattr(self, kind)
        return reg

    def all(self) -> Iterator[Implementation[Any]]:
        for kind in ("wal", "objects", "metadata", "controller", "actuator"):
            yield from self.of(kind)
