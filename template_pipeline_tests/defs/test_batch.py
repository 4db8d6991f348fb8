"""One run, many sites: every site synced alone, a failing site failing alone.

Behaviour under test: a ranged run over six sites, one with a refused key, one unreachable, one
whose orders the mass-delete guard refuses and one answering an unknown envelope, materialises
the two good sites completely (their rows, their own metadata and check results per partition),
fails the others' partitions only (Dagster's partition status), writes nothing of what failed
(their tables exactly as before), names every failed site with the reason in the step's failure,
and alerts each once by name. Two syncs of one site at the same moment take turns on the site's
lock and end consistent, with no duplicate; a run that cannot get the lock in time fails that
site as busy.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from template_pipeline.apps.http_server import BackgroundServer
from template_pipeline.apps.simulator import SimSite, SimulatorServer, api_key_env_name
from template_pipeline.defs.alerts.scan import AlertCursor, scan_for_alerts
from template_pipeline.defs.assets import template_assets, template_site_sync_job
from template_pipeline.defs.checks import freshness_checks
from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import (
    AlertSinks,
    DashboardDatabase,
    TemplateCheckSettings,
    TemplateClientResource,
    TemplateSyncSettings,
)
from template_pipeline.defs.run_requests import RANGE_END_TAG, RANGE_START_TAG
from template_pipeline.defs.sync.site import SyncSettings, sync_site
from template_pipeline.defs.tags import IO_MANAGER_KEY
from template_pipeline.domain.entities import NAMES
from template_pipeline.domain.sites import load_sites_file, write_sites_file
from template_pipeline.source import ClientSettings
from template_pipeline.store import db
from template_pipeline.store.fleet import read_fleet
from template_pipeline.store.locks import site_lock
from template_pipeline_tests.fixtures.helpers import closed_port, query

_SUFFIX = uuid.uuid4().hex[:6]
GOOD_A, REFUSED, GOOD_B = f"bat-a-{_SUFFIX}", f"bat-refused-{_SUFFIX}", f"bat-b-{_SUFFIX}"
DOWN, GUARDED, ODD = f"bat-down-{_SUFFIX}", f"bat-guard-{_SUFFIX}", f"bat-odd-{_SUFFIX}"
ORDER = [GOOD_A, REFUSED, GOOD_B, DOWN, GUARDED, ODD]
SIMULATED = [
    SimSite(key=GOOD_A, api_key="bat-key-a", seed=41, paintings=12, users=5, orders=6),
    SimSite(key=GOOD_B, api_key="bat-key-b", seed=42, paintings=9, users=4, orders=5,
            envelope="named", page_cap=4),
    SimSite(key=GUARDED, api_key="bat-key-g", seed=43, paintings=8, orders=20, invalid_ratio=0.0),
]  # fmt: skip


def _odd_app() -> Starlette:
    """A site that answers every export with an envelope no Template version sends."""

    async def export(request):
        return JSONResponse({"success": True, "rows": []})

    return Starlette(routes=[Route("/api/export/{endpoint}", export)])


@dataclass
class Fleet:
    server: SimulatorServer
    sites_file: str
    defs: dg.Definitions
    instance: dg.DagsterInstance
    url: str

    def run(self, sites: list[str], *entities: str) -> dg.ExecuteInProcessResult:
        tags = (
            {"dagster/partition": sites[0]}
            if len(sites) == 1
            else {RANGE_START_TAG: sites[0], RANGE_END_TAG: sites[-1]}
        )
        job = self.defs.resolve_job_def(template_site_sync_job.name)
        return job.execute_in_process(
            instance=self.instance,
            partition_key=sites[0] if len(sites) == 1 else None,
            tags={} if len(sites) == 1 else tags,
            asset_selection=[dg.AssetKey(e) for e in entities] if entities else None,
            raise_on_error=False,
        )


@pytest.fixture(scope="module")
def fleet(database_url, tmp_path_factory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("batch")
    with SimulatorServer(SIMULATED) as server, BackgroundServer(_odd_app(), name="odd") as odd:
        entries = {entry["key"]: entry for entry in server.sites_file_entries()}
        entries[REFUSED] = {
            "key": REFUSED,
            "base_url": server.base_url(GOOD_A),
            "api_key_env": "TP_BATCH_REFUSED",
        }
        entries[DOWN] = {
            "key": DOWN,
            "base_url": f"http://127.0.0.1:{closed_port()}/",
            "api_key_env": api_key_env_name(DOWN),
        }
        entries[ODD] = {"key": ODD, "base_url": odd.url + "/", "api_key_env": "TP_BATCH_ODD"}
        path = write_sites_file(folder / "sites.yaml", [entries[key] for key in ORDER])
        keys = {
            **server.api_key_env(),
            "TP_BATCH_REFUSED": "not-the-key",
            api_key_env_name(DOWN): "bat-key-down",
            "TP_BATCH_ODD": "bat-key-odd",
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, value in keys.items():
                patch.setenv(name, value)
            defs = dg.Definitions(
                assets=template_assets,
                asset_checks=[freshness_checks],
                jobs=[template_site_sync_job],
                resources={
                    "template_client": TemplateClientResource(
                        sites_file=str(path), max_retries=0, connect_timeout=2.0
                    ),
                    IO_MANAGER_KEY: TemplatePostgresIOManager(database_url=database_url),
                    "dashboard_database": DashboardDatabase(database_url=database_url),
                    "template_check_settings": TemplateCheckSettings(),
                    "template_sync_settings": TemplateSyncSettings(sync_workers=3),
                },
                executor=dg.in_process_executor,
            )
            with dg.DagsterInstance.ephemeral() as instance:
                instance.add_dynamic_partitions(sites_partitions.name, ORDER)
                yield Fleet(server, str(path), defs, instance, database_url)


def _statuses(fleet: Fleet, entity: str) -> dict[str, str]:
    found = fleet.instance.get_status_by_partition(dg.AssetKey(entity), ORDER, sites_partitions)
    return {site: (status.value if status else "missing") for site, status in found.items()}


def _live(url: str, table: str, site: str) -> int:
    live = "" if table == "template_stats" else " AND deleted_at IS NULL"
    [row] = query(url, f"SELECT count(*) AS n FROM {table} WHERE site = %s{live}", site)
    return int(row["n"])


@pytest.fixture(scope="module")
def batch(fleet) -> dg.ExecuteInProcessResult:
    """The guarded site synced once alone, then shrunk; then one run over all six sites."""
    assert fleet.run([GUARDED]).success
    data = fleet.server.data(GUARDED)
    del data.orders[2:]  # 2 of its 20 orders: the guard must refuse
    data.touch()
    return fleet.run(ORDER)


def test_only_the_failing_sites_partitions_fail(fleet, batch):
    assert not batch.success
    for entity in ("paintings", "users", "settings", "stats"):
        statuses = _statuses(fleet, entity)
        assert statuses[GOOD_A] == statuses[GOOD_B] == "MATERIALIZED", (entity, statuses)
        assert statuses[GUARDED] == "MATERIALIZED", (entity, statuses)  # only its orders failed
        for failed in (REFUSED, DOWN, ODD):
            assert statuses[failed] == "FAILED", (entity, failed, statuses)
    orders = _statuses(fleet, "orders")
    assert orders[GUARDED] == "FAILED" and orders[GOOD_A] == orders[GOOD_B] == "MATERIALIZED"
    assert _statuses(fleet, "order_items")[GUARDED] == "FAILED"


def test_the_failure_names_each_failed_site_and_why(batch):
    [failure] = batch.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user.description.startswith("4 of 6 site(s) failed: ")
    failed = user.metadata["failed_sites"].data
    assert set(failed) == {REFUSED, DOWN, GUARDED, ODD}
    assert failed[REFUSED]["kind"] == "auth" and "API key was refused" in failed[REFUSED]["reason"]
    assert failed[DOWN]["kind"] == "unreachable"
    assert failed[GUARDED]["kind"] == "refused" and "soft-delete" in failed[GUARDED]["reason"]
    assert failed[ODD]["kind"] == "bad response" and "unknown envelope" in failed[ODD]["reason"]
    assert "not-the-key" not in user.description


def test_good_sites_have_their_rows_metadata_and_checks(fleet, batch):
    materialised = {
        (e.asset_key.path[-1], e.materialization.partition): e.materialization.metadata
        for e in batch.get_asset_materialization_events()
    }
    for site in (GOOD_A, GOOD_B):
        data = fleet.server.data(site)
        assert {entity for entity, part in materialised if part == site} == set(NAMES)
        valid = len(data.paintings) - len(data.invalid_ids["paintings"])
        assert materialised[("paintings", site)]["valid"].value == valid
        assert _live(fleet.url, "template_paintings", site) == valid
    checks = {
        (e.asset_key.path[-1], e.check_name, e.partition): e
        for e in (
            r.event_log_entry.dagster_event.asset_check_evaluation_data
            for r in fleet.instance.get_records_for_run(
                batch.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            ).records
        )
    }
    assert ("paintings", "reject_rate", GOOD_A) in checks
    assert ("paintings", "reject_rate", GOOD_B) in checks
    assert not any(site in (REFUSED, DOWN, ODD) for _, _, site in checks)
    guard = checks[("orders", "mass_delete_guard", GUARDED)]
    assert not guard.passed and guard.blocking


def test_nothing_of_what_failed_was_written(fleet, batch):
    for site in (REFUSED, DOWN, ODD):
        for table in ("template_paintings", "template_settings", "template_stats"):
            assert _live(fleet.url, table, site) == 0, (site, table)
    assert _live(fleet.url, "template_orders", GUARDED) == 20  # as before the refused sync
    [refused] = query(
        fleet.url,
        "SELECT status, inserted, updated, deleted FROM template_sync_runs "
        "WHERE site = %s AND entity = 'orders' AND run_id = %s",
        GUARDED,
        batch.run_id,
    )
    assert (refused["status"], refused["inserted"], refused["updated"]) == ("refused", 0, 0)
    assert refused["deleted"] == 18  # what it would have deleted


def test_each_failure_is_recorded_with_its_kind_and_the_fleet_lists_them_first(fleet, batch):
    kinds = {
        (r["site"], r["entity"]): r["error_kind"]
        for r in query(
            fleet.url,
            "SELECT site, entity, error_kind FROM template_sync_runs "
            "WHERE run_id = %s AND status <> 'success'",
            batch.run_id,
        )
    }
    # Failures before any write (a refused key, an unreachable site, an odd envelope) and one
    # the write path recorded (the guard's refusal), each with its kind.
    assert {kinds[(REFUSED, e)] for e in ("settings", "stats", "orders")} == {"auth"}
    assert kinds[(DOWN, "paintings")] == "unreachable"
    assert kinds[(ODD, "stats")] == "bad response"
    assert kinds[(GUARDED, "orders")] == "refused"
    assert not any(site in (GOOD_A, GOOD_B) for site, _ in kinds)
    with db.get_engine(fleet.url).connect() as conn:
        status = read_fleet(conn, ORDER, stale_after=timedelta(hours=26))
    assert [s.site for s in status.sites] == [
        *sorted((DOWN, GUARDED, ODD, REFUSED)),
        GOOD_A,
        GOOD_B,
    ]
    by_site = {s.site: s for s in status.sites}
    assert by_site[REFUSED].last_error_kind == "auth" and by_site[REFUSED].state == "failing"
    assert by_site[GUARDED].last_error_kind == "refused"
    assert by_site[GOOD_A].state == "ok" and by_site[GOOD_A].records["paintings"] == 12
    assert status.numbers()["refused_keys"] == 1 and status.numbers()["sites_failing"] == 4


def test_each_failed_site_is_alerted_once_by_name(fleet, batch):
    with db.get_engine(fleet.url).connect():
        pass
    result = scan_for_alerts(
        fleet.instance,
        AlertCursor(),
        sinks=AlertSinks(),
        engine=db.get_engine(fleet.url),
        log=_Log(),
        job_names=[template_site_sync_job.name],
    )
    run_alerts = [d.alert for d in result.deliveries if d.alert.source == "run"]
    assert sorted(a.site for a in run_alerts) == sorted([REFUSED, DOWN, ODD])
    # The refusal is alerted as its failed check, not twice.
    check_alerts = [d.alert for d in result.deliveries if d.alert.source == "check"]
    assert any(a.site == GUARDED and a.check_name == "mass_delete_guard" for a in check_alerts)
    again = scan_for_alerts(
        fleet.instance,
        AlertCursor(),
        sinks=AlertSinks(),
        engine=db.get_engine(fleet.url),
        log=_Log(),
        job_names=[template_site_sync_job.name],
    )
    assert not [d for d in again.deliveries if not d.duplicate and d.alert.source == "run"]


class _Log:
    def info(self, *args: object) -> None: ...
    def warning(self, *args: object) -> None: ...
    def error(self, *args: object) -> None: ...


def _settings(url: str, run_id: str, **overrides) -> SyncSettings:
    return SyncSettings(
        database_url=url,
        run_id=run_id,
        client=ClientSettings(max_retries=0),
        checks=TemplateCheckSettings(),
        entities=frozenset(NAMES),
        check_keys=frozenset(),
        **overrides,
    )


def test_two_syncs_of_one_site_at_once_take_turns(fleet, batch):
    site = load_sites_file(fleet.sites_file).get(GOOD_A)
    fleet.server.data(GOOD_A).add_painting()
    reports = {}

    def run(name: str) -> None:
        reports[name] = sync_site(site, _settings(fleet.url, name))

    threads = [threading.Thread(target=run, args=(f"same-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(not report.failed for report in reports.values()), reports
    windows = query(
        fleet.url,
        "SELECT run_id, min(started_at) AS first, max(finished_at) AS last "
        "FROM template_sync_runs WHERE site = %s AND run_id LIKE 'same-%%' GROUP BY run_id",
        GOOD_A,
    )
    one, other = sorted(windows, key=lambda w: w["first"])
    assert one["last"] <= other["first"]  # one wrote after the other was done
    [dupes] = query(
        fleet.url,
        "SELECT count(*) - count(DISTINCT template_id) AS n FROM template_paintings "
        "WHERE site = %s",
        GOOD_A,
    )
    assert dupes["n"] == 0
    data = fleet.server.data(GOOD_A)
    valid = len(data.paintings) - len(data.invalid_ids["paintings"])
    assert _live(fleet.url, "template_paintings", GOOD_A) == valid


def test_a_site_held_by_another_run_fails_as_busy(fleet, batch):
    site = load_sites_file(fleet.sites_file).get(GOOD_B)
    with db.connect(fleet.url) as holder, site_lock(holder, GOOD_B, wait_s=1):
        report = sync_site(site, _settings(fleet.url, "busy", lock_wait_s=0.5))
    assert report.failed and report.kind() == "busy"
    # The holder is named: this process, and since when it holds the site.
    assert f"another sync of this site holds its lock (process {os.getpid()} on " in (
        report.reason()
    )
    assert ", since 20" in report.reason() and "waited 0.5 s" in report.reason()
