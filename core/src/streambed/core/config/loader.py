"""Loading, resolving and validating a configuration file.

Errors name the file, the key path (and line), the bad value and what is allowed, and nothing is
written before the whole configuration is valid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from streambed.core.config.model import ComponentConfig, Settings
from streambed.core.errors import ConfigError
from streambed.core.registry import KIND_TITLES, KNOWN_PLUGINS, Implementation, Kind, Registries

__all__ = ["ResolvedComponent", "ResolvedConfig", "load_config", "masked_dump"]

KeyPath = tuple[str | int, ...]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_NAME = re.compile(r"(secret|password|passwd|token|credential|private|jaas)", re.IGNORECASE)
MASK = "********"


def _fmt_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


@dataclass(frozen=True, slots=True)
class ResolvedComponent:
    role: str
    """``wal``, ``objects``, ``metadata`` or ``controllers[N]``."""
    kind: Kind
    implementation: Implementation[Any]
    options: BaseModel


@dataclass(slots=True)
class ResolvedConfig:
    settings: Settings
    source: str
    """The file name, or ``(embedded default)``."""
    wal: ResolvedComponent
    objects: ResolvedComponent
    metadata: ResolvedComponent
    controllers: list[ResolvedComponent] = field(default_factory=list)
    secret_paths: set[KeyPath] = field(default_factory=set)

    @property
    def is_default(self) -> bool:
        return self.source == "(embedded default)"


class _Reader:
    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self.lines: dict[KeyPath, int] = {}
        self.secret_paths: set[KeyPath] = set()

    def error(self, path: KeyPath, message: str) -> ConfigError:
        line = self._line_for(path)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {_fmt_path(path)}: {message}")

    def _line_for(self, path: KeyPath) -> int | None:
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None

    def parse(self, text: str) -> dict[str, Any]:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{self.source}:{mark.line + 1}:{mark.column + 1}" if mark else self.source
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: not valid YAML: {problem}") from exc
        if node is None:
            return {}
        self._index(node, ())
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:  # pragma: no cover - compose already parsed it
            raise ConfigError(f"{self.source}: not valid YAML: {exc}") from exc
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{self.source}: the top level must be a mapping with keys broker, storage, "
                f"metadata, controllers; got {type(data).__name__}"
            )
        return data

    def _index(self, node: yaml.Node, path: KeyPath) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    raise ConfigError(
                        f"{self.source}:{key_node.start_mark.line + 1}: "
                        f"{_fmt_path((*path, key))}: key given twice"
                    )
                seen.add(key)
                self._index(value_node, (*path, key))
                # Errors about a key point at the key's line (a block value starts below it).
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, (*path, i))

    def resolve_env(self, value: Any, path: KeyPath) -> Any:
        """Replace ``{env: NAME}`` and ``${NAME}`` / ``${NAME:-default}`` with the environment."""
        if isinstance(value, dict):
            if set(value) == {"env"} and isinstance(value["env"], str):
                name = value["env"]
                if name not in self.env:
                    raise self.error(path, f"environment variable {name} is not set")
                self.secret_paths.add(path)
                return self.env[name]
            return {k: self.resolve_env(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve_env(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:

            def substitute(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                if name in self.env:
                    return self.env[name]
                if default is not None:
                    return default
                raise self.error(path, f"environment variable {name} is not set")

            self.secret_paths.add(path)
            return _ENV_REF.sub(substitute, value)
        return value

    def validation_error(
        self, exc: ValidationError, prefix: KeyPath, model: type[BaseModel]
    ) -> ConfigError:
        messages = []
        for err in exc.errors():
            loc: KeyPath = (*prefix, *err["loc"])
            bad = err.get("input")
            if err["type"] == "extra_forbidden":
                text = "unknown key"
                allowed = _allowed_keys(model, tuple(err["loc"][:-1]))
                if allowed:
                    text += f" (allowed: {', '.join(allowed)})"
            elif err["type"] == "missing":
                text = "required key is missing"
            else:
                shown = MASK if loc in self.secret_paths else repr(bad)
                text = f"got {shown}: {err['msg']}"
            messages.append(self.error(loc, text).args[0])
        return ConfigError("\n".join(messages))


def _line_number(message: str) -> int:
    """The line of a ``file:LINE: key: text`` message (0 when it names none), for sorting."""
    match = re.match(r"[^:]*:(\d+):", message)
    return int(match[1]) if match else 0


def _raw_component(data: Any, path: KeyPath) -> ComponentConfig | None:
    """The component at ``path`` of unvalidated data, when it is well-formed on its own."""
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    try:
        return ComponentConfig.model_validate(data)
    except ValidationError:
        return None  # already reported by the top-level validation


def _allowed_keys(model: type[BaseModel], parent: KeyPath) -> list[str]:
    """Field names of the (nested) model at ``parent``, for "unknown key" messages."""
    target: type[BaseModel] = model
    for part in parent:
        info = target.model_fields.get(part) if isinstance(part, str) else None
        annotation = info.annotation if info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        target = annotation
    return sorted(target.model_fields)


def _resolve_component(
    reader: _Reader,
    registries: Registries,
    kind: Kind,
    role: str,
    path: KeyPath,
    component: ComponentConfig,
) -> ResolvedComponent:
    registry = registries.of(kind)
    impl = registry.get(component.type)
    if impl is None:
        installed = ", ".join(registry.names()) or "none"
        hint = ""
        package = KNOWN_PLUGINS.get((kind, component.type))
        if package:
            entry_point = package.removeprefix("streambed-").replace("-", "_")
            if entry_point in registries.blocked:
                hint = (f": plugin {entry_point!r} ({package}) is installed but blocked by "
                        "STREAMBED_BLOCK_PLUGINS")
            else:
                hint = (f": install {package} (pip install {package}, or pip install "
                        f"./plugins/{entry_point} from a streambed checkout)")
        raise reader.error(
            (*path, "type"),
            f"unknown {KIND_TITLES[kind]} type {component.type!r} (installed: {installed}){hint}",
        )
    try:
        options = impl.options_model.model_validate(component.options)
    except ValidationError as exc:
        raise reader.validation_error(exc, (*path, "options"), impl.options_model) from exc
    return ResolvedComponent(role, kind, impl, options)


def load_config(
    path: str | Path | None,
    registries: Registries,
    *,
    env: Mapping[str, str] | None = None,
) -> ResolvedConfig:
    """Read, resolve and validate a configuration. ``path=None`` means the embedded default.

    Raises :class:`ConfigError` with a precise message; never touches the data directory.
    """
    env = os.environ if env is None else env
    if path is None:
        reader = _Reader("(embedded default)", env)
        data: dict[str, Any] = {}
    else:
        source = str(path)
        reader = _Reader(source, env)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"{source}: configuration file not found") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read configuration file: {exc}") from exc
        data = reader.parse(text)
    data = reader.resolve_env(data, ())
    # Every layer is checked and every error reported at once (the top level, then each
    # component's type and options), so fixing one does not merely reveal the next.
    errors: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors.append(reader.validation_error(exc, (), Settings).args[0])

    roles: list[tuple[str, Kind, KeyPath]] = [
        ("wal", "wal", ("storage", "wal")),
        ("objects", "objects", ("storage", "objects")),
        ("metadata", "metadata", ("metadata",)),
    ]
    components: dict[str, ResolvedComponent] = {}
    for role, kind, key_path in roles:
        if settings is not None:
            given: ComponentConfig | None = (
                settings.metadata if role == "metadata" else getattr(settings.storage, role)
            )
        else:
            given = _raw_component(data, key_path)  # what can be checked of a broken file
        if given is None:
            continue
        try:
            components[role] = _resolve_component(
                reader, registries, kind, role, key_path, given
            )
        except ConfigError as exc:
            errors.append(exc.args[0])
    if errors or settings is None:
        raise ConfigError("\n".join(sorted(
            (line for error in errors for line in error.splitlines()), key=_line_number
        )))
    resolved = ResolvedConfig(
        settings=settings,
        source=reader.source,
        wal=components["wal"],
        objects=components["objects"],
        metadata=components["metadata"],
        secret_paths=reader.secret_paths,
    )
    for i, controller in enumerate(settings.controllers):
        resolved.controllers.append(
            _resolve_component(
                reader,
                registries,
                "controller",
                f"controllers[{i}]",
                ("controllers", i),
                controller,
            )
        )
    return resolved


def _mask(value: Any, path: KeyPath, secret_paths: set[KeyPath]) -> Any:
    if path in secret_paths or isinstance(value, SecretStr):
        return MASK
    named_secret = path and isinstance(path[-1], str) and _SECRET_NAME.search(path[-1])
    if named_secret and value and not isinstance(value, dict | list):
        return MASK
    if isinstance(value, dict):
        return {k: _mask(v, (*path, k), secret_paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, (*path, i), secret_paths) for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    return value


def masked_dump(resolved: ResolvedConfig) -> dict[str, Any]:
    """The fully resolved configuration (defaults filled in) with every secret masked."""

    def component(c: ResolvedComponent) -> dict[str, Any]:
        return {
            "type": c.implementation.name,
            "options": c.options.model_dump(mode="python"),
        }

    s = resolved.settings
    data: dict[str, Any] = {
        "broker": s.broker.model_dump(mode="python"),
        "storage": {
            "wal": component(resolved.wal),
            "objects": component(resolved.objects),
            "engine": s.storage.engine.model_dump(mode="python"),
        },
        "metadata": component(resolved.metadata),
        "controllers": [component(c) for c in resolved.controllers],
    }
    # SecretStr values are already masked by model_dump ("**********"); normalise them.
    masked: dict[str, Any] = _mask(data, (), resolved.secret_paths)
    return masked
