"""The ``streambed`` command."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from streambed.core import __version__
from streambed.core.config import ResolvedConfig, load_config, masked_dump
from streambed.core.errors import ConfigError, PluginError, StreambedError
from streambed.core.plugins import PluginHost

__all__ = ["main"]

EPILOG_ENV = """
\b
Environment:
  STREAMBED_DISABLE_PLUGIN_AUTOLOAD=1  load only built-in plugins
  STREAMBED_BLOCK_PLUGINS=a,b          skip the named plugins
  STREAMBED_TRACE_HOOKS=1              log every hook call (DEBUG)
"""


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"streambed: error: {message}", err=True)
    sys.exit(code)


def _host() -> PluginHost:
    try:
        return PluginHost.load()
    except PluginError as exc:
        _fail(str(exc))
        raise  # unreachable; keeps mypy happy


def _load(host: PluginHost, config: Path | None) -> ResolvedConfig:
    try:
        return load_config(config, host.registries)
    except ConfigError as exc:
        _fail(f"invalid configuration\n{exc}")
        raise


class _Group(click.Group):
    """A group that lets plugins add subcommands before it parses its arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        # A failing plugin is reported by the command that needs plugins, not by --help.
        with contextlib.suppress(PluginError):
            PluginHost.load().add_cli_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(
    cls=_Group, epilog=EPILOG_ENV, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="streambed")
def cli() -> None:
    """streambed: a Kafka-compatible broker whose storage is a shared log on object storage.

    \b
    Quick start (embedded default: local WAL file, local object directory,
    local metadata, all under ./streambed-data, Kafka on 127.0.0.1:9092):
      streambed broker
    \b
    With a configuration file:
      streambed config check streambed.yaml
      streambed broker --config streambed.yaml
    """


@cli.command(epilog=EPILOG_ENV)
@click.option(
    "--config",
    "-c",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML configuration file. Without it the embedded default is used.",
)
def broker(config: Path | None) -> None:
    """Start a broker and serve Kafka clients until SIGINT or SIGTERM.

    \b
    Examples:
      streambed broker                       # embedded default under ./streambed-data
      streambed broker -c streambed.yaml     # storage and listeners from a file
    \b
    Then, with any Kafka client:
      kcat -b 127.0.0.1:9092 -L
    """
    host = _host()
    resolved = _load(host, config)
    from streambed.broker.app import run_broker

    logging.basicConfig(
        level=resolved.settings.broker.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        code = run_broker(resolved, host)
    except StreambedError as exc:
        _fail(str(exc), code=1)
        return
    sys.exit(code)


@cli.command(epilog=EPILOG_ENV)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins, their versions and what each registers.

    \b
    Example:
      $ streambed plugins
      builtin       streambed 0.1.0    wal:file wal:memory objects:file ...
      object_hdfs   streambed-object-hdfs 0.1.0   objects:hdfs
    """
    host = _host()
    infos = host.plugins()
    if as_json:
        rows = [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "module": i.module,
                "registers": i.registers,
            }
            for i in infos
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(i.name) for i in infos)
    dist_width = max(len(f"{i.distribution} {i.version}") for i in infos)
    for info in infos:
        dist = f"{info.distribution} {info.version}"
        registers = " ".join(info.registers) or "(hooks only)"
        click.echo(f"{info.name:<{width}}  {dist:<{dist_width}}  {registers}")
    click.echo()
    for impl in host.registries.all():
        click.echo(f"  {impl.kind + ':' + impl.name:<18} {impl.description}  [{impl.plugin}]")


@cli.group(epilog=EPILOG_ENV)
def config() -> None:
    """Validate and inspect configuration files.

    \b
    Examples:
      streambed config check streambed.yaml
      streambed config default > streambed.yaml
    """


@config.command("check", epilog=EPILOG_ENV)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE and print the resolved configuration with secrets masked.

    Exits with status 2 and a message naming the file, key path, bad value and
    what is allowed when the file is invalid. Nothing is written.

    \b
    Example:
      $ streambed config check streambed.yaml
      # streambed.yaml is valid
      broker:
        node_id: 1
        ...
    """
    host = _host()
    resolved = _load(host, file)
    click.echo(f"# {file} is valid")
    click.echo(yaml.safe_dump(masked_dump(resolved), sort_keys=False), nl=False)


@config.command("default", epilog=EPILOG_ENV)
def config_default() -> None:
    """Print the embedded default configuration as YAML, every key with its default.

    \b
    Example:
      streambed config default > streambed.yaml
    """
    host = _host()
    resolved = _load(host, None)
    click.echo("# streambed embedded default configuration (docs/configuration.md)")
    click.echo(yaml.safe_dump(masked_dump(resolved), sort_keys=False), nl=False)


@config.command("reference", epilog=EPILOG_ENV)
def config_reference() -> None:
    """Print every configuration key, its default and meaning, as Markdown.

    Includes the options of every installed plugin's implementations.

    \b
    Example:
      streambed config reference > reference.md
    """
    from streambed.core.config.reference import render_reference

    click.echo(render_reference(_host().registries), nl=False)


@cli.command(epilog=EPILOG_ENV)
@click.option(
    "--config",
    "-c",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML configuration file. Without it the embedded default is used.",
)
def doctor(config_file: Path | None) -> None:
    """Check the configuration and run every plugin's health checks.

    \b
    Example:
      streambed doctor -c streambed.yaml
    """
    import asyncio

    host = _host()
    resolved = _load(host, config_file)
    click.echo(f"configuration {resolved.source}: ok")
    failed = 0
    for check in host.health_checks(resolved):
        try:
            result = asyncio.run(check.check())
        except Exception as exc:
            failed += 1
            click.echo(f"{check.name}: FAILED ({type(exc).__name__}: {exc})")
            continue
        failed += 0 if result.ok else 1
        click.echo(f"{check.name}: {'ok' if result.ok else 'FAILED'} {result.detail}".rstrip())
    sys.exit(1 if failed else 0)


def main() -> None:
    cli(prog_name="streambed")


if __name__ == "__main__":
    main()
