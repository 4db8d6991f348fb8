"""The production shape of the deployment as real processes, for the end-to-end and browser tests.

A code server (``dagster code-server start``), ``dagster-webserver`` and ``dagster-daemon run``
run as subprocesses, each in its own process group, sharing one PostgreSQL-backed
``DAGSTER_HOME`` that holds the repo's ``dagster.yaml``. They are started by
``deploy/start.sh``, the Procfile's commands, and the webserver and the daemon find the code
location through ``deploy/workspace.grpc.yaml``: the tests exercise the recipe of
``deploy/README.md``, not a test-only setup. The venv's ``bin`` comes first on ``PATH``, so the
script's ``dagster`` commands are this environment's.

Everything here is bounded: every wait has a deadline, every process is stopped with SIGTERM to
its whole group and then SIGKILL, and :class:`FailureReporter` attaches the tail of every
process's output to the report of a failed test. No helper sleeps longer than its ``interval``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from template_pipeline.apps.simulator import SimSite, SimulatorServer
from template_pipeline.domain.sites import SITES_FILE_ENV, write_sites_file
from template_pipeline.store import db
from template_pipeline.store.db import DASHBOARD_DATABASE_URL_ENV

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
START_SCRIPT = REPO_ROOT / "deploy" / "start.sh"
LOCATION_NAME = "template_pipeline"
LOOPBACK = "127.0.0.1"
# Gitignored; CI keeps it as the test artefacts (screenshots, logs of failed runs).
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"

# Variables of the developer's shell that would leak their own setup into the processes.
_FOREIGN_ENV_PREFIXES = ("DAGSTER_", "TEMPLATE_", "DASHBOARD_", "ALERT_")

T = TypeVar("T")


class DeploymentError(RuntimeError):
    """A process of the deployment died, or a wait ran out of time."""


class GraphQLError(RuntimeError):
    """The webserver answered a GraphQL request with errors (or not at all)."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    interval: float = 0.1,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    alive: Callable[[], None] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than ``None``/``False``; return that.

    ``alive`` is called before every probe and raises when a process the wait depends on has
    died, so a crash fails at once instead of after the whole timeout.
    """
    deadline = clock() + timeout
    while True:
        if alive is not None:
            alive()
        result = probe()
        if result is not None and result is not False:
            return result
        if clock() >= deadline:
            raise DeploymentError(f"timed out after {timeout:.0f} s waiting for {what}")
        sleep(interval)


@dataclass
class ManagedProcess:
    """A subprocess in its own process group, its output in a log file."""

    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls, name: str, args: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_dir: Path
    ) -> ManagedProcess:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            # A new session makes the process the leader of its own group: stopping the group
            # also stops what it spawned (the code server's gRPC child, run workers).
            popen = subprocess.Popen(
                list(args),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        logger.info("started %s (pid %d): %s", name, popen.pid, " ".join(args))
        return cls(name=name, args=list(args), log_path=log_path, popen=popen)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.running:
            raise DeploymentError(
                f"{self.name} exited with code {self.popen.returncode}; its output:\n"
                + self.log_tail()
            )

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def terminate(self) -> None:
        """Ask for a graceful shutdown: SIGTERM to the whole group."""
        if self.running:
            self.signal_group(signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the leader to exit, then SIGKILL the group.

        The group is killed even after a clean exit: children that outlive their leader (a run
        worker of the code server) must not survive the test.
        """
        try:
            self.popen.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.0f s: killing it", self.name, timeout)
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5.0)

    def stop(self, timeout: float = 10.0) -> None:
        self.terminate()
        self.wait_or_kill(timeout)

    def log_tail(self, limit: int = 6000) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return text if len(text) <= limit else "...\n" + text[-limit:]


class GraphQLClient:
    """The webserver's GraphQL endpoint: the API the UI's buttons call."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.url = base_url.rstrip("/") + "/graphql"
        self.timeout = timeout
        self._session = requests.Session()

    def execute(self, document: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._session.post(
                self.url,
                json={"query": document, "variables": dict(variables or {})},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise GraphQLError(f"POST {self.url} failed: {exc}") from exc
        if response.status_code != 200:
            raise GraphQLError(
                f"POST {self.url} answered HTTP {response.status_code}: {response.text[:500]}"
            )
        payload = response.json()
        if payload.get("errors"):
            raise GraphQLError(f"POST {self.url} returned errors: {payload['errors']}")
        return payload["data"]

    def close(self) -> None:
        self._session.close()


def isolated_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This interpreter's environment without the developer's project variables, plus ``extra``.

    The venv's ``bin`` goes first on ``PATH``: the code server launches run workers with the
    ``dagster`` entry point, which must be this environment's.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV_PREFIXES)}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class ScratchDatabase:
    """A fresh PostgreSQL database on the test server, dropped by :meth:`drop`."""

    server_url: str
    name: str

    @classmethod
    def create(cls, server_url: str, prefix: str) -> ScratchDatabase:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        db.ensure_database(server_url, name)
        return cls(server_url=server_url, name=name)

    @property
    def sqlalchemy_url(self) -> str:
        url = db.sqlalchemy_url(db.with_database(self.server_url, self.name))
        return url.render_as_string(hide_password=False)

    @property
    def libpq_url(self) -> str:
        """A plain ``postgresql://`` URL, as a provider hands it out (start.sh adds the driver)."""
        return db.libpq_conninfo(db.with_database(self.server_url, self.name))

    def drop(self) -> None:
        db.drop_database(self.server_url, self.name)


def instance_env(home: Path, instance_db: ScratchDatabase) -> dict[str, str]:
    """The instance's variables; ``deploy/start.sh`` puts the repo's dagster.yaml in the home."""
    return {"DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": instance_db.libpq_url}


@dataclass
class DagsterDeployment:
    """Code server, webserver and (optionally) daemon against one instance.

    ``env`` must carry the instance variables (``DAGSTER_HOME``, ``DAGSTER_POSTGRES_URL``) and
    whatever runs need (``DASHBOARD_DATABASE_URL``, ``TEMPLATE_SITES_FILE``, site keys).
    """

    env: Mapping[str, str]
    work_dir: Path
    with_daemon: bool = True
    code_server_port: int = field(default_factory=free_port)
    webserver_port: int = field(default_factory=free_port)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.webserver_port}"

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def _process_env(self) -> dict[str, str]:
        return isolated_env(
            {
                **self.env,
                # deploy/start.sh's knobs: everything on loopback, on the ports picked here.
                "DAGSTER_CODE_SERVER_HOST": LOOPBACK,
                "DAGSTER_CODE_SERVER_BIND": LOOPBACK,
                "DAGSTER_CODE_SERVER_PORT": str(self.code_server_port),
                "DAGSTER_WEBSERVER_HOST": LOOPBACK,
                "PORT": str(self.webserver_port),
            }
        )

    def _start(self, name: str, args: Sequence[str]) -> ManagedProcess:
        process = ManagedProcess.start(
            name, args, env=self._process_env(), cwd=REPO_ROOT, log_dir=self.log_dir
        )
        self.processes[name] = process
        return process

    def check_alive(self) -> None:
        for process in self.processes.values():
            process.check_alive()

    def start(
        self, timeout: float = 60.0, before_daemon: Callable[[], None] | None = None
    ) -> DagsterDeployment:
        """Start the processes in production order and wait until the webserver serves.

        ``before_daemon`` runs once the webserver answers and before the daemon starts (to
        pause automation through the UI, say). On failure the processes are left to
        :meth:`stop` and the error carries their output.
        """
        try:
            return self._start_all(timeout, before_daemon)
        except DeploymentError as exc:
            raise DeploymentError(f"{exc}\n{self.logs()}") from None

    def _start_all(
        self, timeout: float, before_daemon: Callable[[], None] | None
    ) -> DagsterDeployment:
        started = time.monotonic()
        code_server = self._start("code-server", ["bash", str(START_SCRIPT), "codeserver"])
        # The code server loads the definitions before it listens: an open port means the
        # location is ready, so the webserver and the daemon load it on their first try.
        wait_for(
            lambda: port_open(self.code_server_port),
            what=f"the code server to listen on port {self.code_server_port}",
            timeout=timeout,
            alive=code_server.check_alive,
        )
        self._start("webserver", ["bash", str(START_SCRIPT), "web"])
        remaining = max(5.0, timeout - (time.monotonic() - started))
        wait_for(
            self._server_info,
            what=f"the webserver to answer on {self.url}/server_info",
            timeout=remaining,
            alive=self.check_alive,
        )
        if self.with_daemon:
            if before_daemon is not None:
                before_daemon()
            self._start("daemon", ["bash", str(START_SCRIPT), "worker"])
        self.startup_seconds = time.monotonic() - started
        return self

    def _server_info(self) -> dict[str, Any] | None:
        try:
            response = requests.get(f"{self.url}/server_info", timeout=2)
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process, even after a failed start; never raises for a dead process.

        All get SIGTERM at once (their graceful shutdowns overlap), then whatever is still
        running at the deadline is killed with its group.
        """
        processes = list(self.processes.values())
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            process.wait_or_kill(deadline - time.monotonic())

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (exit {p.popen.poll()}) -----\n{p.log_tail()}"
            for p in self.processes.values()
        )

    def save_logs(self, destination: Path) -> None:
        destination.mkdir(parents=True, exist_ok=True)
        for process in self.processes.values():
            if process.log_path.exists():
                shutil.copyfile(process.log_path, destination / process.log_path.name)


class FailureReporter:
    """A pytest plugin, registered while a deployment runs, that adds the processes' output to
    the report of every failed test using ``fixture_name`` and keeps their full logs under
    ``test-artifacts/<artifacts_label>/<test>/``.

    A fixture cannot see its test's outcome; a ``pytest_runtest_makereport`` wrapper can, and
    registering it at run time keeps it next to the deployment it reports on.
    """

    def __init__(self, deployment: DagsterDeployment, fixture_name: str, artifacts_label: str):
        self.deployment = deployment
        self.fixture_name = fixture_name
        self.artifacts_label = artifacts_label

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report = yield
        if report.failed and self.fixture_name in getattr(item, "fixturenames", ()):
            destination = ARTIFACTS_DIR / self.artifacts_label / item.name
            self.deployment.save_logs(destination)
            report.sections.append(
                (f"deployment processes (full logs in {destination})", self.deployment.logs())
            )
        return report

    @contextlib.contextmanager
    def installed(self, config: pytest.Config) -> Iterator[FailureReporter]:
        config.pluginmanager.register(self)
        try:
            yield self
        finally:
            config.pluginmanager.unregister(self)


# --- the UI's GraphQL calls ---------------------------------------------------------------------

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

ASSET_NODES_QUERY = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    jobNames
    dependencyKeys { path }
    dependedByKeys { path }
    partitionDefinition {
      type
      name
      dimensionTypes { name type dynamicPartitionsDefinitionName }
    }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking } }
    }
  }
}
"""

CHECK_EXECUTIONS_QUERY = """
query CheckExecutions {
  assetNodes {
    assetKey { path }
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks {
          name
          executionForLatestMaterialization {
            runId
            status
            partition
            evaluation { success severity description }
          }
        }
      }
    }
  }
}
"""

PARTITION_KEYS_QUERY = """
query PartitionKeys($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode { partitionKeys }
  }
}
"""

ADD_DYNAMIC_PARTITION_MUTATION = """
mutation AddDynamicPartitionMutation(
  $partitionsDefName: String!, $partitionKey: String!, $repositorySelector: RepositorySelector!
) {
  addDynamicPartition(
    partitionsDefName: $partitionsDefName
    partitionKey: $partitionKey
    repositorySelector: $repositorySelector
  ) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionsDefName partitionKey }
    ... on DuplicateDynamicPartitionError { partitionName }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""

LAUNCH_RUN_MUTATION = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId
      status
      jobName
      tags { key value }
      stepStats { stepKey status }
      assetMaterializations { assetKey { path } partition }
    }
    ... on PythonError { message }
  }
}
"""

RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!, $afterCursor: String) {
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ExecutionStepFailureEvent { error { message } }
        ... on RunFailureEvent { error { message } }
      }
    }
  }
}
"""

SENSOR_QUERY = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      name
      minIntervalSeconds
      sensorState {
        status
        ticks(limit: 5) {
          tickId
          status
          skipReason
          runIds
          error { message }
          dynamicPartitionsRequestResults {
            partitionsDefName
            partitionKeys
            skippedPartitionKeys
            type
          }
        }
      }
    }
    ... on SensorNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

START_SENSOR_MUTATION = """
mutation StartSensor($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on SensorNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""

AUTOMATION_QUERY = """
query Automation($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository {
      sensors { name sensorState { id status } }
      schedules { name scheduleState { id status } }
    }
    ... on RepositoryNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

STOP_SENSOR_MUTATION = """
mutation StopRunningSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""

STOP_SCHEDULE_MUTATION = """
mutation StopSchedule($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""

SET_NUX_SEEN_MUTATION = """
mutation SetNuxSeen {
  setNuxSeen
}
"""

FINISHED_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


class DagsterUI:
    """The calls the UI makes, through the webserver's GraphQL API."""

    def __init__(self, client: GraphQLClient) -> None:
        self.client = client

    def locations(self) -> dict[str, dict[str, Any]]:
        """``{location name: locationOrLoadError}``; raises when the workspace itself failed."""
        data = self.client.execute(WORKSPACE_QUERY)["workspaceOrError"]
        if data["__typename"] != "Workspace":
            raise GraphQLError(f"the workspace failed to load: {data.get('message')}")
        return {e["name"]: e["locationOrLoadError"] for e in data["locationEntries"]}

    def repository_selector(self, location: str = LOCATION_NAME) -> dict[str, str]:
        loaded = self.locations()[location]
        if loaded is None or loaded["__typename"] != "RepositoryLocation":
            raise GraphQLError(f"code location {location} is not loaded: {loaded}")
        (repository,) = loaded["repositories"]
        return {"repositoryLocationName": location, "repositoryName": repository["name"]}

    def asset_nodes(self) -> dict[str, dict[str, Any]]:
        """``{asset key joined with '/': node}``."""
        nodes = self.client.execute(ASSET_NODES_QUERY)["assetNodes"]
        return {"/".join(n["assetKey"]["path"]): n for n in nodes}

    def check_executions(self) -> dict[tuple[str, str], dict[str, Any] | None]:
        """``{(asset, check): execution for the asset's latest materialisation, or None}``."""
        executions: dict[tuple[str, str], dict[str, Any] | None] = {}
        for node in self.client.execute(CHECK_EXECUTIONS_QUERY)["assetNodes"]:
            asset = "/".join(node["assetKey"]["path"])
            checks = node["assetChecksOrError"]
            for check in checks.get("checks", []):
                executions[(asset, check["name"])] = check["executionForLatestMaterialization"]
        return executions

    def partition_keys(self, asset: str) -> list[str]:
        node = self.client.execute(PARTITION_KEYS_QUERY, {"assetKey": {"path": asset.split("/")}})
        node = node["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            raise GraphQLError(f"asset {asset} not found: {node}")
        return list(node["partitionKeys"])

    def add_dynamic_partition(self, partitions_def: str, key: str) -> dict[str, Any]:
        result = self.client.execute(
            ADD_DYNAMIC_PARTITION_MUTATION,
            {
                "partitionsDefName": partitions_def,
                "partitionKey": key,
                "repositorySelector": self.repository_selector(),
            },
        )["addDynamicPartition"]
        if result["__typename"] not in (
            "AddDynamicPartitionSuccess",
            "DuplicateDynamicPartitionError",
        ):
            raise GraphQLError(f"adding partition {key} to {partitions_def} failed: {result}")
        return result

    def launch_partition_run(
        self, job: str, partition: str, assets: Sequence[str], tags: Mapping[str, str] | None = None
    ) -> str:
        """Launch one partition's run of ``assets`` (the Materialize button); return its id."""
        all_tags = {"dagster/partition": partition, **(tags or {})}
        params = {
            "selector": {
                **self.repository_selector(),
                "jobName": job,
                "assetSelection": [{"path": a.split("/")} for a in assets],
            },
            "runConfigData": {},
            "mode": "default",
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in all_tags.items()]},
        }
        result = self.client.execute(LAUNCH_RUN_MUTATION, {"executionParams": params})
        result = result["launchPipelineExecution"]
        if result["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launching {job} for partition {partition} failed: {result}")
        return result["run"]["runId"]

    def run(self, run_id: str) -> dict[str, Any]:
        result = self.client.execute(RUN_QUERY, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise GraphQLError(f"run {run_id} not found: {result}")
        return result

    def run_events(self, run_id: str, max_pages: int = 20) -> list[dict[str, Any]]:
        """A run's events as the run page shows them (``__typename`` names the event type)."""
        events: list[dict[str, Any]] = []
        cursor = None
        for _ in range(max_pages):
            result = self.client.execute(
                RUN_EVENTS_QUERY, {"runId": run_id, "afterCursor": cursor}
            )["logsForRun"]
            if result["__typename"] != "EventConnection":
                raise GraphQLError(f"reading the events of run {run_id} failed: {result}")
            events.extend(result["events"])
            if not result["hasMore"]:
                return events
            cursor = result["cursor"]
        raise GraphQLError(f"run {run_id} has more than {max_pages} pages of events")

    def run_errors(self, run_id: str) -> list[str]:
        """The error messages of a run's events, for a failure message."""
        messages = []
        for event in self.run_events(run_id):
            error = event.get("error")
            if error:
                messages.append(f"{event['__typename']}: {error['message'].strip()}")
            elif event.get("level") == "ERROR":
                messages.append(f"{event.get('stepKey')}: {event['message']}")
        return messages

    def sensor_selector(self, sensor: str) -> dict[str, str]:
        return {**self.repository_selector(), "sensorName": sensor}

    def sensor(self, sensor: str) -> dict[str, Any] | None:
        """The sensor and its latest ticks, or ``None`` if the code location defines no such one."""
        result = self.client.execute(SENSOR_QUERY, {"selector": self.sensor_selector(sensor)})
        result = result["sensorOrError"]
        if result["__typename"] == "SensorNotFoundError":
            return None
        if result["__typename"] != "Sensor":
            raise GraphQLError(f"reading sensor {sensor} failed: {result}")
        return result

    def pause_automation(self) -> list[str]:
        """Turn off every running sensor and schedule (the UI's toggles); return their names."""
        result = self.client.execute(AUTOMATION_QUERY, {"selector": self.repository_selector()})
        repository = result["repositoryOrError"]
        if repository["__typename"] != "Repository":
            raise GraphQLError(f"reading the repository's automation failed: {repository}")
        paused = []
        for kind, mutation, field_name, state_key in (
            ("sensors", STOP_SENSOR_MUTATION, "stopSensor", "sensorState"),
            ("schedules", STOP_SCHEDULE_MUTATION, "stopRunningSchedule", "scheduleState"),
        ):
            for item in repository[kind]:
                if item[state_key]["status"] != "RUNNING":
                    continue
                answer = self.client.execute(mutation, {"id": item[state_key]["id"]})[field_name]
                if answer["__typename"] not in ("StopSensorMutationResult", "ScheduleStateResult"):
                    raise GraphQLError(f"stopping {item['name']} failed: {answer}")
                paused.append(item["name"])
        return paused

    def dismiss_community_dialog(self) -> None:
        """The first visit of a fresh instance opens a sign-up dialog over every page; this is
        the call its Skip button makes."""
        assert self.client.execute(SET_NUX_SEEN_MUTATION)["setNuxSeen"] is True

    def start_sensor(self, sensor: str) -> str:
        result = self.client.execute(
            START_SENSOR_MUTATION, {"selector": self.sensor_selector(sensor)}
        )
        result = result["startSensor"]
        if result["__typename"] != "Sensor":
            raise GraphQLError(f"starting sensor {sensor} failed: {result}")
        return result["sensorState"]["status"]


# --- the whole setup: databases, simulated sites, processes ----------------------------------


@dataclass
class SimulatedDeployment:
    """A running deployment reading simulated sites; what the tests get from their fixture."""

    deployment: DagsterDeployment
    ui: DagsterUI
    paused_automation: list[str]
    simulator: SimulatorServer
    dashboard_url: str
    site_keys: list[str]


@contextlib.contextmanager
def simulated_deployment(
    postgres_server_url: str,
    work_dir: Path,
    sites: Sequence[SimSite],
    *,
    with_daemon: bool = True,
    pause_automation: bool = True,
    timeout: float = 120.0,
) -> Iterator[SimulatedDeployment]:
    """Fresh instance and dashboard databases, the simulator serving ``sites``, a sites file
    with their key variables, and the processes; all of it torn down on exit, in reverse.

    With ``pause_automation`` the sensors and schedules (running by default) are turned off
    through the UI before the daemon starts: runs then happen only when a test asks for them.
    """
    with contextlib.ExitStack() as stack:
        instance_db = ScratchDatabase.create(postgres_server_url, "tp_e2e_dagster")
        stack.callback(instance_db.drop)
        # A dashboard database of its own: the run writes rows that other tests of the session
        # (which share the session database) must not see.
        dashboard_db = ScratchDatabase.create(postgres_server_url, "tp_e2e_dashboard")
        stack.callback(dashboard_db.drop)
        simulator = SimulatorServer(list(sites), port=0).start()
        stack.callback(simulator.stop)
        sites_file = write_sites_file(work_dir / "sites.yaml", simulator.sites_file_entries())
        env = {
            **instance_env(work_dir / "dagster_home", instance_db),
            DASHBOARD_DATABASE_URL_ENV: dashboard_db.sqlalchemy_url,
            SITES_FILE_ENV: str(sites_file),
            **simulator.api_key_env(),
        }
        deployment = DagsterDeployment(env=env, work_dir=work_dir, with_daemon=with_daemon)
        # Registered before start(): a start that times out still stops what did start.
        stack.callback(deployment.stop)
        client = GraphQLClient(deployment.url)
        stack.callback(client.close)
        ui = DagsterUI(client)
        paused: list[str] = []
        deployment.start(
            timeout=timeout,
            before_daemon=(lambda: paused.extend(ui.pause_automation()))
            if pause_automation
            else None,
        )
        yield SimulatedDeployment(
            deployment=deployment,
            ui=ui,
            paused_automation=paused,
            simulator=simulator,
            dashboard_url=dashboard_db.sqlalchemy_url,
            site_keys=[site.key for site in sites],
        )
