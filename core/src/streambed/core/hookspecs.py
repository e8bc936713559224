"""Hook specifications: every extension point of streambed.

Plugins implement these with ``@streambed.core.hookimpl``. Hooks are always called with keyword
arguments through :class:`streambed.core.plugins.PluginHost`; an implementation may take any subset
of the arguments. Each hook is documented in ``docs/plugin-hooks.md`` (a test enforces it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from streambed.core.lifecycle import BrokerInfo, HealthCheck
from streambed.core.registry import KindRegistry

if TYPE_CHECKING:
    from streambed.core.config.loader import ResolvedConfig
    from streambed.core.controllers.api import Actuator, Controller
    from streambed.core.metadata.api import MetadataStore
    from streambed.core.objects.api import ObjectStore
    from streambed.core.wal.api import WriteAheadLog

__all__ = ["hookimpl", "hookspec"]

PROJECT = "streambed"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def streambed_register_wals(registry: KindRegistry[WriteAheadLog]) -> None:
    """Register write-ahead log implementations with ``registry.add(name, Options, factory)``.

    Called once when the plugin host loads, for every plugin. ``name`` is what users write as
    ``storage.wal.type``. Return values are ignored.
    """


@hookspec
def streambed_register_object_stores(registry: KindRegistry[ObjectStore]) -> None:
    """Register object store implementations (``storage.objects.type``).

    Called once when the plugin host loads, for every plugin. Return values are ignored.
    """


@hookspec
def streambed_register_metadata_stores(registry: KindRegistry[MetadataStore]) -> None:
    """Register metadata store implementations (``metadata.type``).

    Called once when the plugin host loads, for every plugin. Return values are ignored.
    """


@hookspec
def streambed_register_controllers(registry: KindRegistry[Controller]) -> None:
    """Register controllers (entries of ``controllers:``), such as auto-balance and auto-scale.

    Called once when the plugin host loads, for every plugin. Return values are ignored.
    """


@hookspec
def streambed_register_actuators(registry: KindRegistry[Actuator]) -> None:
    """Register auto-scale actuators, which start and stop brokers for the auto-scale controller.

    Called once when the plugin host loads, for every plugin. Return values are ignored.
    """


@hookspec
def streambed_broker_started(broker: BrokerInfo) -> None:
    """Called once the broker has recovered its storage and its listeners accept connections.

    Every implementation is called; exceptions are logged and do not stop the broker.
    """


@hookspec
def streambed_broker_stopping(broker: BrokerInfo) -> None:
    """Called when the broker begins a graceful shutdown, before listeners close.

    Every implementation is called; exceptions are logged and do not stop the shutdown.
    """


@hookspec
def streambed_health_checks(config: ResolvedConfig) -> list[HealthCheck]:
    """Return health checks for the validated ``config``, run by ``streambed doctor``.

    Results of all implementations are concatenated. A check must not disturb a running broker
    (read-only probes, or writes under a scratch key that it removes).
    """
    raise NotImplementedError


@hookspec
def streambed_cli_commands(cli: Any) -> None:
    """Add subcommands to the ``streambed`` command: ``cli`` is its ``click.Group``.

    Called once when the command line starts; call ``cli.add_command(...)``.
    """
