"""The PEP 420 namespace must stay intact: a stray streambed/__init__.py silently breaks plugins."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC_DIRS = [
    ROOT / "core" / "src",
    ROOT / "broker" / "src",
    *sorted((ROOT / "plugins").glob("*/src")),
]


def test_no_namespace_init_files() -> None:
    offenders = []
    for src in SRC_DIRS:
        for ns in (src / "streambed", src / "streambed" / "plugins"):
            if (ns / "__init__.py").exists():
                offenders.append(str((ns / "__init__.py").relative_to(ROOT)))
    assert offenders == [], f"namespace packages must not have __init__.py: {offenders}"


def test_requested_layout_exists() -> None:
    for part in (
        "pyproject.toml",
        "core",
        "broker",
        "tests",
        "docs",
        "plugins/wal_ebs",
        "plugins/wal_s3",
        "plugins/object_minio",
        "plugins/object_hdfs",
    ):
        assert (ROOT / part).exists(), part
    for plugin in ("wal_ebs", "wal_s3", "object_minio", "object_hdfs"):
        base = ROOT / "plugins" / plugin
        assert (base / "pyproject.toml").is_file(), plugin
        assert (base / "README.md").is_file(), plugin
        assert (base / "tests").is_dir(), plugin
        assert (base / "src" / "streambed" / "plugins" / plugin / "__init__.py").is_file(), plugin


def test_no_top_level_core_or_broker_package() -> None:
    assert importlib.util.find_spec("core") is None
    assert importlib.util.find_spec("broker") is None


def test_namespace_spans_distributions() -> None:
    import streambed

    paths = list(streambed.__path__)
    assert len(paths) >= 2, paths  # core/src and broker/src at least
    assert getattr(streambed, "__file__", None) is None


def test_core_does_not_import_broker() -> None:
    code = (
        "import sys, streambed.core.plugins, streambed.core.config, streambed.core.builtin;"
        "bad = [m for m in sys.modules if m.startswith(('streambed.broker', 'streambed.plugins'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"STREAMBED_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for path in (ROOT / "core" / "src").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert "streambed.broker" not in stripped, f"{path}: {stripped}"
                assert "streambed.plugins" not in stripped, f"{path}: {stripped}"
