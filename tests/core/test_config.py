from __future__ import annotations

from pathlib import Path

import pytest

from streambed.core.config import load_config, masked_dump
from streambed.core.errors import ConfigError
from streambed.core.plugins import PluginHost
from streambed.core.registry import Registries


@pytest.fixture(scope="module")
def registries() -> Registries:
    return PluginHost.load(autoload=False).registries


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "streambed.yaml"
    path.write_text(text)
    return path


def test_embedded_default(registries: Registries) -> None:
    resolved = load_config(None, registries)
    assert resolved.is_default
    assert resolved.settings.broker.listeners == ["PLAINTEXT://127.0.0.1:9092"]
    assert resolved.settings.broker.data_dir == Path("./streambed-data")
    assert (
        resolved.wal.implementation.name,
        resolved.objects.implementation.name,
        resolved.metadata.implementation.name,
    ) == ("file", "file", "local")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_is_default(tmp_path: Path, registries: Registries, text: str) -> None:
    resolved = load_config(write(tmp_path, text), registries)
    assert resolved.settings == load_config(None, registries).settings


def test_issue_example(tmp_path: Path, registries: Registries) -> None:
    path = write(
        tmp_path,
        """
broker:
  node_id: 1
  listeners: ["PLAINTEXT://127.0.0.1:9092"]
  data_dir: ./streambed-data
storage:
  wal:     {type: file, options: {}}
  objects: {type: file, options: {}}
metadata:  {type: local, options: {}}
controllers: []
""",
    )
    resolved = load_config(path, registries)
    assert resolved.source == str(path)


def test_missing_file(tmp_path: Path, registries: Registries) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: configuration file not found"):
        load_config(tmp_path / "nope.yaml", registries)


def test_bad_yaml_names_line_and_column(tmp_path: Path, registries: Registries) -> None:
    path = write(tmp_path, "broker:\n  node_id: [1\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+:\d+: not valid YAML"):
        load_config(path, registries)


def test_top_level_must_be_mapping(tmp_path: Path, registries: Registries) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), registries)


def test_bad_value_names_path_line_value_and_rule(tmp_path: Path, registries: Registries) -> None:
    path = write(tmp_path, "broker:\n  node_id: -4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, registries)
    message = str(err.value)
    assert f"{path}:2: broker.node_id: got -4" in message
    assert "greater than or equal to 0" in message


def test_unknown_key_lists_allowed(tmp_path: Path, registries: Registries) -> None:
    path = write(tmp_path, "broker:\n  node_idd: 3\n")
    with pytest.raises(ConfigError, match=r"broker\.node_idd: unknown key \(allowed: .*node_id"):
        load_config(path, registries)


def test_duplicate_key(tmp_path: Path, registries: Registries) -> None:
    with pytest.raises(ConfigError, match=r":3: broker\.node_id: key given twice"):
        load_config(write(tmp_path, "broker:\n  node_id: 1\n  node_id: 2\n"), registries)


def test_bad_listener(tmp_path: Path, registries: Registries) -> None:
    path = write(tmp_path, "broker:\n  listeners: ['127.0.0.1:9092']\n")
    with pytest.raises(ConfigError, match=r"broker\.listeners.*NAME://host:port"):
        load_config(path, registries)


@pytest.mark.parametrize(
    ("section", "type_name", "package"),
    [
        ("storage:\n  objects", "hdfs", "streambed-object-hdfs"),
        ("storage:\n  wal", "ebs", "streambed-wal-ebs"),
        ("storage:\n  objects", "s3", "streambed-object-minio"),
    ],
)
def test_unknown_type_says_what_to_install(
    tmp_path: Path, section: str, type_name: str, package: str
) -> None:
    bare = PluginHost.load(autoload=False).registries  # only built-ins
    path = write(tmp_path, f"{section}: {{type: {type_name}}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, bare)
    message = str(err.value)
    assert "unknown" in message and f"type '{type_name}'" in message
    assert f"install {package}" in message
    assert "installed: file, memory" in message


def test_unknown_type_without_known_package(tmp_path: Path, registries: Registries) -> None:
    path = write(tmp_path, "metadata: {type: zookeeper}\n")
    with pytest.raises(
        ConfigError,
        match=r"metadata\.type: unknown metadata store type 'zookeeper' \(installed: .*local",
    ):
        load_config(path, registries)


def test_plugin_options_validated_by_plugin_model(tmp_path: Path, registries: Registries) -> None:
    path = write(
        tmp_path, "storage:\n  wal:\n    type: file\n    options:\n      no_such_option: 1\n"
    )
    with pytest.raises(
        ConfigError, match=r":5: storage\.wal\.options\.no_such_option: unknown key"
    ):
        load_config(path, registries)


def test_engine_settings_validated(tmp_path: Path, registries: Registries) -> None:
    path = write(tmp_path, "storage:\n  engine:\n    log_cache_bytes: lots\n")
    with pytest.raises(ConfigError, match=r"storage\.engine\.log_cache_bytes: got 'lots'"):
        load_config(path, registries)


def test_several_errors_reported_together(tmp_path: Path, registries: Registries) -> None:
    path = write(tmp_path, "broker:\n  node_id: x\n  num_partitions: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, registries)
    assert "broker.node_id" in str(err.value) and "broker.num_partitions" in str(err.value)


def test_secrets_from_environment_are_masked(tmp_path: Path, registries: Registries) -> None:
    path = write(
        tmp_path,
        """
broker:
  data_dir: ${DATA_ROOT}/sb
storage:
  objects:
    type: memory
    options: {name: {env: BUCKET_SECRET}}
""",
    )
    env = {"DATA_ROOT": "/srv", "BUCKET_SECRET": "hunter2"}
    resolved = load_config(path, registries, env=env)
    assert resolved.settings.broker.data_dir == Path("/srv/sb")
    assert resolved.objects.options.model_dump()["name"] == "hunter2"
    dumped = masked_dump(resolved)
    assert dumped["storage"]["objects"]["options"]["name"] == "********"
    assert "hunter2" not in repr(dumped)


def test_env_default_syntax(tmp_path: Path, registries: Registries) -> None:
    path = write(tmp_path, "broker:\n  data_dir: ${NOPE:-/tmp/x}\n")
    assert load_config(path, registries, env={}).settings.broker.data_dir == Path("/tmp/x")


def test_missing_env_variable(tmp_path: Path, registries: Registries) -> None:
    path = write(
        tmp_path,
        "storage:\n  objects:\n    type: memory\n    options: {name: {env: S3_SECRET_KEY}}\n",
    )
    with pytest.raises(
        ConfigError,
        match=r":4: storage\.objects\.options\.name: environment variable S3_SECRET_KEY is not set",
    ):
        load_config(path, registries, env={})


def test_bad_value_of_secret_is_not_echoed(tmp_path: Path, registries: Registries) -> None:
    path = write(tmp_path, "broker:\n  node_id: ${NODE}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, registries, env={"NODE": "topsecret"})
    assert "topsecret" not in str(err.value)


def test_key_names_that_look_secret_are_masked(tmp_path: Path) -> None:
    from typing import Any

    from pydantic import BaseModel, SecretStr

    from streambed.core import hookimpl
    from streambed.core.context import NodeContext
    from streambed.core.registry import KindRegistry

    class Opts(BaseModel):
        secret_access_key: SecretStr | None = None
        password: str = ""
        bucket: str = "b"

    async def factory(options: Opts, ctx: NodeContext) -> Any:
        return None

    class P:
        @hookimpl
        def streambed_register_object_stores(self, registry: KindRegistry[Any]) -> None:
            registry.add("toy", Opts, factory)

    regs = PluginHost.load(autoload=False, extra=[("p", P())]).registries
    path = write(
        tmp_path,
        "storage:\n  objects:\n    type: toy\n    options: {secret_access_key: abc, password: def}\n",
    )
    dumped = masked_dump(load_config(path, regs))
    options = dumped["storage"]["objects"]["options"]
    assert options == {"secret_access_key": "********", "password": "********", "bucket": "b"}


def test_load_writes_nothing(tmp_path: Path, registries: Registries) -> None:
    data_dir = tmp_path / "data"
    path = write(tmp_path, f"broker:\n  data_dir: {data_dir}\nmetadata: {{type: nope}}\n")
    with pytest.raises(ConfigError):
        load_config(path, registries)
    load_config(write(tmp_path, f"broker:\n  data_dir: {data_dir}\n"), registries)
    assert not data_dir.exists()


def test_natural_yaml_spellings_are_accepted(tmp_path: Path, registries: Registries) -> None:
    """Lower-case log levels and unquoted numbers and booleans in kafka_configs mean what they
    say (they used to be refused with a type error)."""
    resolved = load_config(write(tmp_path, (
        "broker:\n  log_level: debug\n"
        "  kafka_configs: {log.retention.hours: 72, auto.create.topics.enable: false,"
        " log.cleaner.min.cleanable.ratio: 0.5}\n"
    )), registries)
    broker = resolved.settings.broker
    assert broker.log_level == "DEBUG"
    assert broker.kafka_configs == {"log.retention.hours": "72",
                                    "auto.create.topics.enable": "false",
                                    "log.cleaner.min.cleanable.ratio": "0.5"}


def test_unknown_keys_point_at_their_own_line(tmp_path: Path, registries: Registries) -> None:
    """A misspelt key whose value is a block points at the key's line, not the block's."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "brokr:\n  node_id: 1\n"), registries)
    assert ":1:" in str(err.value) and "brokr" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "broker:\n  listner:\n    - PLAINTEXT://x:1\n"), registries)
    assert ":2:" in str(err.value) and "listner" in str(err.value)


def test_jaas_configs_are_masked(tmp_path: Path, registries: Registries) -> None:
    resolved = load_config(write(tmp_path, (
        "broker:\n  kafka_configs: {sasl.jaas.config: 'x required password=hunter2;'}\n"
    )), registries)
    dumped = masked_dump(resolved)
    assert "hunter2" not in str(dumped)
    assert dumped["broker"]["kafka_configs"]["sasl.jaas.config"] == "********"


def test_a_blocked_plugin_is_named_as_blocked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A type served by an installed but blocked plugin says so, instead of asking to install
    it; a blocked name that is no plugin at all is warned about."""
    with caplog.at_level("WARNING", logger="streambed.plugins"):
        registries = PluginHost.load(blocked=["wal_ebs", "no_such_plugin"]).registries
    assert any("'no_such_plugin', which is not an installed plugin" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "storage:\n  wal: {type: ebs}\n"), registries)
    assert "is installed but blocked by STREAMBED_BLOCK_PLUGINS" in str(err.value)


def test_every_layer_is_reported_at_once(tmp_path: Path, registries: Registries) -> None:
    """A typo in broker:, an unknown WAL type and bad object-store options are reported
    together, in file order (only the first layer's errors used to be shown)."""
    path = write(tmp_path, (
        "broker:\n  listner: x\n"
        "storage:\n  wal: {type: nosuch}\n"
        "  objects: {type: file, options: {rooot: /x}}\n"
        "metadata: {type: nowhere}\n"
    ))
    with pytest.raises(ConfigError) as err:
        load_config(path, registries)
    lines = str(err.value).splitlines()
    assert len(lines) == 4, lines
    assert "broker.listner" in lines[0] and ":2:" in lines[0]
    assert "storage.wal.type" in lines[1] and "nosuch" in lines[1]
    assert "storage.objects.options.rooot" in lines[2]
    assert "metadata.type" in lines[3] and "nowhere" in lines[3]
