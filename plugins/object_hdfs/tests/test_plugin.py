"""Packaging and wiring: the entry point, a light entry module, options, the documented YAML."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from sbtest.servers import MiniHdfs

from streambed.core.config import load_config
from streambed.core.context import NodeContext
from streambed.core.errors import PluginError
from streambed.core.plugins import PluginHost
from streambed.plugins.object_hdfs.options import HDFS_CLIENT_DEFAULTS, FsspecOptions, HdfsOptions
from streambed.plugins.object_hdfs.plugin import open_fsspec_store, open_hdfs_store

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]


def test_entry_point_registers_both_types() -> None:
    host = PluginHost.load()
    info = next(p for p in host.plugins() if p.name == "object_hdfs")
    assert info.distribution == "streambed-object-hdfs"
    assert info.registers == ["objects:fsspec", "objects:hdfs"]
    assert host.registries.objects.get("hdfs") is not None


def test_namespace_packages_have_no_init() -> None:
    src = PLUGIN / "src" / "streambed"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()


def test_entry_module_imports_no_sdk() -> None:
    code = (
        "import sys, streambed.plugins.object_hdfs.plugin, streambed.core; "
        "heavy = [m for m in ('fsspec', 'hdfs_native') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("module", ["hdfs_native.fsspec", "fsspec"])
async def test_missing_sdk_says_what_to_install(module: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == module or name.startswith(module + ".") or "object_hdfs.store" in name:
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # makes ``import module`` raise ImportError
    context = NodeContext(data_dir=tmp_path)
    with pytest.raises(PluginError, match="pip install streambed-object-hdfs"):
        if module == "fsspec":
            await open_fsspec_store(FsspecOptions(url="memory://x"), context)
        else:
            await open_hdfs_store(HdfsOptions(url="hdfs://127.0.0.1:1/x"), context)


def test_options_validation() -> None:
    with pytest.raises(ValidationError, match="hdfs:// or viewfs://"):
        HdfsOptions(url="file:///tmp/x")
    with pytest.raises(ValidationError, match="use type: hdfs"):
        FsspecOptions(url="hdfs://nn:8020/x")
    with pytest.raises(ValidationError, match="url must name a filesystem"):
        FsspecOptions(url="/tmp/x")
    with pytest.raises(ValidationError):
        HdfsOptions(url="hdfs://nn/x", timeout="5")  # type: ignore[call-arg]  # unknown key
    options = HdfsOptions(url="hdfs://nn:8020/x/", hdfs_config={"dfs.client.failover.max.attempts": "9"})
    assert options.url == "hdfs://nn:8020/x"
    config = options.client_config()
    assert config["dfs.client.failover.max.attempts"] == "9"
    assert config["dfs.client.failover.sleep.max.millis"] == HDFS_CLIENT_DEFAULTS[
        "dfs.client.failover.sleep.max.millis"]


def _documented_yaml() -> str:
    text = (REPO / "docs" / "deploy-hdfs.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    complete = [b for b in blocks if "type: hdfs" in b and "broker:" in b]
    assert complete, "docs/deploy-hdfs.md lost its complete YAML example"
    return complete[0]


@pytest.mark.external
async def test_documented_yaml_opens_a_store(minihdfs: MiniHdfs, tmp_path: Path) -> None:
    data = yaml.safe_load(_documented_yaml())
    options = data["storage"]["objects"]["options"]
    options["url"] = f"{minihdfs.url}/docs-example"
    options.pop("hdfs_config", None)  # the example's HA nameservice does not exist here
    data["broker"]["data_dir"] = str(tmp_path)
    config = tmp_path / "streambed.yaml"
    config.write_text(yaml.safe_dump(data))

    resolved = load_config(config, PluginHost.load().registries)
    assert resolved.objects.implementation.name == "hdfs"
    store = await resolved.objects.implementation.factory(
        resolved.objects.options, NodeContext(data_dir=tmp_path))
    try:
        await store.put("objects/1", b"payload")
        assert await store.get_range("objects/1", 3, 100) == b"load"
        assert store.capabilities.conditional_put
    finally:
        await store.close()
