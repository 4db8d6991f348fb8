"""The write path (``store.writer.write_snapshot``) against a real PostgreSQL database.

Behaviour under test: a snapshot is merged into its table atomically and writes only what
changed (an unchanged re-sync leaves every row's ``xmin`` untouched); updates keep
``first_seen_at`` and move ``updated_at``; rows deleted upstream are soft-deleted and restored
when they return; the mass-delete guard refuses (and records) a snapshot that would empty a
site; duplicate keys resolve to the last occurrence; a failure anywhere leaves the table, the
rejects and the counts exactly as before and records a failed run; concurrent writers of one
site serialise; hostile and non-Latin strings round-trip; stats are appended; settings and order
items use their own keys.
"""

from __future__ import annotations

import pickle
import threading
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from template_pipeline.domain.batches import Reject
from template_pipeline.store import merge as merge_module
from template_pipeline.store import writer as writer_module
from template_pipeline.store.reads import read_live_rows
from template_pipeline.store.results import (
    MassDeleteRefusedError,
    SnapshotContractError,
    SyncResult,
)
from template_pipeline.store.tables import ENTITY_TABLES
from template_pipeline_tests.fixtures.helpers import query
from template_pipeline_tests.fixtures.snapshots import painting, snap, sync, sync_runs, table_rows

# --- helpers -----------------------------------------------------------------------------------


# --- merge -------------------------------------------------------------------------------------


def test_first_sync_inserts_every_row_with_bookkeeping(url, site):
    rows = [painting(1), painting(2, price=Decimal("99.9"), year=None), painting(3)]
    result = sync(url, snap(site, rows[:2], rows[2:]), run_id="run-first")

    assert (result.status, result.fetched, result.valid, result.inserted) == ("success", 3, 3, 3)
    assert (result.updated, result.unchanged, result.deleted, result.restored) == (0, 0, 0, 0)
    assert result.live_rows == 3 and result.table == "template_paintings"
    stored = table_rows(url, site)
    assert list(stored) == ["1", "2", "3"]
    two = stored["2"]
    assert two["price"] == Decimal("99.90") and two["year"] is None
    assert two["extra"] == {"frame": "oak"} and two["image"] == "Images/painting_2.jpg"
    assert two["first_seen_at"] == two["updated_at"] == two["synced_at"]
    assert two["deleted_at"] is None and two["last_run_id"] == "run-first"
    [run] = sync_runs(url, site)
    assert (run["status"], run["run_id"], run["entity"]) == ("success", "run-first", "paintings")
    assert (run["fetched"], run["valid"], run["inserted"], run["error"]) == (3, 3, 3, None)
    assert run["started_at"] <= run["finished_at"]


def test_unchanged_resync_writes_no_row(url, site):
    rows = [painting(i) for i in range(20)]
    sync(url, snap(site, rows))
    before = table_rows(url, site)

    result = sync(url, snap(site, rows[:7], rows[7:]))

    assert (result.unchanged, result.inserted, result.updated, result.deleted) == (20, 0, 0, 0)
    after = table_rows(url, site)
    assert {k: r["xmin"] for k, r in after.items()} == {k: r["xmin"] for k, r in before.items()}
    assert after == before


def test_changed_row_is_the_only_one_rewritten(url, site):
    rows = [painting(i) for i in range(5)]
    sync(url, snap(site, rows))
    before = table_rows(url, site)

    rows[2] = painting(2, price=Decimal("1500.00"), extra={"frame": "walnut"})
    result = sync(url, snap(site, rows), run_id="run-update")

    assert (result.updated, result.unchanged, result.inserted) == (1, 4, 0)
    after = table_rows(url, site)
    changed = {k for k in after if after[k]["xmin"] != before[k]["xmin"]}
    assert changed == {"2"}
    assert after["2"]["price"] == Decimal("1500.00") and after["2"]["extra"] == {"frame": "walnut"}
    assert after["2"]["first_seen_at"] == before["2"]["first_seen_at"]
    assert after["2"]["updated_at"] > before["2"]["updated_at"]
    assert after["2"]["last_run_id"] == "run-update"
    assert after["3"] == before["3"]


def test_equal_values_in_another_form_are_not_a_change(url, site):
    sync(url, snap(site, [painting(1, price=Decimal("10.5"), extra={"a": 1, "b": 2})]))
    result = sync(url, snap(site, [painting(1, price=Decimal("10.50"), extra={"b": 2, "a": 1})]))
    assert (result.unchanged, result.updated) == (1, 0)


def test_row_gone_upstream_is_soft_deleted_then_restored(url, site):
    rows = [painting(i) for i in range(12)]
    sync(url, snap(site, rows))

    gone = sync(url, snap(site, rows[1:]), run_id="run-gone")
    assert (gone.deleted, gone.unchanged, gone.live_rows) == (1, 11, 11)
    deleted = table_rows(url, site)["0"]
    assert deleted["deleted_at"] is not None and deleted["last_run_id"] == "run-gone"
    assert 0 not in set(read_live_rows(url, "paintings", site)["template_id"].tolist())

    back = sync(url, snap(site, rows))
    assert (back.restored, back.deleted, back.unchanged, back.live_rows) == (1, 0, 11, 12)
    restored = table_rows(url, site)["0"]
    assert restored["deleted_at"] is None
    # Same content as when it left: its content did not change, so updated_at stays.
    assert restored["updated_at"] == deleted["updated_at"]
    assert restored["first_seen_at"] == deleted["first_seen_at"]


def test_mass_delete_is_refused_and_recorded_and_writes_nothing(url, site):
    rows = [painting(i) for i in range(20)]
    sync(url, snap(site, rows))
    before = table_rows(url, site)

    with pytest.raises(MassDeleteRefusedError) as refused:
        sync(url, snap(site, rows[:5], [painting(99)]), run_id="run-refused")

    error = refused.value
    assert (error.site, error.entity, error.live_rows, error.to_delete) == (
        site,
        "paintings",
        20,
        15,
    )
    assert site in str(error) and "15 of 20" in str(error) and "max_delete_fraction" in str(error)
    assert table_rows(url, site) == before
    runs = sync_runs(url, site)
    assert runs[-1]["status"] == "refused" and runs[-1]["run_id"] == "run-refused"
    assert (runs[-1]["deleted"], runs[-1]["inserted"], runs[-1]["valid"]) == (15, 0, 6)
    assert "max_delete_fraction" in runs[-1]["error"]

    allowed = sync(url, snap(site, rows[:5]), max_delete_fraction=1.0)
    assert (allowed.deleted, allowed.live_rows) == (15, 5)


@pytest.mark.parametrize(
    "empty",
    [
        pytest.param(lambda s: snap(s), id="no-batches"),
        pytest.param(lambda s: snap(s, []), id="empty-page"),
        pytest.param(lambda s: snap(s, [], rejects=[Reject("1", "bad price", {})]), id="all-bad"),
    ],
)
def test_empty_snapshot_never_wipes_a_site(url, site, empty):
    sync(url, snap(site, [painting(1), painting(2)]))  # below min_rows_for_guard
    before = table_rows(url, site)

    with pytest.raises(MassDeleteRefusedError, match="all 2 live rows"):
        sync(url, empty(site))

    assert table_rows(url, site) == before
    assert sync_runs(url, site)[-1]["status"] == "refused"


def test_small_site_may_lose_most_rows_below_the_guard_threshold(url, site):
    sync(url, snap(site, [painting(i) for i in range(4)]))
    result = sync(url, snap(site, [painting(0)]))
    assert (result.deleted, result.live_rows) == (3, 1)


def test_first_empty_snapshot_of_a_new_site_is_fine(url, site):
    result = sync(url, snap(site))
    assert (result.status, result.valid, result.live_rows) == ("success", 0, 0)


def test_duplicate_keys_resolve_to_the_last_occurrence(url, site):
    pages = (
        [painting(1, name="first"), painting(2)],
        [painting(3), painting(1, name="second")],
        [painting(1, name="last")],
    )
    result = sync(url, snap(site, *pages))

    assert (result.valid, result.duplicates, result.inserted) == (5, 2, 3)
    assert table_rows(url, site)["1"]["name"] == "last"
    assert sync_runs(url, site)[-1]["duplicates"] == 2


# --- atomicity and concurrency -----------------------------------------------------------------


def test_stream_failure_after_a_copied_batch_leaves_everything_as_before(url, site):
    sync(url, snap(site, [painting(i) for i in range(3)]))
    before = table_rows(url, site)

    failing = snap(
        site,
        [painting(0, name="changed"), painting(7)],
        [painting(8)],
        rejects=[Reject("9", "price is not a number", {"id": 9})],
        fail_after=1,
    )
    with pytest.raises(RuntimeError, match="mid-stream"):
        sync(url, failing, run_id="run-broken")

    assert table_rows(url, site) == before
    assert query(url, "SELECT 1 FROM template_rejects WHERE last_run_id = %s", "run-broken") == []
    run = sync_runs(url, site)[-1]
    assert (run["status"], run["run_id"]) == ("failed", "run-broken")
    assert "RuntimeError" in run["error"] and "mid-stream" in run["error"]
    assert (run["inserted"], run["updated"], run["fetched"]) == (0, 0, 3)


def test_failure_after_the_merge_statements_rolls_them_back(url, site, monkeypatch):
    sync(url, snap(site, [painting(i) for i in range(3)]))
    before = table_rows(url, site)
    merge = merge_module.merge_stage

    def merge_then_fail(*args: Any, **kwargs: Any) -> None:
        merge(*args, **kwargs)
        raise RuntimeError("injected after the merge")

    monkeypatch.setattr(writer_module, "merge_stage", merge_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        sync(url, snap(site, [painting(0, name="new"), painting(5)]))

    assert table_rows(url, site) == before
    assert sync_runs(url, site)[-1]["status"] == "failed"


def test_value_the_database_refuses_fails_the_sync_atomically(url, site):
    sync(url, snap(site, [painting(1)]))
    before = table_rows(url, site)
    too_big = painting(2, price=Decimal("123456789012.00"))  # numeric(12, 2) holds < 10^10

    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        sync(url, snap(site, [painting(1, name="new")], [too_big]), run_id="run-overflow")

    assert table_rows(url, site) == before
    run = sync_runs(url, site)[-1]
    assert run["status"] == "failed" and "numeric field overflow" in run["error"]


def test_row_not_matching_the_table_fails_with_a_clear_error(url, site):
    bad = painting(1)
    del bad["technique"]
    bad["colour"] = "blue"
    with pytest.raises(SnapshotContractError, match=r"missing: technique; unexpected: colour"):
        sync(url, snap(site, [bad]))
    assert table_rows(url, site) == {}
    assert sync_runs(url, site)[-1]["status"] == "failed"


def test_concurrent_writers_of_one_site_end_in_one_consistent_state(url, site):
    versions = {
        "a": [painting(i, name=f"a{i}") for i in range(30)],
        "b": [painting(i, name=f"b{i}") for i in range(5, 40)],
    }
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def writer(label: str) -> None:
        barrier.wait(timeout=5)
        try:
            results[label] = sync(url, snap(site, versions[label][:10], versions[label][10:]))
        except Exception as exc:  # surfaced by the assertion below
            results[label] = exc

    threads = [threading.Thread(target=writer, args=(label,)) for label in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert all(isinstance(r, SyncResult) for r in results.values()), results
    live = read_live_rows(url, "paintings", site)
    assert live["template_id"].is_unique
    final = dict(zip(live["template_id"], live["name"], strict=True))
    expected = [{r["template_id"]: r["name"] for r in rows} for rows in versions.values()]
    assert final in expected
    assert [r["status"] for r in sync_runs(url, site)] == ["success", "success"]


# --- values ------------------------------------------------------------------------------------

HOSTILE = [
    "'; DROP TABLE template_paintings; --",
    "Robert'); --",
    "back\\slash\ttab\nnew line | pipe",
    "Élodie Côté à Zürich",
    "山水画 の 作品",
    "🎨🖼️ emoji",
    "مرحبا بالعالم",
    "%s %(name)s {} $1",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_and_non_latin_strings_round_trip(url, site, text):
    row = painting(1, name=text, category=text, site_name=text, extra={text: [text]})
    sync(url, snap(site, [row]))

    [stored] = table_rows(url, site).values()
    assert (stored["template_id"], stored["name"], stored["category"]) == (1, text, text)
    assert stored["site_name"] == text
    assert stored["extra"] == {text: [text]}
    assert sync(url, snap(site, [row])).unchanged == 1
    assert query(url, "SELECT to_regclass('template_paintings') IS NOT NULL AS ok")[0]["ok"]


def test_rejects_are_quarantined_with_the_run_id(url, site):
    keyless = painting(1, template_id=None)
    rejects = [Reject("7", "price: not a number", {"id": 7, "price": "abc", "name": "Élan"})]
    result = sync(url, snap(site, [painting(2), keyless], rejects=rejects), run_id="run-rej")

    assert (result.valid, result.rejected, result.inserted) == (1, 2, 1)
    stored = query(
        url,
        "SELECT * FROM template_rejects WHERE site = %s ORDER BY template_id NULLS LAST",
        site,
    )
    assert [(r["entity"], r["template_id"], r["last_run_id"]) for r in stored] == [
        ("paintings", "7", "run-rej"),
        ("paintings", None, "run-rej"),
    ]
    assert [(r["times_seen"], r["resolved_at"]) for r in stored] == [(1, None)] * 2
    assert stored[0]["payload"] == {"id": 7, "price": "abc", "name": "Élan"}
    assert stored[0]["reason"] == "price: not a number"
    assert "missing key" in stored[1]["reason"] and stored[1]["payload"]["price"] == "1200.50"


# --- other entities ----------------------------------------------------------------------------


def stats_row(paintings: int) -> dict[str, Any]:
    return {
        "paintings": paintings,
        "users": 3,
        "orders": 2,
        "exhibitions": 1,
        "custom_requests": 0,
        "revenue": Decimal("2400.00"),
        "payload": {"total_paintings": paintings},
    }


def test_stats_are_appended_as_history(url, site):
    first = sync(url, snap(site, [stats_row(10)], entity="stats"), run_id="r1")
    second = sync(url, snap(site, [stats_row(12)], entity="stats"), run_id="r2")

    assert (first.inserted, second.inserted, second.live_rows) == (1, 1, 2)
    history = query(url, "SELECT * FROM template_stats WHERE site = %s ORDER BY id", site)
    assert [(r["run_id"], r["paintings"]) for r in history] == [("r1", 10), ("r2", 12)]
    assert history[1]["revenue"] == Decimal("2400.00") and history[1]["fetched_at"] is not None
    assert history[1]["payload"] == {"total_paintings": 12}
    assert list(read_live_rows(url, "stats", site)["paintings"]) == [10, 12]


def test_unchanged_stats_add_no_history_row(url, site):
    sync(url, snap(site, [stats_row(10)], entity="stats"), run_id="r1")
    again = sync(url, snap(site, [stats_row(10)], entity="stats"), run_id="r2")
    back = sync(url, snap(site, [stats_row(11)], entity="stats"), run_id="r3")
    same_as_first = sync(url, snap(site, [stats_row(10)], entity="stats"), run_id="r4")

    assert (again.inserted, again.unchanged) == (0, 1)
    assert (back.inserted, same_as_first.inserted) == (1, 1)
    history = query(url, "SELECT run_id FROM template_stats WHERE site = %s ORDER BY id", site)
    # Only changes are history; a value that returns is a change again.
    assert [r["run_id"] for r in history] == ["r1", "r3", "r4"]


def test_settings_are_keyed_by_site_and_key(url, site):
    other = f"{site}-other"
    settings = [
        {"key": "site_name", "value": "Atelier", "is_masked": False},
        {"key": "stripe_secret_key", "value": None, "is_masked": True},
    ]
    sync(url, snap(site, settings, entity="settings"))
    sync(url, snap(other, settings[:1], entity="settings"))
    renamed = [{**settings[0], "value": "Atelier Marie"}, settings[1]]
    result = sync(url, snap(site, renamed, entity="settings"))

    assert (result.updated, result.unchanged) == (1, 1)
    stored = table_rows(url, site, "template_settings")
    assert stored["site_name"]["value"] == "Atelier Marie"
    assert stored["stripe_secret_key"]["is_masked"] is True
    assert table_rows(url, other, "template_settings")["site_name"]["value"] == "Atelier"


def order_item(order_id: int, line_no: int, **changes: Any) -> dict[str, Any]:
    row = {
        "order_id": order_id,
        "line_no": line_no,
        "painting_id": 12,
        "name": "Sunset",
        "image": "Images/painting_12.jpg",
        "price": Decimal("300.00"),
        "quantity": 1,
        "extra": {},
    }
    row.update(changes)
    return row


def test_order_items_are_keyed_by_order_and_line(url, site):
    items = [order_item(1, 1), order_item(1, 2), order_item(2, 1)]
    first = sync(url, snap(site, items, entity="order_items"))
    assert first.inserted == 3

    again = [order_item(1, 1, quantity=2), order_item(2, 1), order_item(2, 1, price=1)]
    result = sync(url, snap(site, again, entity="order_items"), max_delete_fraction=1.0)

    assert (result.duplicates, result.updated, result.deleted) == (1, 2, 1)
    stored = table_rows(url, site, "template_order_items")
    assert stored["1/1"]["quantity"] == 2 and stored["2/1"]["price"] == Decimal("1.00")
    assert stored["1/2"]["deleted_at"] is not None


# --- Dagster -----------------------------------------------------------------------------------


# --- schema ------------------------------------------------------------------------------------


def test_tables_have_the_contract_primary_keys(url):
    rows = query(
        url,
        "SELECT tc.table_name, array_agg(k.column_name::text ORDER BY k.ordinal_position) AS cols"
        " FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name)"
        " WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_name LIKE 'template_%%'"
        " GROUP BY tc.table_name",
    )
    keys = {r["table_name"]: r["cols"] for r in rows}
    for name in ("paintings", "users", "orders", "exhibitions", "custom_requests"):
        assert keys[f"template_{name}"] == ["site", "template_id"]
    assert keys["template_settings"] == ["site", "key"]
    assert keys["template_order_items"] == ["site", "order_id", "line_no"]
    assert keys["template_stats"] == keys["template_rejects"] == ["id"]


# --- pure functions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("live", "to_delete", "kept", "fraction", "min_rows", "refused"),
    [
        (20, 0, 20, 0.5, 10, False),  # nothing to delete
        (20, 10, 10, 0.5, 10, False),  # exactly the limit
        (20, 11, 9, 0.5, 10, True),  # over the limit
        (9, 8, 1, 0.5, 10, False),  # small site: the share rule does not apply
        (3, 3, 0, 0.5, 10, True),  # empty snapshot of a small site
        (3, 3, 0, 1.0, 10, False),  # guard disabled
        (100, 100, 0, 1.0, 10, False),  # guard disabled, empty snapshot
        (100, 30, 70, 0.2, 10, True),  # a stricter limit
    ],
)
def test_mass_delete_guard_rule(live, to_delete, kept, fraction, min_rows, refused):
    assert merge_module.refuse(live, to_delete, kept, fraction, min_rows) is refused


def test_refused_error_survives_pickling():
    error = MassDeleteRefusedError(
        site="s",
        entity="users",
        live_rows=10,
        to_delete=9,
        max_delete_fraction=0.5,
        min_rows_for_guard=10,
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.site, copy.to_delete, str(copy)) == ("s", 9, str(error))


def test_every_entity_has_a_table_spec():
    from template_pipeline.domain.entities import NAMES as ENTITIES

    assert set(ENTITY_TABLES) == set(ENTITIES)
    for spec in ENTITY_TABLES.values():
        assert set(spec.keys) <= set(spec.data_columns)
        assert not {"email", "extra", "value"} & set(spec.preview_columns)
