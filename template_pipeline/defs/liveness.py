"""Dead runs: a sync run whose process died never blocks its sites' queue.

A run killed with SIGKILL (an out-of-memory kill, a PaaS restart past its grace, a crash) stays
STARTED in the instance: the run queue's per-site and per-batch limits keep counting it, and
Dagster's run monitoring cannot tell, because the default run launcher does not report on its
run workers' health and ``template-pipeline sync`` runs in its own process, with no launcher.

So each sync run says where it runs and that it is alive: its step tags the run with the host
and pid of its process (the CLI, or the run worker) and refreshes a heartbeat tag every
``HEARTBEAT_S``. :func:`sweep_dead_runs` (the dead-runs sensor, every minute, and each
``sync`` before it starts) fails every started sync run whose process on this host is gone, or
whose heartbeat is older than ``TEMPLATE_RUN_DEAD_AFTER_S`` (any host), with a message saying
why. A run that was being canceled is marked canceled instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg

from template_pipeline.defs.tags import HEARTBEAT_TAG, HOST_TAG, PID_TAG
from template_pipeline.domain import config
from template_pipeline.store.locks import alive

logger = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
# Runs that may be dead: STARTING too (its process died before the step reached its tags has no
# tags, and stays with Dagster's start timeout; with tags it is judged here).
_ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def dead_after_s() -> float:
    return max(3 * HEARTBEAT_S, config.number(config.RUN_DEAD_AFTER_S))


def _now_text(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


def liveness_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), HEARTBEAT_TAG: _now_text()}


@contextmanager
def heartbeat(
    instance: dg.DagsterInstance, run_id: str, every_s: float = HEARTBEAT_S
) -> Iterator[None]:
    """Tag the run with this process and refresh its heartbeat while the body runs."""
    instance.add_run_tags(run_id, liveness_tags())
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every_s):
            try:
                instance.add_run_tags(run_id, {HEARTBEAT_TAG: _now_text()})
            except Exception:  # a missed beat is not a failure; the next one may land
                logger.warning("run %s: could not refresh its heartbeat", run_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    reason: str


def why_dead(run: dg.DagsterRun, *, now: datetime, dead_after: float) -> str | None:
    """Why ``run`` (a started sync run) is dead, or None when it may still be alive."""
    host, pid, beat = (run.tags.get(tag) for tag in (HOST_TAG, PID_TAG, HEARTBEAT_TAG))
    if not host or not pid:
        return None  # not tagged yet: Dagster's start timeout and max runtime apply
    if host == socket.gethostname() and pid.isdigit() and not alive(int(pid)):
        return f"its process {pid} on {host} is gone (killed or crashed)"
    try:
        last = datetime.fromisoformat(beat) if beat else None
    except ValueError:
        last = None
    if last is not None and (now - last).total_seconds() > dead_after:
        return (
            f"its process {pid} on {host} has not sent a heartbeat since {beat} "
            f"(more than {dead_after:g} s)"
        )
    return None


def sweep_dead_runs(
    instance: dg.DagsterInstance, job_name: str, *, now: datetime | None = None
) -> list[DeadRun]:
    """Fail (or mark canceled) every started run of ``job_name`` whose process is dead."""
    now = now or datetime.now(timezone.utc)
    dead_after = dead_after_s()
    swept: list[DeadRun] = []
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=_ACTIVE)):
        reason = why_dead(run, now=now, dead_after=dead_after)
        if reason is None:
            continue
        message = f"template-pipeline: this run is dead: {reason}; its writes were rolled back"
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message=message)
        else:
            instance.report_run_failed(run, message=message)
        logger.warning("run %s: %s", run.run_id, message)
        swept.append(DeadRun(run.run_id, reason))
    return swept
