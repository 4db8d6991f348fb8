"""Asset checks: built from the registry, each passing and failing on crafted data.

Crafted snapshots are written with ``write_snapshot`` and the evaluations read them back from
PostgreSQL, as they do on their own. Runs through Dagster show what blocking means: a reject
rate above the threshold on ``orders`` keeps the site's ``order_items`` as they were (the run
itself succeeds: the data landed), and a mass-delete refusal surfaces as a failed blocking
``mass_delete_guard`` check of that site's partition, the site failing alone.
"""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from template_pipeline.apps.simulator import SimSite, SimulatorServer
from template_pipeline.defs.assets import template_assets, template_site_sync_job
from template_pipeline.defs.checks import (
    CHECK_RULES,
    MASS_DELETE_GUARD,
    CheckTarget,
    freshness_checks,
)
from template_pipeline.defs.checks.evaluations import (
    evaluate_mass_delete_guard,
    evaluate_matches_site_stats,
    evaluate_reject_rate,
    evaluate_site_name_present,
    evaluate_unique_ids,
)
from template_pipeline.defs.checks.freshness import evaluate_freshness, freshness_evaluations
from template_pipeline.defs.checks.reconciliation import (
    evaluate_items_reference_paintings,
    evaluate_order_totals,
)
from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import (
    DashboardDatabase,
    TemplateCheckSettings,
    TemplateClientResource,
    TemplateSyncSettings,
)
from template_pipeline.defs.tags import IO_MANAGER_KEY, site_run_tags
from template_pipeline.domain.batches import EntitySnapshot, ValidatedBatch
from template_pipeline.domain.entities import FETCHED as ENDPOINT_SPECS
from template_pipeline.domain.entities import NAMES as ALL_ENTITIES
from template_pipeline.domain.sites import write_sites_file
from template_pipeline.store import db
from template_pipeline.store.results import MassDeleteRefusedError
from template_pipeline.store.tables import template_sync_runs
from template_pipeline.store.writer import write_snapshot
from template_pipeline_tests.fixtures.helpers import unique_site, write_records

WARN, ERROR = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR


def _evaluate(url: str, evaluate, site: str, entity: str, run_id: str = "run-1", **settings):
    with db.get_engine(url).connect() as conn:
        return evaluate(conn, CheckTarget(site, entity, run_id), TemplateCheckSettings(**settings))


def _paintings(n: int, *, start: int = 1) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"Toile {i}", "price": "100.00", "category": "Huile", "image": "i.jpg"}
        for i in range(start, start + n)
    ]


def _order(oid: int, total: str, *items: tuple[int, str, int]) -> dict[str, Any]:
    return {
        "id": oid,
        "customer_name": "Zoé Martin",
        "email": "zoe@example.fr",
        "order_date": "2024-03-01 10:22:00",
        "total_price": total,
        "items": [{"painting_id": p, "price": price, "quantity": q} for p, price, q in items],
    }


# --- the rules come from the spec table --------------------------------------------------------


def test_checks_are_built_from_the_spec_table():
    keys = set(template_assets[0].check_keys) | set(freshness_checks.check_keys)
    assert not set(template_assets[0].check_keys) & set(freshness_checks.check_keys)
    assert len(keys) == sum(len(rule.entities) for rule in CHECK_RULES)
    record_entities = {s.name for s in ENDPOINT_SPECS if s.has_records}
    by_rule = {
        rule.name: {k.asset_key.path[-1] for k in keys if k.name == rule.name}
        for rule in CHECK_RULES
    }
    assert by_rule["reject_rate"] == record_entities
    assert by_rule["freshness"] == set(ALL_ENTITIES)
    assert by_rule[MASS_DELETE_GUARD] == set(ALL_ENTITIES) - {"stats"}
    specs = {
        spec.key: spec for spec in [*template_assets[0].check_specs, *freshness_checks.check_specs]
    }
    assert specs[dg.AssetCheckKey(dg.AssetKey("orders"), "reject_rate")].blocking
    assert specs[dg.AssetCheckKey(dg.AssetKey("paintings"), MASS_DELETE_GUARD)].blocking
    assert not specs[dg.AssetCheckKey(dg.AssetKey("orders"), "order_totals")].blocking
    assert all(spec.partitions_def == sites_partitions for spec in specs.values())


@pytest.mark.parametrize(
    ("fields", "env", "threshold", "min_rejects", "hours"),
    [
        ({}, {}, 0.05, 3, 26.0),
        ({}, {"TEMPLATE_MAX_REJECT_RATE": "0.1", "TEMPLATE_FRESHNESS_HOURS": "2"}, 0.1, 3, 2.0),
        ({"max_reject_rate": 0.2}, {"TEMPLATE_MAX_REJECT_RATE": "0.1"}, 0.2, 3, 26.0),
        ({"min_rejects_for_error": 1}, {}, 0.05, 1, 26.0),
    ],
)
def test_check_settings_resolution(monkeypatch, fields, env, threshold, min_rejects, hours):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = TemplateCheckSettings(**fields)
    assert settings.reject_rate_threshold() == threshold
    assert settings.min_rejects() == min_rejects
    assert settings.freshness_window().total_seconds() == hours * 3600


@pytest.mark.parametrize(
    ("method", "env", "message"),
    [
        ("reject_rate_threshold", {"TEMPLATE_MAX_REJECT_RATE": "5%"}, "must be a number"),
        ("reject_rate_threshold", {"TEMPLATE_MAX_REJECT_RATE": "5"}, "between 0 and 1"),
        ("min_rejects", {"TEMPLATE_MIN_REJECTS_FOR_ERROR": "0"}, "whole number >= 1"),
        ("freshness_window", {"TEMPLATE_FRESHNESS_HOURS": "0"}, "must be positive"),
    ],
)
def test_check_settings_reject_bad_values(monkeypatch, method, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        getattr(TemplateCheckSettings(), method)()


# --- each check on crafted data ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("good", "bad", "passed", "severity"),
    [
        (40, 0, True, None),
        (39, 1, False, WARN),  # 2.5 %: within the threshold
        (3, 1, False, WARN),  # 25 %, but a single record: not an emergency
        (15, 5, False, ERROR),  # 25 % and 5 records: blocks
    ],
)
def test_reject_rate(database_url, good, bad, passed, severity):
    site = unique_site("chk")
    records = _paintings(good) + [{"id": 1000 + i, "price": "-1"} for i in range(bad)]
    write_records(database_url, site, "paintings", records)
    result = _evaluate(database_url, evaluate_reject_rate, site, "paintings")
    assert result.passed is passed
    if severity is not None:
        assert result.severity == severity
    assert result.metadata["rejected"].value == bad
    assert result.metadata["fetched"].value == good + bad
    if bad:
        reasons = result.metadata["top_reasons"].value
        assert "name: required" in reasons and "-1" not in reasons


def test_reject_rate_reads_the_current_rejects_only(database_url):
    site = unique_site("chk")
    bad = [{"id": 1000 + i, "price": "-1"} for i in range(3)]
    write_records(database_url, site, "paintings", _paintings(20) + bad, run_id="run-a")
    write_records(database_url, site, "paintings", _paintings(20) + bad, run_id="run-b")
    # The site fixes two of the three: only the one it still serves wrong is current.
    fixed = _paintings(2, start=1000)
    write_records(database_url, site, "paintings", _paintings(20) + fixed + bad[2:], run_id="run-c")

    result = _evaluate(database_url, evaluate_reject_rate, site, "paintings", run_id="run-c")

    assert result.metadata["rejected"].value == 1
    rows = [line for line in result.metadata["top_reasons"].value.splitlines() if "name:" in line]
    assert len(rows) == 1 and rows[0].startswith("| 1 |"), rows


def test_reject_rate_without_any_sync_is_a_warning(database_url):
    write_records(database_url, unique_site("chk"), "paintings", _paintings(1))  # the schema exists
    result = _evaluate(database_url, evaluate_reject_rate, unique_site("chk"), "paintings")
    assert not result.passed and result.severity == WARN
    assert "no successful sync" in result.description


def test_unique_ids_reports_duplicates(database_url):
    site = unique_site("chk")
    write_records(database_url, site, "paintings", _paintings(3))
    assert _evaluate(database_url, evaluate_unique_ids, site, "paintings").passed
    write_records(database_url, site, "paintings", [*_paintings(3), *_paintings(2)], run_id="run-2")
    result = _evaluate(database_url, evaluate_unique_ids, site, "paintings", run_id="run-2")
    assert not result.passed and result.severity == WARN
    assert result.metadata["duplicates"].value == 2
    assert result.metadata["distinct"].value == 3


@pytest.mark.parametrize(("reported", "passed"), [(5, True), (6, True), (9, False)])
def test_matches_site_stats(database_url, reported, passed):
    site = unique_site("chk")
    write_records(database_url, site, "paintings", [*_paintings(5), {"id": 99, "price": "1"}])
    write_records(database_url, site, "stats", [{"paintings": reported, "users": 1}])
    result = _evaluate(database_url, evaluate_matches_site_stats, site, "paintings")
    assert result.passed is passed
    assert result.metadata["live_rows"].value == 5
    if not passed:
        assert result.severity == WARN
        assert result.metadata["unaccounted"].value == 3


def test_order_totals_lists_the_first_mismatches(database_url):
    site = unique_site("chk")
    orders = [
        _order(1, "30.00", (1, "10.00", 3)),
        _order(2, "25.00", (1, "10.00", 1), (2, "12.50", 1)),  # 22.50
        _order(3, "0.00"),  # no items: not checked
        _order(10, "5.00", (2, "2.50", 1)),  # 2.50
    ]
    write_records(database_url, site, "orders", orders[:1])
    assert _evaluate(database_url, evaluate_order_totals, site, "orders").passed
    write_records(database_url, site, "orders", orders, run_id="run-2")
    result = _evaluate(database_url, evaluate_order_totals, site, "orders", run_id="run-2")
    assert not result.passed and result.severity == WARN
    assert result.metadata["mismatches"].value == 2
    assert result.metadata["orders_without_items"].value == 1
    assert "first: 2, 10" in result.description
    assert "2.50" in result.metadata["first_mismatches"].value


def test_items_reference_paintings(database_url):
    site, other = unique_site("chk"), unique_site("chk")
    write_records(database_url, site, "paintings", _paintings(2))
    write_records(database_url, other, "paintings", _paintings(1, start=7))
    rows = [
        {
            "order_id": 1,
            "line_no": 1,
            "painting_id": 1,
            "name": None,
            "image": None,
            "price": Decimal("1.00"),
            "quantity": 1,
            "extra": {},
        },
        {
            "order_id": 1,
            "line_no": 2,
            "painting_id": 7,
            "name": None,
            "image": None,
            "price": Decimal("1.00"),
            "quantity": 1,
            "extra": {},
        },
        {
            "order_id": 2,
            "line_no": 1,
            "painting_id": None,
            "name": None,
            "image": None,
            "price": Decimal("1.00"),
            "quantity": 1,
            "extra": {},
        },
    ]
    snapshot = EntitySnapshot(site, "order_items", [ValidatedBatch(rows=rows, fetched=3)])
    write_snapshot(database_url, snapshot, run_id="run-1")
    result = _evaluate(database_url, evaluate_items_reference_paintings, site, "order_items")
    assert not result.passed and result.severity == WARN
    meta = {key: value.value for key, value in result.metadata.items()}
    assert meta["items"] == 3
    assert meta["referenced"] == 1
    assert meta["unknown_painting"] == 1
    assert meta["painting_of_another_site"] == 1
    assert meta["without_painting_id"] == 1
    assert meta["first_unknown_paintings"] == [7]
    assert result.description.endswith("first: 7")


def test_mass_delete_guard_passes_and_fails(database_url):
    site = unique_site("chk")
    write_records(database_url, site, "paintings", _paintings(20))
    write_records(database_url, site, "paintings", _paintings(18), run_id="run-2")
    result = _evaluate(database_url, evaluate_mass_delete_guard, site, "paintings", "run-2")
    assert result.passed
    assert result.metadata["deleted"].value == 2
    assert result.metadata["live_rows_before"].value == 20
    with pytest.raises(MassDeleteRefusedError):
        write_records(database_url, site, "paintings", _paintings(2), run_id="run-3")
    result = _evaluate(database_url, evaluate_mass_delete_guard, site, "paintings", "run-3")
    assert not result.passed and result.severity == ERROR
    assert "refused" in result.description
    assert result.metadata["would_delete"].value == 16


def test_freshness(database_url):
    site = unique_site("chk")
    write_records(database_url, site, "users", [{"id": 1, "name": "Ana", "email": "a@b.fr"}])
    assert _evaluate(database_url, evaluate_freshness, site, "users").passed
    with db.get_engine(database_url).begin() as conn:
        conn.execute(
            sa.update(template_sync_runs)
            .where(template_sync_runs.c.site == site)
            .values(finished_at=sa.func.now() - sa.text("interval '30 hours'"))
        )
    result = _evaluate(database_url, evaluate_freshness, site, "users")
    assert not result.passed and result.severity == ERROR
    assert result.metadata["age_hours"].value >= 30
    assert _evaluate(database_url, evaluate_freshness, site, "users", freshness_hours=31).passed

    with db.get_engine(database_url).connect() as conn:
        evaluations = list(
            freshness_evaluations(conn, [site], TemplateCheckSettings().freshness_window())
        )
    by_entity = {e.asset_key.path[-1]: e for e in evaluations}
    assert set(by_entity) == set(ALL_ENTITIES)
    assert all(e.partition == site and e.check_name == "freshness" for e in evaluations)
    assert not by_entity["users"].passed
    assert "never synced" in by_entity["orders"].description


@pytest.mark.parametrize(
    ("settings", "passed"),
    [
        ([{"key": "site_name", "value": "Atelier Marie"}], True),
        ([{"key": "site_logo", "value": "logo.png"}], False),
        ([{"key": "site_name", "value": "***MASKED***"}], False),
        ([{"key": "site_name", "value": "  "}, {"key": "x", "value": "1"}], False),
    ],
)
def test_site_name_present(database_url, settings, passed):
    site = unique_site("chk")
    write_records(database_url, site, "settings", settings)
    result = _evaluate(database_url, evaluate_site_name_present, site, "settings")
    assert result.passed is passed
    if not passed:
        assert result.severity == ERROR


# --- blocking, through Dagster ----------------------------------------------------------------


def _check_results(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult
) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    """The run's check evaluations as stored in the instance (what the UI and alerts read)."""
    records = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]
    return {(e.asset_key.path[-1], e.check_name): e for e in evaluations}


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.asset_key.path[-1]
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    }


def _started_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}


@pytest.fixture
def simulated_site(tmp_path, monkeypatch) -> Iterator[tuple[SimulatorServer, str, str]]:
    site = unique_site("chk")
    server = SimulatorServer([SimSite(key=site, api_key="k-" + site, invalid_ratio=0.0)]).start()
    try:
        path = write_sites_file(tmp_path / "sites.yaml", server.sites_file_entries())
        for name, value in server.api_key_env().items():
            monkeypatch.setenv(name, value)
        yield server, site, str(path)
    finally:
        server.stop()


def _sync_defs(database_url: str, sites_file: str) -> dg.Definitions:
    return dg.Definitions(
        assets=template_assets,
        asset_checks=[freshness_checks],
        jobs=[template_site_sync_job],
        resources={
            "template_client": TemplateClientResource(sites_file=sites_file),
            IO_MANAGER_KEY: TemplatePostgresIOManager(database_url=database_url),
            "dashboard_database": DashboardDatabase(database_url=database_url),
            "template_check_settings": TemplateCheckSettings(),
            "template_sync_settings": TemplateSyncSettings(),
        },
        executor=dg.in_process_executor,
    )


def _run(defs: dg.Definitions, instance, site: str, *entities: str) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(template_site_sync_job.name).execute_in_process(
        instance=instance,
        partition_key=site,
        tags=site_run_tags(site),
        asset_selection=[dg.AssetKey(e) for e in entities],
        raise_on_error=False,
    )


def test_failed_blocking_reject_rate_on_orders_stops_order_items(database_url, simulated_site):
    server, site, sites_file = simulated_site
    data = server.data(site)
    for order in data.orders[:6]:
        order.pop("total_price", None)  # a required field: each of these orders is rejected
    data.touch()
    defs = _sync_defs(database_url, sites_file)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(sites_partitions.name, [site])
    # The site's other assets are not needed to show the blocking (and cost seconds).
    result = _run(defs, instance, site, "orders", "order_items", "stats")
    # The data landed: the run succeeds, and the failed check is what the UI and alerts show.
    assert result.success
    checks = _check_results(instance, result)
    failed = {key for key, evaluation in checks.items() if not evaluation.passed}
    assert failed == {("orders", "reject_rate")}
    assert checks[("orders", "reject_rate")].severity == ERROR
    assert checks[("orders", "reject_rate")].blocking
    assert checks[("orders", "reject_rate")].partition == site
    assert {"orders", "stats"} <= _materialized(result)
    assert "order_items" not in _materialized(result)
    assert not any(key[0] == "order_items" for key in checks)


def test_mass_delete_refusal_is_a_failed_blocking_check(database_url, simulated_site):
    server, site, sites_file = simulated_site
    data = server.data(site)
    defs = _sync_defs(database_url, sites_file)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(sites_partitions.name, [site])

    first = _run(defs, instance, site, "orders", "order_items")
    assert first.success
    assert _check_results(instance, first)[("orders", MASS_DELETE_GUARD)].passed

    kept = len(data.orders)
    del data.orders[2:]  # the site suddenly serves 2 of its orders
    data.touch()
    second = _run(defs, instance, site, "orders", "order_items")
    assert not second.success  # the site could not be synced: its partitions show failed
    guard = _check_results(instance, second)[("orders", MASS_DELETE_GUARD)]
    assert not guard.passed and guard.severity == ERROR and guard.blocking
    assert guard.partition == site
    assert guard.metadata["would_delete"].value == kept - 2
    assert "order_items" not in _materialized(second)
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("orders"), MASS_DELETE_GUARD)
    )
    assert record is not None and record.run_id == second.run_id
    with db.get_engine(database_url).connect() as conn:
        statuses = (
            conn.execute(
                sa.select(template_sync_runs.c.status)
                .where(template_sync_runs.c.site == site, template_sync_runs.c.entity == "orders")
                .order_by(template_sync_runs.c.id)
            )
            .scalars()
            .all()
        )
    assert statuses == ["success", "refused"]
