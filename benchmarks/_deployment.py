"""The production deployment on this machine, for the benchmarks that run through the daemon.

``dagster-daemon run`` as a subprocess under a reaping wrapper (``_common.py reap``), measured
whole; the instance prepared as a deploy leaves it (site partitions registered, the sensors and
schedules a benchmark does not want stopped, last night's nightly tick pending so that the
scheduler catches it up, or replayed for a second sync); and the wait for the runs the tick
asked for. ``bench_nightly.py`` and ``soak.py`` share it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import _common as common

JOB_NAME = "template_site_sync"
NIGHTLY_SCHEDULE = "nightly_template_sync"
LOCATION_NAME = "template_pipeline"
WORKSPACE = common.REPO_ROOT / "workspace.yaml"
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 2.0
# The scheduler's first iteration comes once the daemon has loaded the code location.
NO_TICK_TIMEOUT_S = 300.0


# --------------------------------------------------------------------------------------------
# The deployment's processes and their CPU time


def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` itself; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5), counted here from the state (field 3).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def process_kind(cmdline: str) -> str:
    """Which part of the deployment a process is, from its command line."""
    if "dagster-daemon" in cmdline:
        return "daemon"
    if "api grpc" in cmdline:
        return "code server"
    if "spawn_main" in cmdline and "resource_tracker" not in cmdline:
        return "run worker"
    if "watch_orphans" in cmdline or cmdline.startswith("tail "):
        return "compute log capture"
    return "other"


class Deployment:
    """``dagster-daemon run -w workspace.yaml`` and everything it starts, measured whole.

    The daemon runs under a reaping wrapper (``_common.py reap``): every process of the tree
    is waited for by it, so its ``wait4`` CPU time is exactly the tree's. A sampler thread reads
    ``/proc`` every quarter of a second to split that time by kind of process (run workers, code
    servers, the daemon, compute log capture); a process's last quarter second can be missed,
    so the split is a slight underestimate, the total is not.
    """

    def __init__(
        self, env: dict[str, str], workdir: Path, *, workspace: Path = WORKSPACE, label: str = ""
    ) -> None:
        self.env = env
        self.workspace = workspace
        self.log_path = workdir / f"daemon{label}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.cpu_by_pid: dict[int, tuple[str, float]] = {}
        self.cmdlines: dict[int, str] = {}
        self.total_cpu_s: float | None = None
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> Deployment:
        executable = Path(sys.executable).with_name("dagster-daemon")
        daemon = [str(executable), "run", "-w", str(self.workspace)]
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                common.reaped_command(daemon),
                env=self.env,
                cwd=common.REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._sampler = threading.Thread(target=self._sample_loop, daemon=True)
        self._sampler.start()
        return self

    def _sample_loop(self) -> None:
        kinds: dict[int, str] = {}
        while not self._stop_sampling.wait(0.25):
            self.sample(kinds)

    def sample(self, kinds: dict[int, str] | None = None) -> None:
        kinds = {} if kinds is None else kinds
        assert self.popen is not None
        for pid in common.descendants(self.popen.pid):
            cpu = _proc_cpu(pid)
            if cpu is None:
                continue
            if pid not in kinds:
                cmdline = _cmdline(pid)
                if not cmdline:
                    continue  # exiting, or not exec'd yet: classified at the next look
                kinds[pid] = process_kind(cmdline)
                self.cmdlines[pid] = cmdline
            previous = self.cpu_by_pid.get(pid, ("", 0.0))[1]
            self.cpu_by_pid[pid] = (kinds[pid], max(previous, cpu))

    def check_alive(self) -> None:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise common.BenchmarkError(
                f"dagster-daemon exited with code {self.popen.returncode}:\n"
                + log_tail(self.log_path)
            )

    def run_workers(self) -> list[int]:
        assert self.popen is not None
        return [
            pid
            for pid in common.descendants(self.popen.pid)
            if process_kind(_cmdline(pid)) == "run worker"
        ]

    def cpu_by_kind(self) -> dict[str, float]:
        totals: Counter[str] = Counter()
        for kind, cpu in self.cpu_by_pid.values():
            totals[kind] += cpu
        return dict(totals)

    def stop(self, timeout: float = 90.0) -> None:
        """Stop the daemon (the wrapper passes SIGTERM on) and wait for the whole tree."""
        popen = self.popen
        if popen is None or self.total_cpu_s is not None:
            return
        self._stop_sampling.set()
        with contextlib.suppress(ProcessLookupError):
            os.kill(popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                popen.returncode = os.waitstatus_to_exitcode(status)
                self.total_cpu_s = usage.ru_utime + usage.ru_stime
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # The wrapper did not manage: nothing of the tree may survive the benchmark.
        for pid in [*common.descendants(popen.pid), popen.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(popen.pid, 0)
        raise common.BenchmarkError(f"the deployment did not stop within {timeout:.0f} s")

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def log_tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    return text if len(text) <= limit else "...\n" + text[-limit:]


# --------------------------------------------------------------------------------------------
# The instance


def last_nightly_tick(now: datetime) -> datetime:
    """The latest 02:00 Europe/Paris at or before ``now`` (the schedule's cron)."""
    from template_pipeline.defs.schedules import SCHEDULE_TIMEZONE

    local = now.astimezone(ZoneInfo(SCHEDULE_TIMEZONE))
    tick = local.replace(hour=2, minute=0, second=0, microsecond=0)
    if tick > local:
        tick = (local - timedelta(days=1)).replace(hour=2, minute=0, second=0, microsecond=0)
    return tick


def prepare_instance(
    instance: Any,
    site_keys: Sequence[str],
    tick: datetime,
    *,
    workspace: Path = WORKSPACE,
    keep_sensors: Collection[str] = (),
) -> dict[str, str]:
    """Partitions registered, sensors (but ``keep_sensors``) and other schedules stopped, the
    nightly tick of ``tick`` pending.

    Returns what was done to each instigator, for the report.
    """
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from template_pipeline.defs.partitions import sites_partitions

    # What the sites sensor would have done when the sites were configured.
    instance.add_dynamic_partitions(sites_partitions.name, list(site_keys))
    done: dict[str, str] = {}
    target = WorkspaceFileTarget(paths=[str(workspace)])
    with WorkspaceProcessContext(instance, target) as context:
        location = context.create_request_context().get_code_location(LOCATION_NAME)
        for repository in location.get_repositories().values():
            for sensor in repository.get_sensors():
                if sensor.name in keep_sensors:
                    done[sensor.name] = "left as deployed (running)"
                    continue
                instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
                done[sensor.name] = "stopped"
            for schedule in repository.get_schedules():
                if schedule.name != NIGHTLY_SCHEDULE:
                    instance.stop_schedule(
                        schedule.get_remote_origin_id(), schedule.selector_id, schedule
                    )
                    done[schedule.name] = "stopped"
                    continue
                arm_schedule(instance, schedule, tick)
                done[schedule.name] = f"running, tick of {tick.isoformat()} pending"
    if NIGHTLY_SCHEDULE not in done:
        raise common.BenchmarkError(f"the code location has no schedule {NIGHTLY_SCHEDULE!r}")
    return done


def arm_schedule(instance: Any, schedule: Any, tick: datetime) -> None:
    """The schedule running since a minute before ``tick``, with no tick of its own yet: the
    daemon's scheduler evaluates every tick from ``tick`` on (the catch-up after a deploy).

    Only the latest tick is evaluated (the nightly job's runs are not a partition set's), and
    a tick whose runs exist already asks for nothing new (see :func:`replay_nightly`).
    """
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        ScheduleInstigatorData,
    )

    origin_id, selector_id = schedule.get_remote_origin_id(), schedule.selector_id
    instance.purge_ticks(origin_id, selector_id, before=time.time() + 3600.0)
    state = InstigatorState(
        schedule.get_remote_origin(),
        InstigatorType.SCHEDULE,
        InstigatorStatus.RUNNING,
        ScheduleInstigatorData(schedule.cron_schedule, start_timestamp=tick.timestamp() - 60),
    )
    if instance.get_instigator_state(origin_id, selector_id) is None:
        instance.add_instigator_state(state)
    else:
        instance.update_instigator_state(state)


def replay_nightly(
    instance: Any, tick: datetime, run_ids: Collection[str], *, workspace: Path = WORKSPACE
) -> None:
    """The nightly tick of ``tick`` made pending again, for a second full sync of the night.

    The scheduler skips a request whose run exists already (same run key, same tick): the run
    keys of ``run_ids`` (the first sync's runs) get a suffix, then the schedule is re-armed
    (:func:`arm_schedule`). The daemon must be stopped (it remembers its last iteration).
    """
    from dagster._core.storage.tags import RUN_KEY_TAG
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.tags.get(RUN_KEY_TAG):
            instance.add_run_tags(run_id, {RUN_KEY_TAG: f"{run.tags[RUN_KEY_TAG]}:replayed"})
    target = WorkspaceFileTarget(paths=[str(workspace)])
    with WorkspaceProcessContext(instance, target) as context:
        location = context.create_request_context().get_code_location(LOCATION_NAME)
        for repository in location.get_repositories().values():
            if repository.has_schedule(NIGHTLY_SCHEDULE):
                arm_schedule(instance, repository.get_schedule(NIGHTLY_SCHEDULE), tick)
                return
    raise common.BenchmarkError(f"the code location has no schedule {NIGHTLY_SCHEDULE!r}")


def run_records(instance: Any, exclude: Collection[str] = ()) -> list[Any]:
    """The sync job's runs, but those in ``exclude`` (run ids)."""
    import dagster as dg

    records = instance.get_run_records(filters=dg.RunsFilter(job_name=JOB_NAME))
    return [r for r in records if r.dagster_run.run_id not in exclude]


def wait_for_runs(
    instance: Any,
    deployment: Deployment,
    expected: int,
    timeout: float,
    *,
    exclude: Collection[str] = (),
) -> list[Any]:
    """Poll the instance until ``expected`` runs (not in ``exclude``) exist and all have ended."""
    started = time.monotonic()
    last_report = 0.0
    while True:
        deployment.check_alive()
        records = run_records(instance, exclude)
        statuses = Counter(r.dagster_run.status.value for r in records)
        ended = sum(statuses[s] for s in TERMINAL_STATUSES)
        elapsed = time.monotonic() - started
        if elapsed - last_report >= 30:
            last_report = elapsed
            common.progress(
                f"{elapsed:.0f} s: {len(records)}/{expected} runs created, {ended} ended "
                f"({', '.join(f'{k.lower()} {v}' for k, v in sorted(statuses.items()))})"
            )
        if len(records) >= expected and ended == len(records):
            # A schedule that asked for fewer runs than expected would wait forever otherwise.
            return records
        if not records and elapsed > NO_TICK_TIMEOUT_S:
            raise common.BenchmarkError(
                f"the scheduler created no run within {NO_TICK_TIMEOUT_S:.0f} s of the daemon's "
                "start (did it skip last night's tick?); daemon log:\n"
                + log_tail(deployment.log_path)
            )
        if elapsed > timeout:
            raise common.BenchmarkError(
                f"only {ended} of {expected} runs ended within {timeout:.0f} s; daemon log:\n"
                + log_tail(deployment.log_path)
            )
        time.sleep(POLL_S)
