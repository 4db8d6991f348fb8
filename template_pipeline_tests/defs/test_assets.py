"""The entity assets through Dagster, against the simulator over real HTTP, into PostgreSQL.

Behaviour under test: each asset materialised with ``dg.materialize(..., partition_key=site)``
(the UI's Materialize of one partition: the sync step restricted to the selected assets)
lands what the site serves: every record is either a live row of its table or a reject of the
run with a reason (compared with the simulator's own list of the records it made invalid), over
several short pages and both response envelopes; paintings get an absolute ``image_url`` under
the site's base URL (path prefix kept); masked settings are stored as NULL with ``is_masked``;
order items are derived from the stored orders line by line; the materialisation metadata
carries the counts, and the stats asset its numbers as numeric metadata. A re-sync after the
site changed writes exactly the changed rows (one update, one soft delete, one insert, every
other row's ``xmin`` untouched). A refused key or an unreachable site fails the step, naming
the site, the endpoint and why, writes nothing and is not retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest

from template_pipeline.apps.simulator import (
    INVALID_KINDS,
    SimSite,
    SimulatorServer,
    SiteData,
    api_key_env_name,
)
from template_pipeline.apps.simulator.generate import to_decimal
from template_pipeline.defs.assets import template_assets
from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import (
    TemplateCheckSettings,
    TemplateClientResource,
    TemplateSyncSettings,
)
from template_pipeline.defs.sync.metadata import stats_metadata
from template_pipeline.defs.tags import IO_MANAGER_KEY
from template_pipeline.domain.entities import KNOWN_FIELDS
from template_pipeline.domain.sites import SITES_FILE_ENV, write_sites_file
from template_pipeline.domain.vocabulary import MASKED as MASKED_VALUE
from template_pipeline.store import db
from template_pipeline_tests.fixtures.helpers import closed_port, query

LIST_ENTITIES = ("paintings", "users", "orders", "exhibitions", "custom_requests")
COUNT_KEYS = ("fetched", "valid", "rejected", "duplicates", "inserted", "updated", "unchanged")
_SUFFIX = uuid.uuid4().hex[:6]
# The simulator's kinds of invalid records -> the field a reject reason must name.
BROKEN_FIELD = {
    "negative_price": "price",
    "missing_name": "name",
    "empty_name": "name",
    "nul_in_name": "name",
    "negative_quantity": "quantity",
    "bad_email": "email",
    "unknown_role": "role",
    "negative_item_price": "items[0].price",
    "missing_total_price": "total_price",
    "nul_in_customer_name": "customer_name",
    "missing_title": "title",
    "nul_in_title": "title",
    "negative_budget": "budget",
    "nul_in_message": "message",
    "missing_category": "category",
    "missing_image": "image",
    "missing_email": "email",
    "missing_customer_name": "customer_name",
    "missing_order_date": "order_date",
    "non_integer_id": "id",
}


def _key(name: str) -> str:
    # Sites of their own: the session database is shared with the other test modules.
    return f"{name}-{_SUFFIX}"


MAIN, NAMED, ITEMS, CHURN = _key("main"), _key("named"), _key("items"), _key("churn")
REFUSED, UNREACHABLE = _key("refused"), _key("down")
SIMULATED = (
    # Short pages (the server caps them below the client's page size) and a tenth of the
    # records invalid: pagination and quarantine both have work to do.
    SimSite(key=MAIN, api_key="k-main", seed=21, paintings=45, users=18, orders=30,
            exhibitions=10, custom_requests=12, page_cap=7, invalid_ratio=0.1),
    SimSite(key=NAMED, api_key="k-named", seed=22, paintings=30, users=12, orders=16,
            exhibitions=12, custom_requests=11, page_cap=9, invalid_ratio=0.1, envelope="named"),
    SimSite(key=ITEMS, api_key="k-items", seed=23, paintings=20, orders=25, page_cap=10),
    SimSite(key=CHURN, api_key="k-churn", seed=24, paintings=24, page_cap=10),
)  # fmt: skip


@dataclass
class Env:
    server: SimulatorServer
    instance: dg.DagsterInstance
    database_url: str

    def data(self, site: str) -> SiteData:
        return self.server.data(site)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(list(SIMULATED)) as running:
        yield running


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        ephemeral.add_dynamic_partitions(
            sites_partitions.name, [*(s.key for s in SIMULATED), REFUSED, UNREACHABLE]
        )
        yield ephemeral


@pytest.fixture
def env(server, instance, dashboard_env, tmp_path, monkeypatch) -> Env:
    """The sites file and keys in the environment, as in production; DASHBOARD_DATABASE_URL set."""
    entries = server.sites_file_entries()
    entries.append(
        {"key": REFUSED, "base_url": server.base_url(MAIN), "api_key_env": "TP_TEST_REFUSED_KEY"}
    )
    entries.append(
        {
            "key": UNREACHABLE,
            # A path prefix too, so that the error shows the full URL it could not reach.
            "base_url": f"http://127.0.0.1:{closed_port()}/t/{UNREACHABLE}/",
            "api_key_env": api_key_env_name(UNREACHABLE),
        }
    )
    monkeypatch.setenv(SITES_FILE_ENV, str(write_sites_file(tmp_path / "sites.yaml", entries)))
    for name, value in server.api_key_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TP_TEST_REFUSED_KEY", "not-the-key-of-main")
    monkeypatch.setenv(api_key_env_name(UNREACHABLE), "k-down")
    return Env(server=server, instance=instance, database_url=dashboard_env)


def materialize(env: Env, site: str, *entities: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        template_assets,
        selection=list(entities),
        partition_key=site,
        instance=env.instance,
        resources={
            # The simulator has no faults here; no HTTP retry keeps the failure tests fast.
            "template_client": TemplateClientResource(max_retries=0, connect_timeout=2.0),
            IO_MANAGER_KEY: TemplatePostgresIOManager(
                database_url=dg.EnvVar(db.DASHBOARD_DATABASE_URL_ENV)
            ),
            "template_check_settings": TemplateCheckSettings(),
            "template_sync_settings": TemplateSyncSettings(),
        },
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult, entity: str) -> dict[str, Any]:
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == entity
    ]
    return dict(event.materialization.metadata)


def values(md: dict[str, Any]) -> dict[str, Any]:
    return {name: value.value for name, value in md.items()}


def live_rows(url: str, entity: str, site: str) -> dict[str, dict[str, Any]]:
    rows = query(
        url,
        f"SELECT xmin::text AS xmin, * FROM template_{entity} "
        "WHERE site = %s AND deleted_at IS NULL",
        site,
    )
    # Keyed by the id as text, like the records served (and the rejects).
    return {str(row["template_id"]): row for row in rows}


def rejects(url: str, entity: str, site: str, run_id: str) -> list[dict[str, Any]]:
    return query(
        url,
        "SELECT template_id, reason, payload FROM template_rejects "
        "WHERE site = %s AND entity = %s AND last_run_id = %s",
        site,
        entity,
        run_id,
    )


def count_rows(url: str, table: str, site: str) -> int:
    """Rows of ``site`` in ``table``; 0 when the table does not exist (yet)."""
    [exists] = query(url, "SELECT to_regclass(%s) IS NOT NULL AS ok", table)
    if not exists["ok"]:
        return 0
    [row] = query(url, f"SELECT count(*) AS n FROM {table} WHERE site = %s", site)
    return int(row["n"])


def _text(record: dict[str, Any], field: str) -> str | None:
    value = record.get(field)
    return None if value is None else str(value).strip() or None


# --- entity-specific expectations on the stored rows of valid records ---------------------------


def _check_paintings(env: Env, site: str, served: dict[str, dict], rows: dict[str, dict]) -> None:
    base = env.server.base_url(site)
    assert base.endswith(f"/t/{site}/")  # the simulator serves every site under a path prefix
    for template_id, row in rows.items():
        record = served[template_id]
        assert row["name"] == record["name"].strip()
        assert row["price"] == to_decimal(record["price"]).quantize(Decimal("0.01"))
        assert row["image"] == record["image"]
        assert row["image_url"] == base + record["image"]
        assert row["image_url"].startswith(base)


def _check_users(env: Env, site: str, served: dict[str, dict], rows: dict[str, dict]) -> None:
    for template_id, row in rows.items():
        record = served[template_id]
        assert row["email"] == record["email"]
        assert row["role"] == record.get("role", "user")
        assert row["create_date"].tzinfo is not None


def _check_orders(env: Env, site: str, served: dict[str, dict], rows: dict[str, dict]) -> None:
    for template_id, row in rows.items():
        record = served[template_id]
        assert row["total_price"] == to_decimal(record["total_price"]).quantize(Decimal("0.01"))
        assert row["item_count"] == len(record["items"]) == len(row["items"])
        assert row["customer_name"] == _text(record, "customer_name")


def _check_exhibitions(env: Env, site: str, served: dict[str, dict], rows: dict[str, dict]) -> None:
    for template_id, row in rows.items():
        record = served[template_id]
        assert row["title"] == record["title"].strip()
        assert row["start_date"].isoformat() == record["start_date"]


def _check_requests(env: Env, site: str, served: dict[str, dict], rows: dict[str, dict]) -> None:
    for template_id, row in rows.items():
        record = served[template_id]
        assert row["message"] == _text(record, "message")
        budget = to_decimal(record.get("budget"))
        assert row["budget"] == (None if budget is None else budget.quantize(Decimal("0.01")))


ENTITY_CHECKS: dict[str, Callable[[Env, str, dict, dict], None]] = {
    "paintings": _check_paintings,
    "users": _check_users,
    "orders": _check_orders,
    "exhibitions": _check_exhibitions,
    "custom_requests": _check_requests,
}


# --- every record served is stored or quarantined ----------------------------------------------


@pytest.mark.parametrize("site", [MAIN, NAMED], ids=["success-envelope", "named-envelope"])
@pytest.mark.parametrize("entity", LIST_ENTITIES)
def test_list_asset_stores_or_rejects_every_served_record(env, site, entity):
    result = materialize(env, site, entity)
    assert result.success

    data = env.data(site)
    served = {str(record["id"]): record for record in data.records(entity)}
    invalid = {str(record_id) for record_id in data.invalid_ids[entity]}
    # Several pages, and something to quarantine.
    assert invalid and len(served) > env.server.app.state.runtime[site].site.page_cap
    valid = set(served) - invalid

    rows = live_rows(env.database_url, entity, site)
    rejected = rejects(env.database_url, entity, site, result.run_id)
    assert set(rows) == valid
    assert sorted(r["template_id"] for r in rejected) == sorted(invalid)
    # Keyed by the id as the site sent it, as the rejects keep it (12.5 for a non-integer id).
    kinds = {str(record_id): kind for record_id, kind in data.invalid_kinds[entity].items()}
    for reject in rejected:
        # The reason names the field the simulator broke on purpose.
        field = BROKEN_FIELD[kinds[reject["template_id"]]]
        assert f"{field}: " in reject["reason"], (reject, kinds)
    assert all(str(r["payload"]["id"]) == r["template_id"] for r in rejected)
    ENTITY_CHECKS[entity](env, site, served, rows)

    md = metadata(result, entity)
    counts = values(md)
    assert {name: counts[name] for name in COUNT_KEYS} == {
        "fetched": len(served),
        "valid": len(valid),
        "rejected": len(invalid),
        "duplicates": 0,
        "inserted": len(valid),
        "updated": 0,
        "unchanged": 0,
    }
    assert (counts["deleted"], counts["restored"]) == (0, 0)
    assert counts["dagster/row_count"] == len(valid)
    assert counts["table"] == f"template_{entity}"
    assert counts["duration_s"] >= 0
    # Unknown fields the site sent (on valid and invalid records alike) are reported.
    sent_fields = {name for record in served.values() for name in record}
    assert set(counts["new_fields"]) == sent_fields - KNOWN_FIELDS[entity]
    # The preview shows rows, never contact details.
    assert md["preview"].value.startswith("| ") and "@" not in md["preview"].value


@pytest.mark.parametrize("site", [MAIN, NAMED], ids=["success-envelope", "named-envelope"])
def test_settings_masked_values_are_never_stored(env, site):
    result = materialize(env, site, "settings")
    assert result.success

    served = {entry["key"]: entry["value"] for entry in env.data(site).settings}
    masked = {key for key, value in served.items() if value == MASKED_VALUE}
    assert masked >= {"stripe_secret_key", "smtp_password"}
    rows = {
        row["key"]: row
        for row in query(
            env.database_url,
            "SELECT key, value, is_masked FROM template_settings "
            "WHERE site = %s AND deleted_at IS NULL",
            site,
        )
    }
    assert set(rows) == set(served)
    for key, row in rows.items():
        if key in masked:
            assert (row["value"], row["is_masked"]) == (None, True), key
        else:
            assert (row["value"], row["is_masked"]) == (str(served[key]), False), key
    assert not query(
        env.database_url,
        "SELECT 1 FROM template_settings WHERE value LIKE %s",
        f"%{MASKED_VALUE}%",
    )
    counts = values(metadata(result, "settings"))
    assert (counts["fetched"], counts["valid"], counts["rejected"]) == (len(served), len(served), 0)
    assert counts["inserted"] == len(served)


def test_stats_row_and_numeric_metadata(env):
    result = materialize(env, MAIN, "stats")
    assert result.success

    reported = env.data(MAIN).stats()
    [row] = query(
        env.database_url,
        "SELECT * FROM template_stats WHERE site = %s AND run_id = %s",
        MAIN,
        result.run_id,
    )
    for name in ("paintings", "users", "orders", "exhibitions", "custom_requests"):
        assert row[name] == reported[name], name
    assert row["revenue"] == Decimal(reported["revenue"])
    assert row["payload"]["last_updated"] == reported["last_updated"]

    md = metadata(result, "stats")
    # The UI plots numeric metadata over time: the site's numbers must be numbers.
    for name in ("paintings", "users", "orders", "exhibitions", "custom_requests"):
        assert isinstance(md[name], dg.IntMetadataValue), name
        assert md[name].value == reported[name]
    assert isinstance(md["revenue"], dg.FloatMetadataValue)
    assert md["revenue"].value == pytest.approx(float(reported["revenue"]))
    assert md["available_paintings"].value == reported["available_paintings"]
    assert md["sold_paintings"].value == reported["sold_paintings"]
    assert "last_updated" not in md  # text is not a plottable number
    counts = values(md)
    assert (counts["fetched"], counts["valid"], counts["inserted"]) == (1, 1, 1)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {"paintings": 3, "users": None, "revenue": Decimal("10.50"), "payload": {}},
            {"paintings": 3, "revenue": 10.5},
        ),
        (
            # Only plain top-level numbers of the document: no text, boolean, NaN, nested
            # value, alias of a modelled counter or name Dagster reserves.
            {
                "orders": 2,
                "payload": {
                    "orders": 2,
                    "total_orders": 2,
                    "sold_paintings": 4,
                    "conversion": 0.25,
                    "last_updated": "2025-06-30T18:00:00Z",
                    "maintenance": True,
                    "broken": float("nan"),
                    "by_month": {"2025-06": 3},
                    "dagster/row_count": 99,
                    "with space": 1,
                },
            },
            {"orders": 2, "sold_paintings": 4, "conversion": 0.25},
        ),
        (
            {"paintings": 1, "payload": {f"n{i}": i for i in range(50)}},
            {"paintings": 1, **{f"n{i}": i for i in range(20)}},
        ),
    ],
    ids=["counters-and-revenue", "document-numbers-only", "bounded"],
)
def test_stats_metadata(row, expected):
    md = stats_metadata(row)
    assert {name: value.value for name, value in md.items()} == expected
    assert all(
        isinstance(value, dg.IntMetadataValue | dg.FloatMetadataValue) for value in md.values()
    )


def test_order_items_are_derived_from_the_stored_orders(env):
    result = materialize(env, ITEMS, "orders", "order_items")
    assert result.success

    data = env.data(ITEMS)
    invalid = {str(record_id) for record_id in data.invalid_ids["orders"]}
    valid_orders = [o for o in data.orders if str(o["id"]) not in invalid]
    items = query(
        env.database_url,
        "SELECT * FROM template_order_items WHERE site = %s AND deleted_at IS NULL "
        "ORDER BY order_id, line_no",
        ITEMS,
    )
    by_order: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_order.setdefault(str(item["order_id"]), []).append(item)
    # Orders without a line (and rejected orders) have no item rows at all.
    assert set(by_order) == {str(o["id"]) for o in valid_orders if o["items"]}
    for order in valid_orders:
        lines = by_order.get(str(order["id"]), [])
        assert [line["line_no"] for line in lines] == list(range(1, len(order["items"]) + 1))
        for line, served in zip(lines, order["items"], strict=True):
            assert line["painting_id"] == served["painting_id"]
            assert line["price"] == to_decimal(served["price"]).quantize(Decimal("0.01"))
            assert line["quantity"] == served["quantity"]
            assert line["name"] == served["name"].strip()

    expected_lines = sum(len(o["items"]) for o in valid_orders)
    counts = values(metadata(result, "order_items"))
    assert (counts["fetched"], counts["valid"], counts["inserted"]) == (expected_lines,) * 3
    assert counts["rejected"] == 0
    stored_counts = query(
        env.database_url,
        "SELECT template_id, item_count FROM template_orders WHERE site = %s",
        ITEMS,
    )
    assert sum(r["item_count"] for r in stored_counts) == expected_lines


# --- re-sync --------------------------------------------------------------------------------------


def test_resync_writes_only_what_changed(env):
    first = materialize(env, CHURN, "paintings")
    assert first.success
    data = env.data(CHURN)
    before = live_rows(env.database_url, "paintings", CHURN)
    valid_ids = sorted(before, key=int)
    changed_id, deleted_id = valid_ids[0], valid_ids[-1]

    new_id = max(record["id"] for record in data.paintings) + 1  # never a reused id

    data.update_painting(int(changed_id), name="Les Coquelicots (retouchée)", price="1450.00")
    data.delete_painting(int(deleted_id))
    added = data.add_painting(id=new_id)
    second = materialize(env, CHURN, "paintings")
    assert second.success

    counts = values(metadata(second, "paintings"))
    assert (counts["inserted"], counts["updated"], counts["deleted"]) == (1, 1, 1)
    assert (counts["restored"], counts["duplicates"]) == (0, 0)
    assert counts["unchanged"] == len(before) - 2
    assert counts["dagster/row_count"] == len(before)

    after = live_rows(env.database_url, "paintings", CHURN)
    assert set(after) == set(before) - {deleted_id} | {str(added["id"])}
    untouched = set(before) - {changed_id, deleted_id}
    assert {i: after[i]["xmin"] for i in untouched} == {i: before[i]["xmin"] for i in untouched}
    changed = after[changed_id]
    assert (changed["name"], changed["price"]) == ("Les Coquelicots (retouchée)", Decimal("1450"))
    assert changed["first_seen_at"] == before[changed_id]["first_seen_at"]
    assert changed["updated_at"] > before[changed_id]["updated_at"]
    assert after[str(added["id"])]["image_url"] == env.server.base_url(CHURN) + added["image"]
    [gone] = query(
        env.database_url,
        "SELECT deleted_at, last_run_id FROM template_paintings "
        "WHERE site = %s AND template_id = %s",
        CHURN,
        deleted_id,
    )
    assert gone["deleted_at"] is not None and gone["last_run_id"] == second.run_id


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("site", "expected"),
    [
        (REFUSED, ("HTTP 401", "API key was refused", "TP_TEST_REFUSED_KEY")),
        (UNREACHABLE, ("could not reach the site", "connection refused")),
    ],
    ids=["refused-key", "unreachable"],
)
@pytest.mark.parametrize(("entity", "endpoint"), [("paintings", "paintings"), ("stats", "stats")])
def test_failing_site_fails_the_step_writes_nothing_and_is_not_retried(
    env, site, expected, entity, endpoint
):
    result = materialize(env, site, entity)
    assert not result.success

    [failure] = result.get_step_failure_events()
    assert failure.step_key == "template_sync"
    data = failure.step_failure_data
    assert data.user_failure_data is not None  # a dg.Failure, raised by the asset itself
    message = data.user_failure_data.description
    # The site, then what could not be read (the stats come first) and why.
    assert message.startswith(f"1 of 1 site(s) failed: {site} (")
    assert "stats: " in message
    for part in expected:
        assert part in message
    if site == UNREACHABLE:  # the address it tried, path prefix included
        assert f"/t/{UNREACHABLE}/api/export/stats)" in message
    assert "not-the-key-of-main" not in message and "k-down" not in message
    event_types = {event.event_type for event in result.all_events}
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in event_types
    assert dg.DagsterEventType.STEP_RESTARTED not in event_types
    assert not result.get_asset_materialization_events()

    for table in (f"template_{entity}", "template_rejects"):
        assert count_rows(env.database_url, table, site) == 0, table
    # Nothing written, but the failed attempt is recorded with its kind (the fleet view reads
    # it), and without the key.
    kind = "auth" if site == REFUSED else "unreachable"
    runs = query(env.database_url, "SELECT * FROM template_sync_runs WHERE site = %s", site)
    assert runs and {(r["status"], r["error_kind"]) for r in runs} == {("failed", kind)}
    assert all(r["inserted"] == r["updated"] == r["deleted"] == 0 for r in runs)
    assert not any("not-the-key-of-main" in r["error"] or "k-down" in r["error"] for r in runs)
    [state] = query(
        env.database_url,
        "SELECT * FROM template_sync_state WHERE site = %s AND entity = %s",
        site,
        entity,
    )
    assert state["consecutive_failures"] == 1 and state["last_error_kind"] == kind


def test_every_invalid_kind_of_the_simulator_has_its_field():
    assert set(BROKEN_FIELD) == {kind for kinds in INVALID_KINDS.values() for kind in kinds}
