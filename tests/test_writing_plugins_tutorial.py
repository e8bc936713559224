"""Builds, installs and runs the plugin that docs/writing-plugins.md builds, straight from the page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
FILE_BLOCK = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```\n", re.S)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("tutorial")
    files = FILE_BLOCK.findall(DOC.read_text())
    assert len(files) >= 5, "the tutorial lost its files"
    for name, body in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(root / "streambed-sqlite-objects"),
        ],
        check=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    return root, env


def test_tutorial_plugin_is_listed(installed: tuple[Path, dict[str, str]]) -> None:
    _, env = installed
    result = subprocess.run(
        [sys.executable, "-m", "streambed.broker.cli", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(row for row in result.stdout.splitlines() if row.startswith("sqlite_objects"))
    assert "streambed-sqlite-objects 0.1.0" in line and "objects:sqlite" in line


def test_tutorial_config_checks(installed: tuple[Path, dict[str, str]]) -> None:
    root, env = installed
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streambed.broker.cli",
            "config",
            "check",
            str(root / "streambed-sqlite-objects" / "streambed.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "type: sqlite" in result.stdout


def test_tutorial_plugin_passes_conformance(installed: tuple[Path, dict[str, str]]) -> None:
    root, env = installed
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests",  # as the tutorial says: from the plugin's directory, its own pytest config
        ],
        cwd=root / "streambed-sqlite-objects",
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
