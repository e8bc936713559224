"""Each storage plugin is its own distribution: it builds a wheel on its own, the wheel holds only
its ``streambed.plugins.<name>`` package (no ``streambed/__init__.py``: the namespace is shared),
declares its entry point, and names its SDKs as dependencies; ``streambed plugins`` lists it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {
    "wal_ebs": ("streambed-wal-ebs", "wal:ebs", []),
    "wal_s3": ("streambed-wal-s3", "wal:s3", ["streambed-object-minio"]),
    "object_minio": ("streambed-object-minio", "objects:s3", ["aioboto3"]),
    "object_hdfs": ("streambed-object-hdfs", "objects:hdfs", ["hdfs-native", "fsspec"]),
}


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_plugin_builds_its_own_wheel(name: str, tmp_path: Path) -> None:
    distribution, _kind, requires = PLUGINS[name]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT / "plugins" / name)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.startswith(distribution.replace("-", "_") + "-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = archive.read(metadata).decode()
        entry_points = archive.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    code = [n for n in names if not n.split("/")[0].endswith(".dist-info")]
    assert code and all(n.startswith(f"streambed/plugins/{name}/") for n in code), code
    assert "streambed/__init__.py" not in names and "streambed/plugins/__init__.py" not in names
    assert f"{name} = streambed.plugins.{name}.plugin" in entry_points
    assert "Requires-Dist: streambed" in meta
    for sdk in requires:
        assert f"Requires-Dist: {sdk}" in meta, (sdk, meta)


def test_streambed_plugins_lists_all_four() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streambed.broker.cli", "plugins"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    for name, (distribution, kind, _) in PLUGINS.items():
        assert name in result.stdout and distribution in result.stdout, result.stdout
        assert kind in result.stdout, result.stdout
