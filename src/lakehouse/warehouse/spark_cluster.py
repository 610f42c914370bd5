"""A Spark standalone cluster on this machine, as a team runs one on many: a master, workers
in their own JVMs and the Spark Thrift Server (HiveServer2) that dbt-spark's ``thrift``
method talks to, all on 127.0.0.1, all from the pyspark wheel (``bin/spark-class``,
``bin/spark-submit``).

The cluster keeps its tables and its Derby metastore in ``spark_dir`` (``warehouse/``,
``metastore_db/``), the same layout as the ``session`` engine, so
:func:`lakehouse.warehouse.spark.attach_spark_tables` serves what it builds to the gate and
the exporter. Ports are chosen free; each process logs to ``spark_dir/cluster/logs/``; what
runs is recorded in ``spark_dir/cluster/cluster.json`` so ``lakehouse spark-cluster stop``
(another process) stops it. docs/decisions/0015-spark-cluster.md says why.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from lakehouse.warehouse.duckdb_env import WarehouseError
from lakehouse.warehouse.spark import spark_unavailable

HOST = "127.0.0.1"
THRIFT_APP = "lakehouse-thrift"  # the Thrift server's application name on the master
# what the profile's spark_thrift target reads (profiles.yml)
ENV_THRIFT_HOST = "LAKEHOUSE_SPARK_HOST"
ENV_THRIFT_PORT = "LAKEHOUSE_SPARK_PORT"
STARTUP_TIMEOUT_S = 120.0
# the Thrift server's own settings: what the session target sets in its SparkSession
# (profiles.yml's spark output; tests/test_contracts.py holds the two equal) that belongs to
# the server, not to a session
SERVER_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.ansi.enabled": "false",  # as dbt-spark sets it for its sessions
    # INFO would log every statement after Spark substituted its variables, the PII key of
    # macros/pii.sql among them (the session target runs at ERROR for the same reason)
    "spark.log.level": "WARN",
}
_MEMORY_UNITS = {"g": 1024, "m": 1}  # megabytes per unit of a JVM memory size


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where its services listen and which processes are its own."""

    spark_dir: str
    master_url: str  # spark://127.0.0.1:<port>
    master_ui: str  # http://127.0.0.1:<port>: the master's web UI and its /json/
    thrift_port: int
    app_ui: str  # the Thrift server's application UI (its /api/v1 REST API)
    workers: int
    pids: dict[str, int]  # master, worker-1, ..., thrift

    def env(self) -> dict[str, str]:
        """The environment profiles.yml's ``spark_thrift`` target reads to reach it."""
        return {ENV_THRIFT_HOST: HOST, ENV_THRIFT_PORT: str(self.thrift_port)}

    def master_state(self) -> dict:
        """The master's own account (its web UI's ``/json/``): workers, cores, applications."""
        return _get_json(f"{self.master_ui}/json/")

    def executors(self) -> list[dict]:
        """The Thrift server's executors, from its application's REST API (the driver left
        out): ``id``, ``hostPort``, ``totalTasks``, ..."""
        apps = _get_json(f"{self.app_ui}/api/v1/applications")
        found = _get_json(f"{self.app_ui}/api/v1/applications/{apps[0]['id']}/executors")
        return [e for e in found if e["id"] != "driver"]


def cluster_folder(spark_dir: Path) -> Path:
    return spark_dir / "cluster"


def _record(spark_dir: Path) -> Path:
    return cluster_folder(spark_dir) / "cluster.json"


def running_cluster(spark_dir: Path) -> Cluster | None:
    """The cluster started for ``spark_dir`` if its processes still run, else None (a stale
    record, of a machine that restarted, is removed)."""
    record = _record(spark_dir)
    if not record.exists():
        return None
    cluster = Cluster(**json.loads(record.read_text()))
    if all(_alive(pid) for pid in cluster.pids.values()):
        return cluster
    stop_cluster(spark_dir)
    return None


def start_cluster(
    spark_dir: Path,
    *,
    workers: int = 2,
    executor_memory: str = "1g",
    driver_memory: str = "2g",
) -> Cluster:
    """Start a master, ``workers`` workers of one core each and the Thrift server with its
    warehouse and metastore in ``spark_dir``; return when the server accepts connections
    and its application holds an executor (``executor_memory`` of heap) on every worker.
    One cluster per folder: an already running one is returned as it is."""
    worker_memory = _worker_memory(executor_memory)
    reason = spark_unavailable()
    if reason:
        raise WarehouseError(f"cannot start a Spark cluster: {reason}")
    spark_dir = spark_dir.resolve()
    running = running_cluster(spark_dir)
    if running is not None:
        return running
    logs = cluster_folder(spark_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    home = _spark_home()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": HOST}
    master_port, master_ui_port, thrift_port, app_ui_port = _free_ports(4)
    master_url = f"spark://{HOST}:{master_port}"
    master_ui = f"http://{HOST}:{master_ui_port}"
    pids: dict[str, int] = {}
    spark_class = str(home / "bin" / "spark-class")
    try:
        pids["master"] = _spawn(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST,
             "--port", str(master_port), "--webui-port", str(master_ui_port)],
            logs / "master.log", env,
        )  # fmt: skip
        _wait(lambda: _get_json(f"{master_ui}/json/"), "the master", logs / "master.log")
        for n in range(1, workers + 1):
            (ui_port,) = _free_ports(1)
            pids[f"worker-{n}"] = _spawn(
                [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", HOST,
                 "--cores", "1", "--memory", worker_memory,
                 "--webui-port", str(ui_port),
                 "--work-dir", str(cluster_folder(spark_dir) / f"work-{n}"), master_url],
                logs / f"worker-{n}.log", env,
            )  # fmt: skip
        _wait(
            lambda: _get_json(f"{master_ui}/json/")["aliveworkers"] >= workers,
            f"{workers} workers to register",
            logs / "worker-1.log",
        )
        pids["thrift"] = _spawn(
            _thrift_command(home, spark_dir, master_url, thrift_port, app_ui_port, workers,
                            executor_memory, driver_memory),
            logs / "thrift.log", env,
        )  # fmt: skip
        _wait(lambda: _accepts(thrift_port), "the Thrift server", logs / "thrift.log")
        cluster = Cluster(
            spark_dir=str(spark_dir),
            master_url=master_url,
            master_ui=master_ui,
            thrift_port=thrift_port,
            app_ui=f"http://{HOST}:{app_ui_port}",
            workers=workers,
            pids=pids,
        )
        _wait(
            lambda: len(cluster.executors()) >= workers,
            f"an executor on each of the {workers} workers",
            logs / "thrift.log",
        )
    except BaseException:
        _kill(pids)
        raise
    _record(spark_dir).write_text(json.dumps(asdict(cluster), indent=2) + "\n")
    return cluster


def stop_cluster(spark_dir: Path) -> bool:
    """Stop the cluster started for ``spark_dir`` (the Thrift server first, the master last);
    whether one was recorded."""
    record = _record(spark_dir.resolve())
    if not record.exists():
        return False
    pids = json.loads(record.read_text())["pids"]
    _kill(dict(reversed(list(pids.items()))))
    record.unlink()
    return True


@contextmanager
def spark_cluster(spark_dir: Path, **options) -> Iterator[Cluster]:
    """A cluster for the length of a ``with`` block, stopped at its end whatever happens
    (``options``: those of :func:`start_cluster`)."""
    cluster = start_cluster(spark_dir, **options)
    try:
        yield cluster
    finally:
        stop_cluster(spark_dir)


@contextmanager
def tolerating_session_close_failures() -> Iterator[list[str]]:
    """While dbt runs on the Thrift server in this process: a session the server fails to
    close is logged and counted (the list yielded), not made a failure of the node whose
    work it did. Spark 4 ships without ``hive-llap-common`` (SPARK-51029), and the Hive code
    that closes a session can load Hive's function registry, which needs it: now and then
    the server answers a CloseSession with ``NoClassDefFoundError: ...LlapSigner$Signable``
    after the node's statements ran and their results were read. The session is gone either
    way (the server then reports it unknown). dbt-spark already ignores the same kind of
    answer to a cursor's close; this applies it to the session's. Any other error raises."""
    from dbt.adapters.spark.connections import PyhiveConnectionWrapper
    from pyhive.exc import OperationalError

    original = PyhiveConnectionWrapper.close
    failed: list[str] = []

    def close(self: PyhiveConnectionWrapper) -> None:
        try:
            original(self)
        except OperationalError as error:
            text = str(error)
            if not text.startswith("TCloseSessionResp("):
                raise
            failed.append(text.split("errorMessage=", 1)[-1][:200])

    PyhiveConnectionWrapper.close = close  # type: ignore[method-assign]
    try:
        yield failed
    finally:
        PyhiveConnectionWrapper.close = original  # type: ignore[method-assign]


def _thrift_command(
    home: Path,
    spark_dir: Path,
    master_url: str,
    port: int,
    ui_port: int,
    workers: int,
    executor_memory: str,
    driver_memory: str,
) -> list[str]:
    """spark-submit of HiveThriftServer2 (what sbin/start-thriftserver.sh runs), with the
    warehouse and metastore in ``spark_dir`` and :data:`SERVER_CONF`. The per-session
    settings (ANSI mode, the PII key) come from the profile with each connection."""
    utc = "-Duser.timezone=UTC"
    conf = {
        "spark.cores.max": str(workers),
        "spark.executor.cores": "1",
        "spark.executor.memory": executor_memory,
        "spark.driver.host": HOST,
        "spark.ui.port": str(ui_port),
        "spark.sql.warehouse.dir": str(spark_dir / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={spark_dir / 'metastore_db'};create=true"
        ),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={spark_dir} {utc}",
        "spark.executor.extraJavaOptions": utc,
        **SERVER_CONF,
    }
    command = [
        str(home / "bin" / "spark-submit"),
        "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
        "--name", THRIFT_APP,
        "--master", master_url,
        "--driver-memory", driver_memory,
    ]  # fmt: skip
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command += [
        "--hiveconf", f"hive.server2.thrift.port={port}",
        "--hiveconf", f"hive.server2.thrift.bind.host={HOST}",
        "spark-internal",
    ]  # fmt: skip
    return command


def _worker_memory(executor_memory: str) -> str:
    """What a worker offers: its one executor's heap (a JVM size: 4g, 512m) and half a
    gigabyte for its overhead."""
    unit = executor_memory[-1:].lower()
    try:
        megabytes = float(executor_memory[:-1]) * _MEMORY_UNITS[unit]
    except (ValueError, KeyError):
        megabytes = 0
    if megabytes <= 0:
        raise WarehouseError(
            f"executor memory {executor_memory!r} is not a memory size like 4g or 512m"
        )
    return f"{int(megabytes + 512)}m"


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _spawn(command: list[str], log: Path, env: dict[str, str]) -> int:
    """Start a service in its own process group (stopped as a group: spark-class runs the JVM
    as a child), its output appended to ``log``."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    return process.pid


def _kill(pids: dict[str, int], grace_s: float = 20.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left after ``grace_s``."""
    for pid in pids.values():
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.2)
    for pid in pids.values():
        _signal(pid, signal.SIGKILL)
    for pid in pids.values():
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap our own children


def _signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False  # our child, and it exited
    except ChildProcessError:
        pass  # not our child (started by another process): ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited process its parent has not reaped yet (Linux) is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((HOST, port)) == 0


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait(ready, what: str, log: Path, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except (OSError, ValueError, KeyError, IndexError):
            pass  # not up yet
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise WarehouseError(
                f"the Spark cluster did not start: no {what} after {timeout_s:.0f} s "
                f"(log: {log}{'; last line: ' + tail[0] if tail else ''})"
            )
        time.sleep(0.5)
