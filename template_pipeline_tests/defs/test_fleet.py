"""``fleet_status``: the fleet table as materialisation metadata, refreshed by health and syncs.

Behaviour under test, against the Template simulator and the session database: after a sync of
a good site, of a site whose key is refused and of one whose orders' blocking check failed, the
asset's metadata lists the failing sites first, with error kinds ``check`` and ``auth``, and
carries the numbers the UI plots (``sites_ok``, ``sites_failing``, ``sites_stale``,
``records_synced``, ``refused_keys``) as ints; the hourly health job records a materialisation
of the asset; the run-status sensors ask for a refresh once no other sync run is queued or
running, and monitor the sync job.
"""

import uuid
from collections.abc import Iterator

import dagster as dg
import pytest

from template_pipeline.apps.simulator import SimSite, SimulatorServer
from template_pipeline.defs.assets import SYNC_JOB_NAME, template_assets, template_site_sync_job
from template_pipeline.defs.fleet import FLEET_ASSET_KEY, fleet_status, fleet_status_job
from template_pipeline.defs.health import template_health_job
from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.defs.resources import (
    AlertSinks,
    DashboardDatabase,
    TemplateCheckSettings,
    TemplateClientResource,
    TemplateSyncSettings,
)
from template_pipeline.defs.sensors.fleet import (
    fleet_refresh_request,
    template_fleet_failure_sensor,
    template_fleet_sensor,
)
from template_pipeline.defs.tags import IO_MANAGER_KEY
from template_pipeline.domain.sites import SITES_FILE_ENV, write_sites_file

_SUFFIX = uuid.uuid4().hex[:6]
GOOD, REFUSED = f"fleet-good-{_SUFFIX}", f"fleet-refused-{_SUFFIX}"
BLOCKED = f"fleet-blocked-{_SUFFIX}"  # half its records invalid: reject_rate blocks


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    site = SimSite(
        key=GOOD, api_key="k-good", seed=5, paintings=6, users=4, orders=3, invalid_ratio=0
    )
    blocked = SimSite(key=BLOCKED, api_key="k-blocked", seed=6, orders=12, invalid_ratio=0.5)
    with SimulatorServer([site, blocked]) as running:
        yield running


@pytest.fixture
def resources(server, dashboard_env, tmp_path, monkeypatch) -> dict:
    entries = server.sites_file_entries()
    entries.append(
        {"key": REFUSED, "base_url": server.base_url(GOOD), "api_key_env": "TP_FLEET_REFUSED"}
    )
    monkeypatch.setenv(SITES_FILE_ENV, str(write_sites_file(tmp_path / "sites.yaml", entries)))
    for name, value in server.api_key_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TP_FLEET_REFUSED", "not-the-key")
    monkeypatch.setenv("TEMPLATE_HEALTH_RETRY_PAUSE_S", "0")
    return {
        "template_client": TemplateClientResource(max_retries=0, connect_timeout=2.0),
        IO_MANAGER_KEY: TemplatePostgresIOManager(database_url=dashboard_env),
        "dashboard_database": DashboardDatabase(database_url=dashboard_env),
        "template_check_settings": TemplateCheckSettings(),
        "template_sync_settings": TemplateSyncSettings(),
        "alert_sinks": AlertSinks(),
    }


@pytest.fixture
def synced(resources) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("template_sites", [GOOD, REFUSED, BLOCKED])
    for site in (GOOD, REFUSED, BLOCKED):
        dg.materialize(
            template_assets,
            partition_key=site,
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
    return instance


def _latest_metadata(instance: dg.DagsterInstance) -> dict:
    event = instance.get_latest_materialization_event(FLEET_ASSET_KEY)
    assert event is not None and event.asset_materialization is not None
    return dict(event.asset_materialization.metadata)


def test_a_refused_key_is_failing_with_kind_auth_first_and_the_numbers_are_plotted(
    synced, resources
):
    result = dg.materialize([fleet_status], instance=synced, resources=resources)
    assert result.success
    md = _latest_metadata(synced)
    for name in ("sites_ok", "sites_failing", "sites_stale", "records_synced", "refused_keys"):
        assert isinstance(md[name], dg.IntMetadataValue), name
    assert md["sites_ok"].value == 1 and md["sites_failing"].value == 2
    assert md["refused_keys"].value == 1 and md["records_synced"].value > 0
    assert md["failing"].value == [BLOCKED, REFUSED]
    table = md["fleet"].value.splitlines()
    # The blocked site's order lines were kept by the orders' reject_rate check: kind check.
    assert table[2].startswith(f"| {BLOCKED} | failing |") and "| check |" in table[2]
    assert table[3].startswith(f"| {REFUSED} | failing |") and "| auth |" in table[3]
    assert table[4].startswith(f"| {GOOD} | ok |")
    assert "not-the-key" not in md["fleet"].value


def test_the_hourly_health_job_refreshes_the_fleet(synced, resources):
    assert "refresh_fleet_status" in template_health_job.graph.node_dict
    result = template_health_job.execute_in_process(instance=synced, resources=resources)
    assert result.success
    event = synced.get_latest_materialization_event(FLEET_ASSET_KEY)
    assert event is not None and event.run_id == result.run_id
    assert _latest_metadata(synced)["sites_failing"].value == 2


@dg.op
def _noop() -> None:
    return None


@dg.job(name=SYNC_JOB_NAME)
def _a_sync_job() -> None:
    _noop()


def test_the_sensors_refresh_after_sync_runs_once_none_is_left():
    for sensor in (template_fleet_sensor, template_fleet_failure_sensor):
        # Monitors the sync job (private in Dagster 1.13: no public accessor), requests the
        # fleet job.
        assert sensor._monitored_jobs == [template_site_sync_job]
        assert [t.job_name for t in sensor.targets] == [fleet_status_job.name]
    with dg.DagsterInstance.ephemeral() as instance:
        finished = _a_sync_job.execute_in_process(instance=instance)
        context = dg.build_run_status_sensor_context(
            sensor_name=template_fleet_sensor.name,
            dagster_event=finished.get_run_success_event(),
            dagster_instance=instance,
            dagster_run=finished.dagster_run,
        )
        request = template_fleet_sensor(context)
        assert isinstance(request, dg.RunRequest)
        assert request.run_key == f"fleet-after:{finished.run_id}"
        instance.add_run(
            dg.DagsterRun(
                job_name=SYNC_JOB_NAME, run_id="running-1", status=dg.DagsterRunStatus.STARTED
            )
        )
        skipped = fleet_refresh_request(instance, "run-2")
        assert isinstance(skipped, dg.SkipReason) and "1 sync run(s)" in skipped.skip_message
