"""The ``retention`` asset, its job and schedule, and the purge of Dagster's runs.

Under test: finished runs last updated before the limit are deleted with their event logs, and
younger ones stay; an unfinished run (not started, starting, started, canceling) is never
deleted, whatever its age; runs named in ``keep`` stay; a dry run counts and deletes nothing;
the asset purges the Dashboard database and the instance and reports a count per kind as
metadata (a dry run through its config changes nothing), and a bad limit fails it naming the
variable; the daily schedule runs at 04:30 Paris time and targets the job that materialises the
asset.
"""

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import dagster as dg
import psycopg
import pytest

from template_pipeline.defs.resources import DashboardDatabase
from template_pipeline.defs.retention import (
    RETENTION_JOB_NAME,
    purge_dagster_runs,
    retention,
    template_retention_job,
)
from template_pipeline.defs.schedules import DAILY_RETENTION_CRON, daily_template_retention
from template_pipeline.store import db, migrate
from template_pipeline_tests.fixtures.catalog import scratch_database
from template_pipeline_tests.fixtures.helpers import query

LATER = datetime.now(timezone.utc) + timedelta(days=31)


@dg.asset
def tiny() -> int:
    return 1


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _finished_run(instance: dg.DagsterInstance) -> str:
    result = dg.materialize([tiny], instance=instance)
    assert result.success
    return result.run_id


def _unfinished_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> str:
    run = dg.DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=status)
    instance.add_run(run)
    return run.run_id


def _run_ids(instance: dg.DagsterInstance) -> set[str]:
    return {r.dagster_run.run_id for r in instance.get_run_records()}


def test_finished_runs_older_than_the_limit_go_with_their_event_logs(instance):
    finished = [_finished_run(instance) for _ in range(3)]
    assert instance.all_logs(finished[0])

    young = purge_dagster_runs(instance, 30)
    assert young.rows == 0 and _run_ids(instance) == set(finished)

    done = purge_dagster_runs(instance, 30, now=LATER, page=2)

    assert (done.kind, done.rows, done.days) == ("dagster_runs", 3, 30)
    assert _run_ids(instance) == set()
    assert all(instance.all_logs(run_id) == [] for run_id in finished)


def test_an_unfinished_run_is_never_deleted(instance):
    finished = _finished_run(instance)
    unfinished = {
        _unfinished_run(instance, status)
        for status in (
            dg.DagsterRunStatus.STARTED,
            dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.CANCELING,
            dg.DagsterRunStatus.NOT_STARTED,
        )
    }

    done = purge_dagster_runs(instance, 1, now=LATER + timedelta(days=3650), page=2)

    assert done.rows == 1
    assert _run_ids(instance) == unfinished
    assert finished not in _run_ids(instance)


def test_kept_runs_stay_and_a_dry_run_deletes_nothing(instance):
    runs = [_finished_run(instance) for _ in range(4)]
    before = _run_ids(instance)

    counted = purge_dagster_runs(instance, 30, keep={runs[1]}, now=LATER, dry_run=True, page=1)
    assert counted.rows == 3 and _run_ids(instance) == before

    done = purge_dagster_runs(instance, 30, keep={runs[1]}, now=LATER, page=1)
    assert done.rows == 3 and _run_ids(instance) == {runs[1]}


@pytest.fixture
def scratch(postgres_server_url) -> Iterator[str]:
    """A database of its own: the asset purges database-wide."""
    with scratch_database(postgres_server_url, "tp_retention_asset") as url:
        migrate.upgrade(url)
        yield url


def _old_health_rows(url: str) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=40)
    with psycopg.connect(db.libpq_conninfo(url)) as conn:
        for at in (old, old + timedelta(hours=1), datetime.now(timezone.utc)):
            conn.execute(
                "INSERT INTO template_site_health (site, checked_at, status, probe) "
                "VALUES ('s', %s, 'up', 'ok')",
                (at,),
            )


def _materialize(instance, url: str, **config) -> dict:
    result = dg.materialize(
        [retention],
        instance=instance,
        resources={"dashboard_database": DashboardDatabase(database_url=url)},
        run_config={"ops": {"retention": {"config": config}}} if config else None,
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("retention")
    return {k: v.value for k, v in materialization.metadata.items()}


def test_the_asset_purges_and_reports_a_count_per_kind(instance, scratch):
    _old_health_rows(scratch)
    old_run = _finished_run(instance)

    dry = _materialize(instance, scratch, dry_run=True, dagster_runs_days=1)
    assert (dry["health"], dry["dry_run"]) == (2, True)
    assert len(query(scratch, "SELECT 1 FROM template_site_health")) == 3
    assert old_run in _run_ids(instance)
    assert "would remove" in dry["purged"]

    done = _materialize(instance, scratch)
    assert {k: done[k] for k in ("rejects", "health", "webhook_events", "alerts")} == {
        "rejects": 0,
        "health": 2,
        "webhook_events": 0,
        "alerts": 0,
    }
    # The run is minutes old, younger than the 30 days of the default limit.
    assert (done["dagster_runs"], done["total"], done["dry_run"]) == (0, 2, False)
    assert len(query(scratch, "SELECT 1 FROM template_site_health")) == 1
    assert "| health | template_site_health | 14 days |" in done["purged"]


def test_a_bad_limit_fails_the_materialisation_naming_the_variable(instance, scratch, monkeypatch):
    monkeypatch.setenv("TEMPLATE_RETENTION_HEALTH_DAYS", "soon")
    with pytest.raises(dg.Failure, match="TEMPLATE_RETENTION_HEALTH_DAYS"):
        dg.materialize(
            [retention],
            instance=instance,
            resources={"dashboard_database": DashboardDatabase(database_url=scratch)},
        )


def test_the_daily_schedule_targets_the_retention_job():
    from template_pipeline.definitions import defs

    schedule = defs.resolve_schedule_def("daily_template_retention")
    assert schedule.cron_schedule == DAILY_RETENTION_CRON == "30 4 * * *"
    assert schedule.execution_timezone == "Europe/Paris"
    assert schedule.job_name == RETENTION_JOB_NAME == template_retention_job.name
    job = defs.resolve_job_def(RETENTION_JOB_NAME)
    assert job.asset_layer.executable_asset_keys == {dg.AssetKey("retention")}
    assert not job.partitions_def
    node = defs.resolve_asset_graph().get(dg.AssetKey("retention"))
    # Not in the entities' group: their "Materialize all" must not purge.
    assert node.group_name == "maintenance" and node.partitions_def is None

    scheduled = datetime(2026, 3, 29, 4, 30, tzinfo=timezone(timedelta(hours=2)))
    with dg.build_schedule_context(scheduled_execution_time=scheduled) as context:
        request = daily_template_retention(context)
    assert request.run_key == "retention:2026-03-29"
