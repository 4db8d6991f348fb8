"""Unchanged records cost next to nothing, and order lines are built in SQL.

Behaviour under test, on a real PostgreSQL: a sync whose unchanged records were let off by the
content-hash filter writes no row (``xmin`` untouched) and still counts them as fetched, valid
and unchanged; a changed, a removed and a new record are updated, soft-deleted and inserted
exactly; a record that comes back is restored; the mass-delete guard sees the let-off records as
kept; a stale stored hash is refreshed without moving ``updated_at``; and the order lines staged
in SQL from the stored orders equal the ones built in Python from the same orders.
"""

from __future__ import annotations

from typing import Any

import pytest

from template_pipeline.defs.sync.fetching import entity_snapshot
from template_pipeline.domain.batches import EntitySnapshot
from template_pipeline.domain.validation import explode_order_items, validate_records
from template_pipeline.store import db
from template_pipeline.store.derived import _ITEM_FIELDS
from template_pipeline.store.reads import live_hashes
from template_pipeline.store.results import MassDeleteRefusedError
from template_pipeline.store.tables import table_spec
from template_pipeline.store.writer import derive_order_items, write_snapshot
from template_pipeline_tests.fixtures.helpers import query

BASE = "http://fast.example/"


def painting(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"Toile {i}",
        "category": "Paysage",
        "price": "100.00",
        "image": f"Images/{i}.jpg",
        **fields,
    }


def sync(url: str, site: str, records: list[dict[str, Any]], run_id: str = "r"):
    with db.connect(url) as conn:
        known = live_hashes(conn, "paintings", site)
        conn.commit()
        snapshot = entity_snapshot(site, "paintings", iter([records]), base_url=BASE, known=known)
        return write_snapshot(url, snapshot, run_id=run_id, conn=conn)


def rows(url: str, site: str) -> dict[str, dict[str, Any]]:
    found = query(
        url,
        "SELECT xmin::text AS xmin, template_id, name, content_hash, updated_at, deleted_at "
        "FROM template_paintings WHERE site = %s",
        site,
    )
    return {str(row["template_id"]): row for row in found}


def test_unchanged_resync_writes_nothing_and_counts_everything(url, site):
    first = sync(url, site, [painting(i) for i in range(1, 6)])
    assert (first.inserted, first.valid) == (5, 5)
    before = rows(url, site)
    assert all(row["content_hash"] is not None for row in before.values())

    again = sync(url, site, [painting(i) for i in range(1, 6)], run_id="r2")
    assert (again.fetched, again.valid, again.unchanged) == (5, 5, 5)
    assert (again.inserted, again.updated, again.deleted, again.restored) == (0, 0, 0, 0)
    assert again.live_rows == 5
    assert rows(url, site) == before


def test_changed_removed_and_new_records_are_the_only_writes(url, site):
    sync(url, site, [painting(i) for i in range(1, 6)])
    before = rows(url, site)
    page = [painting(1, name="Retouchée"), painting(2), painting(3), painting(4), painting(9)]
    result = sync(url, site, page, run_id="r2")
    assert (result.updated, result.deleted, result.inserted, result.unchanged) == (1, 1, 1, 3)
    after = rows(url, site)
    assert {k: after[k]["xmin"] for k in "234"} == {k: before[k]["xmin"] for k in "234"}
    assert (
        after["1"]["name"] == "Retouchée" and after["1"]["updated_at"] > before["1"]["updated_at"]
    )
    assert after["5"]["deleted_at"] is not None and after["9"]["deleted_at"] is None

    back = sync(url, site, [*page, painting(5)], run_id="r3")
    assert (back.restored, back.inserted, back.deleted) == (1, 0, 0)
    assert rows(url, site)["5"]["deleted_at"] is None


def test_the_guard_counts_unchanged_records_as_kept(url, site):
    sync(url, site, [painting(i) for i in range(1, 21)])
    # 12 of 20 unchanged, 8 gone: 40 %, under the 50 % the guard allows.
    fine = sync(url, site, [painting(i) for i in range(1, 13)], run_id="r2")
    assert fine.deleted == 8
    with pytest.raises(MassDeleteRefusedError):
        sync(url, site, [painting(1)], run_id="r3")  # 11 of 12 would go
    assert len([r for r in rows(url, site).values() if r["deleted_at"] is None]) == 12


def test_a_duplicate_key_after_an_unchanged_record_wins(url, site):
    sync(url, site, [painting(1), painting(2)])
    result = sync(url, site, [painting(1), painting(2), painting(1, name="Later")], run_id="r2")
    assert result.duplicates == 1
    assert rows(url, site)["1"]["name"] == "Later"


def test_a_stale_hash_is_refreshed_without_moving_updated_at(url, site):
    sync(url, site, [painting(1)])
    with db.connect(url) as conn:
        conn.execute("UPDATE template_paintings SET content_hash = 42 WHERE site = %s", (site,))
        conn.commit()
    before = rows(url, site)["1"]
    result = sync(url, site, [painting(1)], run_id="r2")
    after = rows(url, site)["1"]
    assert after["content_hash"] != 42 and after["updated_at"] == before["updated_at"]
    assert result.updated == 1  # rewritten once for its hash; unchanged the next time
    assert sync(url, site, [painting(1)], run_id="r3").updated == 0


def test_rows_without_a_hash_never_reset_a_stored_one(url, site):
    sync(url, site, [painting(1)])
    stored = rows(url, site)["1"]
    batch = validate_records("paintings", [painting(1)], base_url=BASE)
    result = write_snapshot(url, EntitySnapshot(site, "paintings", [batch]), run_id="r2")
    assert result.updated == 0
    assert rows(url, site)["1"] == stored


def _orders() -> list[dict[str, Any]]:
    who = {"email": "client@example.fr", "order_date": "2026-11-30 10:00:00"}
    return [
        {
            "id": 1,
            "customer_name": "Zoé",
            "total_price": "30.00",
            "items": [
                {"painting_id": 3, "name": "Étude", "price": "10.00", "quantity": 2, "frame": "x"},
                {"painting_id": 4, "name": "Nu", "price": "10.00"},
            ],
            **who,
        },
        {"id": 2, "customer_name": "Léa", "total_price": "5.00", "items": "[]", **who},
        {"id": 3, "customer_name": "Ana", "total_price": "7.50",
         "items": [{"name": "Sans id", "price": "7.50", "quantity": 1}], **who},
    ]  # fmt: skip


def test_order_lines_built_in_sql_equal_the_python_ones(url, site):
    batch = validate_records("orders", _orders())
    write_snapshot(url, EntitySnapshot(site, "orders", [batch]), run_id="r1")
    result = derive_order_items(url, site, run_id="r1")
    assert (result.inserted, result.fetched) == (3, 3)
    stored = query(
        url,
        "SELECT order_id, line_no, painting_id, name, image, price, quantity, extra "
        "FROM template_order_items WHERE site = %s ORDER BY order_id, line_no",
        site,
    )
    expected = explode_order_items((row["template_id"], row["items"]) for row in batch.rows)
    assert [{k: r[k] for k in expected[0]} for r in stored] == [
        {k: e[k] for k in expected[0]} for e in expected
    ]
    again = derive_order_items(url, site, run_id="r2")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)


def test_the_staged_order_line_columns_are_the_tables():
    columns = table_spec("order_items").data_columns
    assert columns == ("order_id", "line_no", *_ITEM_FIELDS, "extra")
