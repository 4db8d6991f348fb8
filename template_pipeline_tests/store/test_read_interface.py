"""The Dashboard's read interface: the ``dashboard_*`` views and ``template_sync_state``.

Under test: each view has exactly the columns the Dashboard's pages read (plus ``site`` and the
id) and only live rows; ids are integers, so the Dashboard's ``WHERE template_id = 5`` works;
order items are ``{name, price, quantity}`` with numeric prices; the stats view is each site's
latest document; secret settings show no value; ``sync_timestamp`` is the end of the last
successful sync of the site and entity, which a failed or refused sync leaves alone (counting
the failures), and which an unchanged re-sync moves without rewriting any entity row.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from template_pipeline.store.results import MassDeleteRefusedError
from template_pipeline_tests.fixtures.catalog import view_columns
from template_pipeline_tests.fixtures.helpers import query, write_records
from template_pipeline_tests.fixtures.snapshots import painting, snap, sync, table_rows

# What the Dashboard's templates read, per view (DESIGN.md), after ``site`` and the id.
READ_INTERFACE = {
    "dashboard_paintings": [
        "site", "id", "name", "category", "price", "status", "image_url", "site_name",
        "sync_timestamp",
    ],
    "dashboard_users": [
        "site", "id", "name", "email", "role", "create_date", "site_name", "sync_timestamp",
    ],
    "dashboard_orders": [
        "site", "id", "customer_name", "email", "total_price", "order_date", "status", "items",
        "sync_timestamp",
    ],
    "dashboard_stats": ["site", "data", "fetched_at", "sync_timestamp"],
    "dashboard_exhibitions": [
        "site", "id", "title", "description", "start_date", "end_date", "location",
        "sync_timestamp",
    ],
    "dashboard_custom_requests": [
        "site", "id", "name", "email", "message", "budget", "status", "created_at",
        "sync_timestamp",
    ],
    "dashboard_settings": ["site", "key", "value", "is_masked", "sync_timestamp"],
}  # fmt: skip

ORDER = {
    "id": 5,
    "customer_name": "Zoé Martin",
    "email": "zoe@example.fr",
    "total_price": "37.50",
    "order_date": "2024-03-01 10:22:00",
    "status": "Payée",
    "items": [
        {"painting_id": 3, "name": "Étude", "image": "i.jpg", "price": "12.50", "quantity": 2},
        {"painting_id": 4, "name": "Esquisse", "price": 12.5},
    ],
}


def _last_success(url: str, site: str, entity: str):
    [row] = query(
        url,
        "SELECT max(finished_at) AS at FROM template_sync_runs "
        "WHERE site = %s AND entity = %s AND status = 'success'",
        site,
        entity,
    )
    return row["at"]


def _state(url: str, site: str, entity: str) -> dict:
    [row] = query(
        url, "SELECT * FROM template_sync_state WHERE site = %s AND entity = %s", site, entity
    )
    return row


@pytest.mark.parametrize(("view", "columns"), sorted(READ_INTERFACE.items()))
def test_views_have_exactly_the_columns_the_dashboard_reads(url, view, columns):
    assert view_columns(url, view) == columns


def test_paintings_view_has_live_rows_with_integer_ids(url, site):
    rows = [painting(i, category="Huile", status="Vendu") for i in (5, 6, 7)]
    sync(url, snap(site, rows))
    sync(url, snap(site, rows[:2]))  # 7 is gone upstream: soft-deleted

    shown = query(url, "SELECT * FROM dashboard_paintings WHERE site = %s ORDER BY id", site)
    assert [r["id"] for r in shown] == [5, 6]
    first = shown[0]
    assert (first["name"], first["category"], first["status"]) == ("Painting 5", "Huile", "Vendu")
    assert first["price"] == Decimal("1200.50")
    assert first["image_url"] == "https://atelier.example/Images/painting_5.jpg"
    assert first["site_name"] == "Atelier"
    assert first["sync_timestamp"] == _last_success(url, site, "paintings")
    # The Dashboard's queries with integer literals.
    [by_id] = query(
        url, "SELECT name FROM template_paintings WHERE site = %s AND template_id = 5", site
    )
    assert by_id["name"] == "Painting 5"
    assert query(url, "SELECT count(*) AS n FROM dashboard_paintings WHERE id = 5")[0]["n"] >= 1


def test_orders_view_items_are_name_price_quantity(url, site):
    write_records(url, site, "orders", [ORDER])
    [order] = query(url, "SELECT * FROM dashboard_orders WHERE site = %s AND id = 5", site)
    assert (order["customer_name"], order["email"], order["status"]) == (
        "Zoé Martin",
        "zoe@example.fr",
        "Payée",
    )
    assert order["total_price"] == Decimal("37.50")
    assert order["order_date"].isoformat() == "2024-03-01T10:22:00+00:00"
    assert order["items"] == [
        {"name": "Étude", "price": 12.5, "quantity": 2},
        {"name": "Esquisse", "price": 12.5, "quantity": 1},
    ]
    [types] = query(
        url,
        "SELECT jsonb_typeof(items -> 0 -> 'price') AS price, "
        "jsonb_typeof(items -> 0 -> 'quantity') AS quantity FROM dashboard_orders "
        "WHERE site = %s",
        site,
    )
    assert types == {"price": "number", "quantity": "number"}


def test_an_order_without_items_shows_an_empty_list(url, site):
    write_records(url, site, "orders", [{**ORDER, "items": []}])
    [order] = query(url, "SELECT items FROM dashboard_orders WHERE site = %s", site)
    assert order["items"] == []


def test_users_view(url, site):
    user = {"id": 8, "name": "Ana", "email": "ana@example.fr", "create_date": "2024-02-01"}
    write_records(url, site, "users", [user])
    [row] = query(url, "SELECT * FROM dashboard_users WHERE site = %s", site)
    assert (row["id"], row["name"], row["email"], row["role"]) == (
        8,
        "Ana",
        "ana@example.fr",
        "user",
    )
    assert row["create_date"].isoformat() == "2024-02-01T00:00:00+00:00"
    assert row["sync_timestamp"] == _last_success(url, site, "users")


def test_stats_view_is_the_latest_document_per_site(url, site):
    write_records(url, site, "stats", [{"paintings": 3, "revenue": "10.00"}], run_id="r1")
    write_records(url, site, "stats", [{"paintings": 4, "revenue": "12.00"}], run_id="r2")
    write_records(url, site, "stats", [{"paintings": 4, "revenue": "12.00"}], run_id="r3")
    [row] = query(url, "SELECT * FROM dashboard_stats WHERE site = %s", site)
    assert row["data"] == {"paintings": 4, "revenue": "12.00"}
    # The unchanged third document added no row, yet it confirmed the data.
    assert row["sync_timestamp"] == _last_success(url, site, "stats")
    assert row["sync_timestamp"] > row["fetched_at"]


def test_settings_view_shows_no_secret(url, site):
    settings = [
        {"key": "site_name", "value": "Atelier"},
        {"key": "stripe_secret_key", "value": "***MASKED***"},
    ]
    write_records(url, site, "settings", settings)
    rows = {
        r["key"]: r for r in query(url, "SELECT * FROM dashboard_settings WHERE site = %s", site)
    }
    assert rows["site_name"]["value"] == "Atelier"
    assert (rows["stripe_secret_key"]["value"], rows["stripe_secret_key"]["is_masked"]) == (
        None,
        True,
    )


def test_an_unchanged_resync_moves_sync_timestamp_and_rewrites_no_entity_row(url, site):
    rows = [painting(i) for i in range(1, 4)]
    sync(url, snap(site, rows), run_id="first")
    before = table_rows(url, site)
    first_seen = _state(url, site, "paintings")

    again = sync(url, snap(site, rows), run_id="again")
    assert again.unchanged == 3 and again.inserted == again.updated == 0
    after = table_rows(url, site)
    assert {k: r["xmin"] for k, r in after.items()} == {k: r["xmin"] for k, r in before.items()}

    state = _state(url, site, "paintings")
    assert state["last_success_at"] > first_seen["last_success_at"]
    assert state["last_success_at"] == _last_success(url, site, "paintings") == again.finished_at
    assert (state["last_run_id"], state["last_status"], state["consecutive_failures"]) == (
        "again",
        "success",
        0,
    )
    shown = query(
        url, "SELECT DISTINCT sync_timestamp FROM dashboard_paintings WHERE site = %s", site
    )
    assert [r["sync_timestamp"] for r in shown] == [state["last_success_at"]]


def test_failed_and_refused_syncs_leave_sync_timestamp_and_count_failures(url, site):
    rows = [painting(i) for i in range(1, 21)]
    ok = sync(url, snap(site, rows), run_id="ok")
    with pytest.raises(RuntimeError):
        sync(url, snap(site, rows, fail_after=0), run_id="broken")
    with pytest.raises(MassDeleteRefusedError):
        sync(url, snap(site, rows[:2]), run_id="short")

    state = _state(url, site, "paintings")
    assert state["last_success_at"] == ok.finished_at
    assert state["last_run_id"] == "ok"
    assert (state["last_status"], state["consecutive_failures"]) == ("refused", 2)
    assert "refused to sync" in state["last_error"]
    assert state["last_attempt_at"] > state["last_success_at"]

    sync(url, snap(site, rows), run_id="back")
    state = _state(url, site, "paintings")
    assert (state["last_status"], state["consecutive_failures"], state["last_error"]) == (
        "success",
        0,
        None,
    )


def test_a_first_sync_that_fails_has_no_sync_timestamp(url, site):
    with pytest.raises(RuntimeError):
        sync(url, snap(site, [painting(1)], fail_after=0), run_id="broken")
    state = _state(url, site, "paintings")
    assert state["last_success_at"] is None and state["consecutive_failures"] == 1
    assert "site went away" in state["last_error"]
