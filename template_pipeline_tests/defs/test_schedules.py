"""Schedules and the health job: what they ask for at a given time, and what the job records.

The nightly schedule asks for one tagged run per registered site partition at 02:00 in Paris;
the hourly schedule launches the health job, which records each site's probe in
``template_site_health`` (a transient failure tried twice), alerts when a site has failed two
probes in a row (saying since when) and when it comes back, never for one failed probe, and
evaluates every site's freshness checks. The definitions load with all of it and no secret.
"""

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from template_pipeline.apps.simulator import Faults, SimSite, SimulatorServer
from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.health import HEALTH_JOB_NAME, template_health_job
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import (
    AlertSinks,
    DashboardDatabase,
    TemplateCheckSettings,
    TemplateClientResource,
)
from template_pipeline.defs.run_requests import RANGE_END_TAG, RANGE_START_TAG, windows
from template_pipeline.defs.schedules import hourly_template_health, nightly_template_sync
from template_pipeline.defs.tags import BATCH_TAG, SITE_TAG, TRIGGER_TAG
from template_pipeline.domain.sites import write_sites_file
from template_pipeline.store import db
from template_pipeline.store.ops_tables import template_alerts, template_site_health

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


@pytest.fixture(scope="module")
def _schedule_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def schedule_instance(_schedule_instance) -> dg.DagsterInstance:
    """A persistent test instance (schedule contexts need one), without site partitions."""
    for key in _schedule_instance.get_dynamic_partitions(sites_partitions.name):
        _schedule_instance.delete_dynamic_partition(sites_partitions.name, key)
    return _schedule_instance


def test_definitions_load_with_schedules_sensors_and_checks():
    from template_pipeline.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    assert {s.name for s in repository.schedule_defs} == {
        "nightly_template_sync",
        "hourly_template_health",
        "daily_template_retention",
        "daily_personal_data_erasure",
    }
    assert {s.name for s in repository.sensor_defs} == {
        "template_sites_sensor",
        "template_changes_sensor",
        "template_webhook_sensor",
        "template_alerts_sensor",
        "template_fleet_sensor",
        "template_fleet_failure_sensor",
        "template_dead_runs_sensor",
    }
    assert repository.has_job(HEALTH_JOB_NAME)
    check_keys = repository.asset_graph.asset_check_keys
    assert dg.AssetCheckKey(dg.AssetKey("orders"), "reject_rate") in check_keys


def test_nightly_schedule_is_0200_in_paris():
    assert nightly_template_sync.cron_schedule == "0 2 * * *"
    assert nightly_template_sync.execution_timezone == "Europe/Paris"
    assert nightly_template_sync.job_name == template_site_sync_job.name
    assert nightly_template_sync.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.parametrize(
    ("scheduled", "day"),
    [
        # Summer time: 02:00 in Paris is 00:00 UTC.
        (datetime(2026, 7, 1, 2, 0, tzinfo=PARIS), "2026-07-01"),
        (datetime(2026, 7, 1, 0, 0, tzinfo=timezone.utc), "2026-07-01"),
        # The night clocks go forward.
        (datetime(2026, 3, 29, 2, 0, tzinfo=PARIS), "2026-03-29"),
        # Winter time: 01:00 UTC.
        (datetime(2026, 1, 15, 1, 0, tzinfo=timezone.utc), "2026-01-15"),
    ],
)
def test_nightly_schedule_requests_one_run_per_window_of_sites(schedule_instance, scheduled, day):
    instance = schedule_instance
    instance.add_dynamic_partitions(sites_partitions.name, ["studio-b", "atelier-a"])
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=scheduled)
    [request] = nightly_template_sync(context)
    # A partition range, in the order the sites were registered.
    assert request.partition_key is None
    assert request.tags[RANGE_START_TAG] == "studio-b"
    assert request.tags[RANGE_END_TAG] == "atelier-a"
    assert request.tags[BATCH_TAG] == "studio-b..atelier-a"
    assert request.tags[TRIGGER_TAG] == "nightly"
    assert int(request.tags[dg.MAX_RUNTIME_SECONDS_TAG]) > 0
    assert request.run_key == f"nightly:{day}:studio-b..atelier-a"
    assert request.asset_selection is None  # every asset of the sites


def test_nightly_windows_follow_sites_per_run(schedule_instance, monkeypatch):
    monkeypatch.setenv("TEMPLATE_SITES_PER_RUN", "1")
    schedule_instance.add_dynamic_partitions(sites_partitions.name, ["studio-b", "atelier-a"])
    context = dg.build_schedule_context(
        instance=schedule_instance, scheduled_execution_time=datetime(2026, 7, 1, 2, tzinfo=PARIS)
    )
    requests = nightly_template_sync(context)
    # One site a run: single-partition runs, tagged with their site for the queue's limit.
    assert [r.partition_key for r in requests] == ["studio-b", "atelier-a"]
    assert [r.tags[SITE_TAG] for r in requests] == ["studio-b", "atelier-a"]
    assert all(RANGE_START_TAG not in r.tags for r in requests)


@pytest.mark.parametrize(
    ("wanted", "size", "gap", "expected"),
    [
        (None, 3, 0, [["a", "b", "c"], ["d", "e", "f"], ["g"]]),
        ({"a", "b", "e"}, 50, 0, [["a", "b"], ["e"]]),
        # Up to two unchanged sites between two changed ones are taken along.
        ({"a", "b", "e"}, 50, 2, [["a", "b", "c", "d", "e"]]),
        ({"a", "g"}, 50, 2, [["a"], ["g"]]),
        ({"a", "c", "e", "g"}, 3, 1, [["a", "b", "c"], ["e", "f", "g"]]),
        (set(), 50, 5, []),
    ],
)
def test_windows_of_sites(wanted, size, gap, expected):
    assert windows(list("abcdefg"), wanted, size=size, max_gap=gap) == expected


def test_nightly_schedule_skips_without_sites(schedule_instance):
    context = dg.build_schedule_context(
        instance=schedule_instance, scheduled_execution_time=datetime(2026, 7, 1, 2, tzinfo=PARIS)
    )
    result = nightly_template_sync(context)
    assert isinstance(result, dg.SkipReason)
    assert "template_sites_sensor" in result.skip_message


def test_hourly_health_schedule_launches_the_health_job(schedule_instance):
    assert hourly_template_health.job_name == HEALTH_JOB_NAME
    assert hourly_template_health.execution_timezone == "Europe/Paris"
    scheduled = datetime(2026, 7, 1, 14, 10, tzinfo=PARIS)
    request = hourly_template_health(
        dg.build_schedule_context(instance=schedule_instance, scheduled_execution_time=scheduled)
    )
    assert request.run_key == "health:2026-07-01T12:10:00+00:00"
    assert request.tags[TRIGGER_TAG] == "hourly-health"


@pytest.fixture
def health_sites(tmp_path, monkeypatch) -> Iterator[tuple[list[str], str]]:
    up, blip, flaky = (f"hlt-{uuid.uuid4().hex[:6]}" for _ in range(3))
    sites = [
        SimSite(key=up, api_key="k-up", paintings=3, users=1, orders=1),
        # Each probe tries a transient failure twice. Down at the first probe only: no alert.
        SimSite(
            key=blip,
            api_key="k-bl",
            paintings=3,
            users=1,
            orders=1,
            faults=Faults(script=[503] * 2),
        ),
        # Down at two probes in a row: alerted at the second, back up at the third.
        SimSite(
            key=flaky,
            api_key="k-fl",
            paintings=3,
            users=1,
            orders=1,
            faults=Faults(script=[503] * 4),
        ),
    ]
    with SimulatorServer(sites) as server:
        path = write_sites_file(tmp_path / "sites.yaml", server.sites_file_entries())
        for name, value in server.api_key_env().items():
            monkeypatch.setenv(name, value)
        yield [up, blip, flaky], str(path)


def test_health_job_alerts_after_consecutive_failures(instance, database_url, health_sites):
    (up, blip, flaky), sites_file = health_sites
    instance.add_dynamic_partitions(sites_partitions.name, [up, blip, flaky])
    resources = {
        "template_client": TemplateClientResource(sites_file=sites_file, probe_retry_pause_s=0.01),
        "dashboard_database": DashboardDatabase(database_url=database_url),
        "template_check_settings": TemplateCheckSettings(),
        "alert_sinks": AlertSinks(),
    }
    job = template_health_job
    runs = [job.execute_in_process(instance=instance, resources=resources) for _ in range(3)]
    assert all(run.success for run in runs)

    with db.get_engine(database_url).connect() as conn:
        probes = conn.execute(
            sa.select(template_site_health)
            .where(template_site_health.c.site.in_([up, blip, flaky]))
            .order_by(template_site_health.c.id)
        ).all()
        alerts = conn.execute(
            sa.select(template_alerts)
            .where(template_alerts.c.site.in_([up, blip, flaky]))
            .order_by(template_alerts.c.id)
        ).all()
    by_site = {
        site: [(p.status, p.changed) for p in probes if p.site == site]
        for site in (up, blip, flaky)
    }
    assert by_site[up] == [("up", False)] * 3
    assert by_site[blip] == [("down", True), ("up", True), ("up", False)]
    assert by_site[flaky] == [("down", True), ("down", False), ("up", True)]
    assert [p.run_id for p in probes if p.site == flaky] == [run.run_id for run in runs]
    assert probes[0].latency_ms is not None

    # One failed probe (the blip) alerts nobody; the flaky site's second one does.
    assert [(a.site, a.source, a.severity) for a in alerts] == [
        (flaky, "health", "ERROR"),
        (flaky, "health", "INFO"),
    ]
    first_down = next(p.checked_at for p in probes if p.site == flaky)
    down, back = alerts[0].message, alerts[1].message
    assert f"is down since {first_down.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" in down
    assert "2 failed probes in a row" in down and "503" in down
    assert "answers its export API again (it was down since" in back
    assert all(a.resolved_at is not None for a in alerts)  # the site is back
    assert alerts[0].webhook_status == "disabled"
    second = runs[-1]

    freshness = instance.get_records_for_run(
        second.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in freshness]
    assert {(e.partition, e.check_name) for e in evaluations} == {
        (up, "freshness"),
        (blip, "freshness"),
        (flaky, "freshness"),
    }
    assert len(evaluations) == 3 * 8
    assert not any(e.passed for e in evaluations)  # never synced
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("paintings"), "freshness")
    )
    assert record is not None and record.run_id == second.run_id
