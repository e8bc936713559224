from __future__ import annotations

import importlib.metadata as md
import logging
import types
from typing import Any

import pytest
from pydantic import BaseModel

from streambed.core import hookimpl
from streambed.core.context import NodeContext
from streambed.core.errors import PluginError
from streambed.core.plugins import PluginHost
from streambed.core.registry import KindRegistry


class _Opts(BaseModel):
    size: int = 1


async def _factory(options: _Opts, ctx: NodeContext) -> Any:
    return ("built", options.size, ctx.node_id)


def _plugin(**hooks: Any) -> types.ModuleType:
    module = types.ModuleType("test_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_builtins_register_through_hooks() -> None:
    host = PluginHost.load(autoload=False)
    assert {"file", "memory"} <= set(host.registries.wal.names())
    assert {"file", "memory"} <= set(host.registries.objects.names())
    assert {"local", "memory"} <= set(host.registries.metadata.names())
    builtin = host.plugins()[0]
    assert builtin.name == "builtin"
    assert "wal:file" in builtin.registers
    assert all(impl.plugin == "builtin" for impl in host.registries.all())


async def test_extra_plugin_registers_and_factory_builds(tmp_path: Any) -> None:
    def streambed_register_wals(registry: KindRegistry[Any]) -> None:
        registry.add("toy", _Opts, _factory, description="toy")

    host = PluginHost.load(
        autoload=False, extra=[("toy", _plugin(streambed_register_wals=streambed_register_wals))]
    )
    impl = host.registries.wal.get("toy")
    assert impl is not None and impl.plugin == "toy"
    info = {i.name: i for i in host.plugins()}["toy"]
    assert info.registers == ["wal:toy"]
    built = await impl.factory(_Opts(size=3), NodeContext(data_dir=tmp_path, node_id=7))
    assert built == ("built", 3, 7)


def test_duplicate_type_names_both_plugins() -> None:
    def streambed_register_wals(registry: KindRegistry[Any]) -> None:
        registry.add("file", _Opts, _factory)

    with pytest.raises(PluginError, match=r"'file'.*'builtin'.*'dup'"):
        PluginHost.load(
            autoload=False,
            extra=[("dup", _plugin(streambed_register_wals=streambed_register_wals))],
        )


def test_registration_failure_names_plugin() -> None:
    def streambed_register_object_stores(registry: KindRegistry[Any]) -> None:
        raise RuntimeError("boom")

    with pytest.raises(PluginError, match=r"plugin 'broken'.*RuntimeError: boom"):
        PluginHost.load(
            autoload=False,
            extra=[
                (
                    "broken",
                    _plugin(streambed_register_object_stores=streambed_register_object_stores),
                )
            ],
        )


def test_unknown_hook_is_rejected() -> None:
    def streambed_register_wal(registry: Any) -> None:  # typo: missing "s"
        pass

    with pytest.raises(PluginError, match="unknown hook"):
        PluginHost.load(
            autoload=False, extra=[("typo", _plugin(streambed_register_wal=streambed_register_wal))]
        )


def test_bad_options_model_rejected() -> None:
    def streambed_register_wals(registry: KindRegistry[Any]) -> None:
        registry.add("x", dict, _factory)  # type: ignore[arg-type]

    with pytest.raises(PluginError, match="pydantic BaseModel"):
        PluginHost.load(
            autoload=False,
            extra=[("bad", _plugin(streambed_register_wals=streambed_register_wals))],
        )


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: md.EntryPoint) -> None:
    real = md.entry_points

    def entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") == "streambed":
            return md.EntryPoints(eps)
        return real(**kwargs)

    monkeypatch.setattr(md, "entry_points", entry_points)


def test_import_failure_names_plugin_and_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = md.EntryPoint(name="ghost", value="streambed_no_such_module.plugin", group="streambed")
    _fake_entry_points(monkeypatch, ep)
    with pytest.raises(PluginError, match=r"plugin 'ghost'.*failed to import.*ModuleNotFoundError"):
        PluginHost.load()


def test_block_and_disable_autoload_env(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = md.EntryPoint(name="ghost", value="streambed_no_such_module.plugin", group="streambed")
    _fake_entry_points(monkeypatch, ep)
    monkeypatch.setenv("STREAMBED_BLOCK_PLUGINS", "other, ghost")
    assert [p.name for p in PluginHost.load().plugins()] == ["builtin"]
    monkeypatch.delenv("STREAMBED_BLOCK_PLUGINS")
    monkeypatch.setenv("STREAMBED_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert [p.name for p in PluginHost.load().plugins()] == ["builtin"]


def test_entry_point_plugin_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = md.EntryPoint(name="json_mod", value="json", group="streambed")  # a module with no hooks
    _fake_entry_points(monkeypatch, ep)
    names = [p.name for p in PluginHost.load().plugins()]
    assert names == ["builtin", "json_mod"]


def test_trace_logs_hook_calls(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="streambed.hooks"):
        PluginHost.load(autoload=False, trace=True)
    assert any("streambed_register_wals" in r.getMessage() for r in caplog.records)


def test_lifecycle_observer_failure_does_not_propagate(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from streambed.core.lifecycle import BrokerInfo

    seen: list[int] = []

    def streambed_broker_started(broker: BrokerInfo) -> None:
        raise RuntimeError("observer bug")

    def streambed_broker_stopping(broker: BrokerInfo) -> None:
        seen.append(broker.node_id)

    host = PluginHost.load(
        autoload=False,
        extra=[
            (
                "obs",
                _plugin(
                    streambed_broker_started=streambed_broker_started,
                    streambed_broker_stopping=streambed_broker_stopping,
                ),
            )
        ],
    )
    info = BrokerInfo(node_id=3, listeners=[], data_dir=tmp_path)
    host.broker_started(info)
    host.broker_stopping(info)
    assert seen == [3]
    assert "observer bug" in caplog.text
