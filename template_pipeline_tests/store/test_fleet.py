"""The fleet table read from the sync state (``store.fleet``), on the real tables.

Behaviour under test: a site whose key was refused is failing with error kind ``auth`` and its
streak; a site never synced, or whose last success is older than the window, is stale; failing
sites come first, then stale, then ok; records per entity are those the last successful sync
received; the numbers (ok, failing, stale, records, refused keys) add up; the Markdown table has
one line per site of the registry and none for other sites.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from template_pipeline.store import db
from template_pipeline.store.fleet import markdown, read_fleet, table_rows
from template_pipeline.store.sync_state import record_failure
from template_pipeline_tests.fixtures.helpers import write_records


def users(n: int) -> list[dict]:
    return [{"id": i, "name": f"P {i}", "email": f"p{i}@example.fr"} for i in range(1, n + 1)]


def fail(url: str, site: str, kind: str, times: int = 1) -> None:
    with db.connect(url) as conn:
        for n in range(times):
            record_failure(
                conn,
                site=site,
                entity="users",
                run_id=f"run-fail-{n}",
                kind=kind,
                error="users: HTTP 401: the API key was refused",
                at=datetime.now(timezone.utc),
            )


def test_failing_sites_first_with_their_kind_then_stale_then_ok(url):
    base = f"fleet-{uuid.uuid4().hex[:6]}"
    ok, refused, never, old, other = (f"{base}-{x}" for x in ("a", "b", "c", "d", "e"))
    write_records(url, ok, "users", users(3))
    write_records(url, refused, "users", users(2))
    fail(url, refused, "auth", times=2)
    write_records(url, old, "users", users(1))
    write_records(url, other, "users", users(1))  # not in the registry: not shown
    with db.connect(url) as conn:
        conn.execute(
            "UPDATE template_sync_state SET last_success_at = now() - interval '3 days', "
            "last_attempt_at = now() - interval '3 days' WHERE site = %s",
            (old,),
        )
    with db.get_engine(url).connect() as conn:
        fleet = read_fleet(conn, [ok, refused, never, old], stale_after=timedelta(hours=26))

    assert [(s.site, s.state) for s in fleet.sites] == [
        (refused, "failing"),
        (never, "stale"),
        (old, "stale"),
        (ok, "ok"),
    ]
    failing = fleet.sites[0]
    assert failing.last_error_kind == "auth" and failing.consecutive_failures == 2
    assert "API key was refused" in (failing.last_error or "")
    assert failing.last_success_at is not None  # its last success is still shown
    assert fleet.sites[1].last_success_at is None and fleet.sites[1].records == {}
    assert fleet.sites[3].records == {"users": 3} and fleet.sites[3].last_duration_s is not None
    assert fleet.numbers() == {
        "sites": 4,
        "sites_ok": 1,
        "sites_failing": 1,
        "sites_stale": 2,
        "records_synced": 3 + 2 + 1,
        "refused_keys": 1,
    }

    text = markdown(fleet)
    lines = text.splitlines()
    assert lines[0].startswith("| site | status | last successful sync | consecutive failures |")
    assert len(lines) == 2 + 4 and other not in text
    assert lines[2].startswith(f"| {refused} | failing |") and "| auth |" in lines[2]
    header = table_rows(fleet)[0]
    assert "users" in header and "last duration" in header and "stats" not in header


def test_a_success_ends_the_streak_and_clears_the_kind(url):
    site = f"fleet-{uuid.uuid4().hex[:6]}"
    write_records(url, site, "users", users(1))
    fail(url, site, "unreachable")
    write_records(url, site, "users", users(1), run_id="run-2")
    with db.get_engine(url).connect() as conn:
        [status] = read_fleet(conn, [site], stale_after=timedelta(hours=26)).sites
        [kind] = conn.execute(
            sa.text("SELECT last_error_kind FROM template_sync_state WHERE site = :s"), {"s": site}
        ).scalars()
    assert status.state == "ok" and status.consecutive_failures == 0 and kind is None


def test_an_empty_registry_is_an_empty_table(url):
    with db.get_engine(url).connect() as conn:
        fleet = read_fleet(conn, [], stale_after=timedelta(hours=1))
    assert fleet.sites == [] and fleet.numbers()["sites"] == 0
    assert markdown(fleet) == "_no site is configured_"
