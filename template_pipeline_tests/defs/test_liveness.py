"""Interrupts and dead runs, without a site: the batch's and the sweeper's own rules.

Behaviour under test: a stop request (the CLI's SIGINT / SIGTERM) or Dagster's interrupt of the
step ends the batch as interrupted, raising ``DagsterExecutionInterruptedError``: the site being
synced is not classified as a failure and not tried again, the sites not started are not
started; a run is dead when its process on this host is gone or its heartbeat is stale, alive
otherwise, and untagged runs are left to Dagster; the sweeper fails dead started runs (marks a
dead canceling run canceled) with a message saying why, and leaves the others alone; the
heartbeat tags a run with its process and refreshes the heartbeat; the CLI marks the runs it
started and did not finish failed on its way out (canceled after a signal).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from template_pipeline.defs.liveness import heartbeat, sweep_dead_runs, why_dead
from template_pipeline.defs.resources import TemplateCheckSettings
from template_pipeline.defs.sync import batch as batch_module
from template_pipeline.defs.sync.outcomes import EntityOutcome, Failure, SiteReport
from template_pipeline.defs.sync.site import SyncSettings
from template_pipeline.defs.tags import HEARTBEAT_TAG, HOST_TAG, PID_TAG
from template_pipeline.domain import stop
from template_pipeline.domain.sites import Site, SiteRegistry
from template_pipeline.source import ClientSettings

JOB = "template_site_sync"
NOW = datetime(2026, 12, 2, 1, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _no_stop_left():
    stop.clear()
    yield
    stop.clear()


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)

    warning = error = info


def _settings() -> SyncSettings:
    return SyncSettings(
        database_url="postgresql://unused@127.0.0.1:1/unused",
        run_id="run-interrupt",
        client=ClientSettings(),
        checks=TemplateCheckSettings(),
        entities=frozenset({"paintings"}),
        check_keys=frozenset(),
    )


def _registry(keys: list[str]) -> SiteRegistry:
    sites = tuple(
        Site(key=k, base_url=f"http://127.0.0.1:1/{k}/", api_key_env="TP_X", name=k, api_key="x")
        for k in keys
    )
    return SiteRegistry(sites=sites, source="the test")


@pytest.mark.parametrize("interrupt", ["stop request", "dagster"])
@pytest.mark.parametrize("workers", [1, 3])
def test_an_interrupt_ends_the_batch_without_a_retry(monkeypatch, interrupt, workers):
    calls: list[str] = []

    def fake_sync_site(site: Site, settings: SyncSettings) -> SiteReport:
        calls.append(site.key)
        if site.key == "b":
            if interrupt == "dagster":
                raise dg.DagsterExecutionInterruptedError()
            stop.request("stopped by SIGTERM")
            stop.check()
        time.sleep(0.3 if site.key != "a" else 0)
        report = SiteReport(site=site.key)
        # A failure that may heal: without the interrupt it would be tried again.
        report.entities["paintings"] = EntityOutcome(
            "paintings", failure=Failure("database", "connection lost", True)
        )
        return report

    monkeypatch.setattr(batch_module, "sync_site", fake_sync_site)
    log = _Log()
    sites = ["a", "b", "c", "d", "e"]
    with pytest.raises(dg.DagsterExecutionInterruptedError):
        list(
            batch_module.run_batch(
                log, sites, _registry(sites), _settings(), workers=workers, retry_pause_s=0
            )
        )
    assert calls.count("b") == 1 and calls.count("a") == 1  # nothing tried twice
    if interrupt == "stop request":  # the sites queued behind the stop never start
        assert len(calls) < len(sites)
    assert stop.requested()
    assert any("sync interrupted" in line for line in log.lines)


def _gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


def _run(tags: dict[str, str]) -> dg.DagsterRun:
    return dg.DagsterRun(job_name=JOB, run_id="r" * 32, tags=tags)


def test_a_run_is_dead_when_its_local_process_is_gone_or_its_heartbeat_is_stale():
    here, beat = socket.gethostname(), "2026-12-02T00:59:00Z"
    alive = {HOST_TAG: here, PID_TAG: str(os.getpid()), HEARTBEAT_TAG: beat}
    assert why_dead(_run(alive), now=NOW, dead_after=300) is None
    gone = {**alive, PID_TAG: str(_gone_pid())}
    assert "is gone" in why_dead(_run(gone), now=NOW, dead_after=300)
    elsewhere = {HOST_TAG: "another-host", PID_TAG: "1", HEARTBEAT_TAG: beat}
    assert why_dead(_run(elsewhere), now=NOW, dead_after=300) is None
    stale = {**elsewhere, HEARTBEAT_TAG: "2026-12-02T00:50:00Z"}
    reason = why_dead(_run(stale), now=NOW, dead_after=300)
    assert reason == (
        "its process 1 on another-host has not sent a heartbeat since 2026-12-02T00:50:00Z "
        "(more than 300 s)"
    )
    assert why_dead(_run({}), now=NOW, dead_after=300) is None  # Dagster's start timeout's


def test_the_sweeper_fails_dead_runs_only():
    with dg.DagsterInstance.ephemeral() as instance:
        here = socket.gethostname()
        beat = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        tags = {
            "dead": {HOST_TAG: here, PID_TAG: str(_gone_pid()), HEARTBEAT_TAG: beat},
            "stale": {HOST_TAG: "far-away", PID_TAG: "7", HEARTBEAT_TAG: old},
            "alive": {HOST_TAG: here, PID_TAG: str(os.getpid()), HEARTBEAT_TAG: beat},
            "untagged": {},
        }
        runs = {
            name: create_run_for_test(
                instance, job_name=JOB, status=dg.DagsterRunStatus.STARTED, tags=value
            )
            for name, value in tags.items()
        }
        canceling = create_run_for_test(
            instance,
            job_name=JOB,
            status=dg.DagsterRunStatus.CANCELING,
            tags={**tags["dead"]},
        )
        other_job = create_run_for_test(
            instance, job_name="other", status=dg.DagsterRunStatus.STARTED, tags=tags["dead"]
        )

        swept = sweep_dead_runs(instance, JOB)

        assert {d.run_id for d in swept} == {
            runs["dead"].run_id,
            runs["stale"].run_id,
            canceling.run_id,
        }

        def status(run: dg.DagsterRun) -> dg.DagsterRunStatus:
            return instance.get_run_by_id(run.run_id).status

        assert status(runs["dead"]) == status(runs["stale"]) == dg.DagsterRunStatus.FAILURE
        assert status(canceling) == dg.DagsterRunStatus.CANCELED
        assert status(runs["alive"]) == status(runs["untagged"]) == dg.DagsterRunStatus.STARTED
        assert status(other_job) == dg.DagsterRunStatus.STARTED
        [event] = instance.get_records_for_run(
            runs["stale"].run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        assert "has not sent a heartbeat since" in event.event_log_entry.message
        assert sweep_dead_runs(instance, JOB) == []


def test_the_heartbeat_tags_the_run_and_keeps_beating():
    with dg.DagsterInstance.ephemeral() as instance:
        run = create_run_for_test(instance, job_name=JOB, status=dg.DagsterRunStatus.STARTED)
        # Read while the beating thread waits (the ephemeral instance's SQLite is one writer).
        with heartbeat(instance, run.run_id, every_s=0.3):
            tagged = instance.get_run_by_id(run.run_id).tags
            time.sleep(1.6)  # beats at 0.3 s intervals, the last one in a later second
        assert tagged[HOST_TAG] == socket.gethostname()
        assert tagged[PID_TAG] == str(os.getpid())
        later = instance.get_run_by_id(run.run_id).tags[HEARTBEAT_TAG]
        assert later > tagged[HEARTBEAT_TAG]


@pytest.mark.parametrize(("stopped", "expected"), [(False, "FAILURE"), (True, "CANCELED")])
def test_the_cli_marks_the_runs_it_did_not_finish_on_its_way_out(stopped, expected):
    from template_pipeline.apps.sync import settle_runs

    with dg.DagsterInstance.ephemeral() as instance:
        unfinished = create_run_for_test(instance, job_name=JOB, status=dg.DagsterRunStatus.STARTED)
        done = create_run_for_test(instance, job_name=JOB, status=dg.DagsterRunStatus.SUCCESS)
        if stopped:
            stop.request("stopped by SIGTERM")
        marked = settle_runs(instance, [unfinished.run_id, done.run_id, "never-created"])
        assert marked == [unfinished.run_id]
        assert instance.get_run_by_id(unfinished.run_id).status.value == expected
        assert instance.get_run_by_id(done.run_id).status == dg.DagsterRunStatus.SUCCESS
