"""Documentation that users rely on is checked against the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from streambed.core import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hookspec_names() -> list[str]:
    return [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("streambed_")
    ]


def test_every_hook_has_a_section() -> None:
    text = (DOCS / "plugin-hooks.md").read_text()
    headings = set(re.findall(r"^#{2,4} `(streambed_\w+)`", text, re.M))
    names = set(_hookspec_names())
    assert names, "no hookspecs found"
    assert names - headings == set(), f"undocumented hooks: {sorted(names - headings)}"
    assert headings - names == set(), (
        f"documented hooks that do not exist: {sorted(headings - names)}"
    )


def test_every_hook_is_prefixed_and_documented_in_code() -> None:
    for name in _hookspec_names():
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__) > 40, name
        assert hasattr(fn, "streambed_spec"), f"{name} is not marked with @hookspec"


def test_required_docs_exist() -> None:
    for page in ("architecture.md", "configuration.md", "plugin-hooks.md", "writing-plugins.md"):
        assert (DOCS / page).is_file(), page
    assert list((DOCS / "rfcs").glob("0001-*.md"))


def test_configuration_reference_is_current() -> None:
    from streambed.core.config.reference import render_reference
    from streambed.core.plugins import PluginHost

    text = (DOCS / "configuration.md").read_text()
    begin, end = "<!-- BEGIN REFERENCE -->\n", "<!-- END REFERENCE -->"
    current = text[text.index(begin) + len(begin) : text.index(end)]
    expected = render_reference(PluginHost.load(autoload=False).registries)
    assert current == expected, (
        "docs/configuration.md is stale: run scripts/gen-docs to regenerate the reference"
    )
