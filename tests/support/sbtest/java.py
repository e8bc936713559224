"""Java Kafka clients, CLI tools and the Apache Kafka broker, fetched from Maven Central once.

The jars land in ``~/.cache/streambed/kafka-<version>`` (outside the repository) the first time a
test needs them; later runs reuse them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

KAFKA_VERSION = "4.3.1"
POM = Path(__file__).resolve().parents[1] / "kafka" / "pom.xml"
CACHE = Path(os.environ.get("STREAMBED_CACHE", Path.home() / ".cache" / "streambed"))


def java_available() -> str | None:
    """None when java and mvn are usable, else the reason they are not."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


def kafka_libs() -> Path:
    """The directory holding every jar (downloads on first use)."""
    target = CACHE / f"kafka-{KAFKA_VERSION}"
    marker = target / ".complete"
    if marker.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM),
         "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
         f"-DoutputDirectory={target}", "-DincludeScope=runtime"],
        check=True, timeout=900,
    )
    marker.touch()
    return target


def java_command(main_class: str, *args: str, heap: str = "512m") -> list[str]:
    """A command line running ``main_class`` with the Kafka jars on the class path."""
    libs = kafka_libs()
    return ["java", f"-Xmx{heap}", "-Dlog4j2.level=WARN", "-cp", f"{libs}/*", main_class, *args]
