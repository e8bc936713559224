"""Render the configuration reference (every key, its default and meaning) from the models.

``docs/configuration.md`` embeds this output for the built-ins (a test keeps it current), and
``streambed config reference`` prints it for whatever plugins are installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from streambed.core.config.model import ComponentConfig, Settings
from streambed.core.registry import KIND_TITLES, Registries

__all__ = ["render_reference"]


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        try:
            value: Any = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Path):
        value = str(value)
    try:
        return "`" + json.dumps(value) + "`"
    except TypeError:
        return f"`{value}`"


def _type_name(info: FieldInfo) -> str:
    annotation = info.annotation
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "").replace("|", "or")


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        annotation = info.annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if nested and annotation is not ComponentConfig:
            rows.extend(_rows(annotation, key))  # type: ignore[arg-type]
            continue
        description = (info.description or "").replace("|", "\\|")
        kind = _type_name(info).replace("|", "or")
        rows.append(f"| `{key}` | {kind} | {_default(info)} | {description} |")
    return rows


def _table(rows: list[str]) -> str:
    head = "| key | type | default | meaning |\n|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"


def render_reference(registries: Registries) -> str:
    """Markdown: the core settings, then the options of every registered implementation."""
    out = ["### Core settings\n", _table(_rows(Settings, ""))]
    for kind, title in KIND_TITLES.items():
        for impl in registries.of(kind):
            out.append(f"\n### {title} `{impl.name}` options (plugin `{impl.plugin}`)\n")
            if impl.description:
                out.append(f"\n{impl.description}\n")
            rows = _rows(impl.options_model, "options")
            out.append("\n" + (_table(rows) if rows else "No options.\n"))
    return "".join(out)
