"""The plugin host: the one typed facade through which streambed loads plugins and calls hooks.

Built-in implementations (:mod:`streambed.core.builtin`) are registered through the same hooks as
third-party plugins found through the ``streambed`` entry-point group.

Environment switches:

``STREAMBED_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry points; only built-ins and plugins passed explicitly.
``STREAMBED_BLOCK_PLUGINS=name1,name2``
    skip the named plugins (entry-point names, as ``streambed plugins`` shows them).
``STREAMBED_TRACE_HOOKS=1``
    log every hook call and its result at DEBUG level on the ``streambed.hooks`` logger.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from streambed.core import builtin, hookspecs
from streambed.core._version import __version__
from streambed.core.errors import PluginError
from streambed.core.lifecycle import BrokerInfo, HealthCheck
from streambed.core.registry import Kind, Registries

if TYPE_CHECKING:
    from streambed.core.config.loader import ResolvedConfig

__all__ = ["ENTRY_POINT_GROUP", "PluginHost", "PluginInfo"]

ENTRY_POINT_GROUP = "streambed"
BUILTIN_NAME = "builtin"
log = logging.getLogger("streambed.plugins")

_REGISTRATION_HOOKS: dict[Kind, str] = {
    "wal": "streambed_register_wals",
    "objects": "streambed_register_object_stores",
    "metadata": "streambed_register_metadata_stores",
    "controller": "streambed_register_controllers",
    "actuator": "streambed_register_actuators",
}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(slots=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    registers: list[str] = field(default_factory=list)
    """``"kind:type"`` for each implementation the plugin registered."""


class PluginHost:
    """Loads plugins and exposes hooks through typed methods.

    Construct with :meth:`load`; the host is never a module global, so tests can build as many as
    they like with different plugins.
    """

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
        self._pm = pm
        self._infos = infos
        self.registries = Registries.empty()

    @classmethod
    def load(
        cls,
        *,
        extra: Iterable[tuple[str, object]] = (),
        autoload: bool | None = None,
        blocked: Iterable[str] | None = None,
        trace: bool | None = None,
    ) -> PluginHost:
        """Build a plugin manager, register built-ins, entry points and ``extra`` plugins, and
        fill the registries. Raises :class:`PluginError` naming the plugin on any failure."""
        if autoload is None:
            autoload = not _env_flag("STREAMBED_DISABLE_PLUGIN_AUTOLOAD")
        if blocked is None:
            blocked = [b.strip() for b in os.environ.get("STREAMBED_BLOCK_PLUGINS", "").split(",")]
        blocked_set = {b for b in blocked if b}
        if trace is None:
            trace = _env_flag("STREAMBED_TRACE_HOOKS")

        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        if trace:
            hook_log = logging.getLogger("streambed.hooks")
            pm.trace.root.setwriter(lambda msg: hook_log.debug("%s", msg.rstrip()))
            pm.enable_tracing()

        infos: dict[str, PluginInfo] = {}
        candidates: list[tuple[str, object, str, str]] = [
            (BUILTIN_NAME, builtin, "streambed", __version__)
        ]
        blocked_found: set[str] = set()
        if autoload:
            entry_points = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
            for unknown in sorted(blocked_set - {ep.name for ep in entry_points}
                                  - {name for name, _ in extra}):
                log.warning("STREAMBED_BLOCK_PLUGINS names %r, which is not an installed plugin "
                            "(installed: %s)", unknown,
                            ", ".join(ep.name for ep in entry_points) or "none")
            for ep in entry_points:
                if ep.name in blocked_set:
                    log.info("plugin %r blocked by STREAMBED_BLOCK_PLUGINS", ep.name)
                    blocked_found.add(ep.name)
                    continue
                dist = ep.dist.name if ep.dist is not None else "?"
                version = ep.dist.version if ep.dist is not None else "?"
                try:
                    module = ep.load()
                except Exception as exc:
                    raise PluginError(
                        f"plugin {ep.name!r} (from {dist} {version}, entry point {ep.value!r}) "
                        f"failed to import: {type(exc).__name__}: {exc}"
                    ) from exc
                candidates.append((ep.name, module, dist, version))
        for name, module in extra:
            if name in blocked_set:
                continue
            candidates.append((name, module, "(explicit)", "-"))

        for name, module, dist, version in candidates:
            if name in infos:
                raise PluginError(
                    f"two plugins are named {name!r} ({infos[name].distribution} "
                    f"and {dist}); block one with STREAMBED_BLOCK_PLUGINS"
                )
            try:
                pm.register(module, name=name)
            except Exception as exc:
                raise PluginError(
                    f"plugin {name!r} (from {dist}) could not be registered: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            infos[name] = PluginInfo(
                name, dist, version, getattr(module, "__name__", type(module).__name__)
            )
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc

        host = cls(pm, infos)
        host.registries.blocked = frozenset(blocked_found)
        host._fill_registries()
        return host

    def _fill_registries(self) -> None:
        for kind, hook_name in _REGISTRATION_HOOKS.items():
            registry = self.registries.of(kind)
            for name, info in self._infos.items():
                plugin = self._pm.get_plugin(name)
                others = [p for p in self._pm.get_plugins() if p is not plugin]
                caller = self._pm.subset_hook_caller(hook_name, remove_plugins=others)
                before = set(registry.names())
                try:
                    caller(registry=registry.bind(name))
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {name!r} (from {info.distribution}) failed to register "
                        f"its {kind} implementations: {type(exc).__name__}: {exc}"
                    ) from exc
                info.registers.extend(f"{kind}:{n}" for n in sorted(set(registry.names()) - before))

    # -- introspection -------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin with its distribution, version and what it registered."""
        return list(self._infos.values())

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        return self._pm

    # -- hook facade -------------------------------------------------------------------------

    def broker_started(self, broker: BrokerInfo) -> None:
        self._notify("streambed_broker_started", broker=broker)

    def broker_stopping(self, broker: BrokerInfo) -> None:
        self._notify("streambed_broker_stopping", broker=broker)

    def health_checks(self, config: ResolvedConfig) -> list[HealthCheck]:
        results: list[list[HealthCheck]] = self._pm.hook.streambed_health_checks(config=config)
        return [check for checks in results for check in checks]

    def add_cli_commands(self, cli: Any) -> None:
        self._pm.hook.streambed_cli_commands(cli=cli)

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        # Lifecycle observers must not be able to break the broker: call each one separately.
        for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception:
                log.exception("plugin %r failed in %s", impl.plugin_name, hook_name)
