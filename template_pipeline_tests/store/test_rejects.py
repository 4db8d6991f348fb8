"""``template_rejects`` as state (``store.rejects``) and revision 0006, which converts the log.

Under test: the same bad record over three syncs is one row with ``times_seen = 3`` (first and
last seen, last run), while each run's ``template_sync_runs`` row still counts it; it is resolved
when the site serves a valid version and when the site stops serving it, and reopened when it
comes back; a record without an id is identified by its payload; a record changed but still bad
is a new row; the same record twice in a payload counts once; a failed sync changes no reject;
other sites and entities are left alone. Revision 0006 collapses the old rows into one per
record (``times_seen`` the count, first/last seen the oldest/newest), resolves those a later
successful sync did not see, and a migrated reject synced again is counted, not duplicated.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from template_pipeline.domain.batches import Reject
from template_pipeline.store import db, migrate
from template_pipeline_tests.fixtures.catalog import scratch_database
from template_pipeline_tests.fixtures.helpers import query
from template_pipeline_tests.fixtures.snapshots import painting, snap, sync, sync_runs

BAD_7 = Reject("7", "price: not a number", {"id": 7, "price": "abc", "name": "Élan"})


def rejects(url: str, site: str) -> list[dict[str, Any]]:
    return query(
        url,
        "SELECT * FROM template_rejects WHERE site = %s ORDER BY first_seen_at, id",
        site,
    )


def test_the_same_bad_record_over_three_syncs_is_one_row_seen_three_times(url, site):
    for run in ("run-1", "run-2", "run-3"):
        sync(url, snap(site, [painting(1)], rejects=[BAD_7]), run_id=run)

    [row] = rejects(url, site)
    assert (row["template_id"], row["times_seen"], row["last_run_id"]) == ("7", 3, "run-3")
    assert row["first_seen_at"] < row["last_seen_at"] and row["resolved_at"] is None
    assert row["payload"] == BAD_7.payload and row["reason"] == BAD_7.reason
    # The per-run counts are still per run.
    assert [r["rejected"] for r in sync_runs(url, site)] == [1, 1, 1]


def test_a_reject_is_resolved_when_the_site_serves_a_valid_version(url, site):
    sync(url, snap(site, [painting(1)], rejects=[BAD_7]), run_id="run-bad")
    result = sync(url, snap(site, [painting(1), painting(7)]), run_id="run-fixed")

    assert (result.rejected, result.inserted) == (0, 1)
    [row] = rejects(url, site)
    assert row["resolved_at"] is not None and row["resolved_at"] > row["last_seen_at"]
    assert (row["times_seen"], row["last_run_id"]) == (1, "run-bad")


def test_a_reject_is_resolved_when_the_site_stops_serving_it(url, site):
    keyless = painting(3, template_id=None)
    sync(url, snap(site, [painting(1), keyless], rejects=[BAD_7]))
    sync(url, snap(site, [painting(1)], rejects=[BAD_7]))
    sync(url, snap(site, [painting(1)]))

    rows = rejects(url, site)
    assert len(rows) == 2 and all(r["resolved_at"] is not None for r in rows)
    by_id = {r["template_id"]: r for r in rows}
    assert by_id["7"]["times_seen"] == 2 and by_id[None]["times_seen"] == 1
    # Resolved by the sync that no longer saw them, the keyless one a sync earlier.
    assert by_id[None]["resolved_at"] < by_id["7"]["resolved_at"]


def test_a_resolved_reject_served_again_is_reopened(url, site):
    sync(url, snap(site, [painting(1)], rejects=[BAD_7]))
    sync(url, snap(site, [painting(1)]))
    sync(url, snap(site, [painting(1)], rejects=[BAD_7]), run_id="run-again")

    [row] = rejects(url, site)
    assert (row["times_seen"], row["resolved_at"], row["last_run_id"]) == (2, None, "run-again")


def test_records_without_an_id_are_told_apart_by_their_payload(url, site):
    first, second = painting(5, template_id=None), painting(6, template_id=None)
    sync(url, snap(site, [painting(1), first]))
    sync(url, snap(site, [painting(1), first, second]))

    rows = rejects(url, site)
    assert [(r["template_id"], r["times_seen"]) for r in rows] == [(None, 2), (None, 1)]
    assert [r["payload"]["name"] for r in rows] == ["Painting 5", "Painting 6"]
    assert all("missing key" in r["reason"] for r in rows)


def test_a_record_changed_but_still_bad_is_a_new_reject_and_the_old_one_resolved(url, site):
    sync(url, snap(site, [painting(1)], rejects=[BAD_7]))
    worse = Reject("7", "price: not a number", {"id": 7, "price": "n/a", "name": "Élan"})
    sync(url, snap(site, [painting(1)], rejects=[worse]))

    old, new = rejects(url, site)
    assert old["payload"]["price"] == "abc" and old["resolved_at"] is not None
    assert new["payload"]["price"] == "n/a" and new["resolved_at"] is None
    assert old["content_hash"] != new["content_hash"]


def test_the_same_record_twice_in_one_payload_counts_once(url, site):
    result = sync(url, snap(site, [painting(1)], rejects=[BAD_7, BAD_7]))

    assert result.rejected == 2  # the run's count is what the payload held
    [row] = rejects(url, site)
    assert row["times_seen"] == 1


def test_a_failed_sync_changes_no_reject(url, site):
    sync(url, snap(site, [painting(1)], rejects=[BAD_7]), run_id="run-ok")
    before = rejects(url, site)
    with pytest.raises(RuntimeError, match="mid-stream"):
        sync(url, snap(site, [painting(1)], [painting(2)], fail_after=1), run_id="run-broken")

    assert rejects(url, site) == before


def test_other_sites_and_entities_keep_their_rejects(url, site):
    other = f"{site}-other"
    sync(url, snap(other, [painting(1)], rejects=[BAD_7]))
    sync(url, snap(site, [painting(1)], rejects=[BAD_7]))
    setting = Reject("k", "key repeated", {"key": "k", "value": "v"})
    sync(url, snap(site, [], entity="settings", rejects=[setting]))
    sync(url, snap(site, [painting(1)]))

    assert [r["resolved_at"] is None for r in rejects(url, other)] == [True]
    open_ = [r["entity"] for r in rejects(url, site) if r["resolved_at"] is None]
    assert open_ == ["settings"]


# --- revision 0006 -----------------------------------------------------------------------------


@pytest.fixture
def scratch(postgres_server_url):
    with scratch_database(postgres_server_url, "tp_rejects") as url:
        yield url


def _execute(url: str, statement: str) -> None:
    with db.get_engine(url).begin() as conn:
        conn.execute(sa.text(statement))


_OLD_REJECTS = """
INSERT INTO template_rejects (site, entity, template_id, reason, payload, run_id, rejected_at)
VALUES
  ('s', 'paintings', '7', 'old reason', '{"id": 7, "price": "abc"}', 'r1', '2026-01-01Z'),
  ('s', 'paintings', '7', 'price: not a number', '{"price": "abc", "id": 7}', 'r2', '2026-01-02Z'),
  ('s', 'paintings', '7', 'price: not a number', '{"id": 7, "price": "abc"}', 'r3', '2026-01-03Z'),
  ('s', 'paintings', NULL, 'missing key', '{"name": "a"}', 'r1', '2026-01-01Z'),
  ('s', 'paintings', NULL, 'missing key', '{"name": "b"}', 'r2', '2026-01-02Z'),
  ('s', 'users', '3', 'email: bad', '{"id": 3}', 'r0', '2025-12-01Z');
INSERT INTO template_sync_state (site, entity, last_success_at, last_run_id, last_attempt_at,
                                 last_status)
VALUES ('s', 'paintings', '2026-01-03T00:01Z', 'r3', '2026-01-03T00:01Z', 'success');
"""


def test_0006_collapses_the_log_into_one_row_per_record(scratch):
    migrate.upgrade(scratch, "0005")
    _execute(scratch, _OLD_REJECTS)
    migrate.upgrade(scratch, "0006")

    rows = query(
        scratch,
        "SELECT * FROM template_rejects ORDER BY entity, template_id NULLS LAST, first_seen_at",
    )
    summary = [
        (r["entity"], r["template_id"], r["times_seen"], r["last_run_id"], r["resolved_at"])
        for r in rows
    ]
    resolved_at = rows[1]["resolved_at"]
    assert summary == [
        # jsonb ignores key order: the three rows are one record.
        ("paintings", "7", 3, "r3", None),
        # Last seen by r1, and r3 (the latest successful sync) did not see it.
        ("paintings", None, 1, "r1", resolved_at),
        ("paintings", None, 1, "r2", resolved_at),
        # No successful sync of the users since: still open.
        ("users", "3", 1, "r0", None),
    ]
    assert resolved_at is not None and resolved_at.isoformat() == "2026-01-03T00:01:00+00:00"
    seven = rows[0]
    assert seven["first_seen_at"].isoformat() == "2026-01-01T00:00:00+00:00"
    assert seven["last_seen_at"].isoformat() == "2026-01-03T00:00:00+00:00"
    assert seven["reason"] == "price: not a number"
    migrate.upgrade(scratch)  # the later revisions (0007) leave the rejects as they are
    assert migrate.compare_with_tables(scratch) == []


def test_a_migrated_reject_synced_again_is_counted_not_duplicated(scratch):
    migrate.upgrade(scratch, "0005")
    _execute(scratch, _OLD_REJECTS)
    migrate.upgrade(scratch)
    again = Reject("7", "price: not a number", {"id": 7, "price": "abc"})
    sync(scratch, snap("s", [painting(1)], rejects=[again]), run_id="r4")

    [row] = query(
        scratch, "SELECT * FROM template_rejects WHERE entity = 'paintings' AND template_id = '7'"
    )
    assert (row["times_seen"], row["last_run_id"], row["resolved_at"]) == (4, "r4", None)


def test_0006_downgrades_to_one_row_per_record(scratch):
    migrate.upgrade(scratch, "0005")
    _execute(scratch, _OLD_REJECTS)
    migrate.upgrade(scratch, "0006")
    with db.get_engine(scratch).begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "0005")

    rows = query(scratch, "SELECT entity, template_id, run_id FROM template_rejects ORDER BY id")
    assert len(rows) == 4 and {r["run_id"] for r in rows} == {"r0", "r1", "r2", "r3"}
