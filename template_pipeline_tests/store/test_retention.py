"""Retention of the Dashboard database's bookkeeping (``store.retention``).

Under test, in a database of its own (a purge is database-wide): rows older than their limit go
and younger ones stay, per kind; what is current state stays whatever its age (open rejects,
each site's latest probe, pending webhook events, open check and health alerts); live entity
rows, stats, sync runs and sync state are never touched; a dry run counts exactly what a purge
then removes and changes nothing; tiny batches remove the same rows; the limits come from the
``TEMPLATE_RETENTION_*_DAYS`` variables, with their defaults, and a bad value names its variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from template_pipeline.domain.batches import Reject
from template_pipeline.store import db, migrate
from template_pipeline.store.retention import (
    KIND_NAMES,
    RetentionPolicy,
    latest_success_run_ids,
    purge_tables,
)
from template_pipeline_tests.fixtures.catalog import scratch_database
from template_pipeline_tests.fixtures.helpers import query
from template_pipeline_tests.fixtures.snapshots import painting, snap, sync

NOW = datetime.now(timezone.utc)
POLICY = RetentionPolicy()  # 30 / 14 / 7 / 90 / 30 days
# The tables retention never touches, beside the entity tables.
KEPT_TABLES = ("template_stats", "template_sync_runs", "template_sync_state")


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture(scope="module")
def _retention_database(postgres_server_url) -> Iterator[str]:
    with scratch_database(postgres_server_url, "tp_retention") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
def scratch(_retention_database) -> str:
    """A database of this module's own, emptied for each test (a purge is database-wide)."""
    tables = ", ".join(
        (
            "template_rejects",
            "template_site_health",
            "template_webhook_events",
            "template_alerts",
            "template_paintings",
            *KEPT_TABLES,
        )
    )
    with psycopg.connect(db.libpq_conninfo(_retention_database)) as conn:
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
    return _retention_database


def _insert(url: str, table: str, rows: list[dict[str, Any]]) -> None:
    with psycopg.connect(db.libpq_conninfo(url)) as conn:
        for row in rows:
            columns = ", ".join(row)
            marks = ", ".join(["%s"] * len(row))
            conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values()))


def _reject(label: str, resolved: datetime | None, seen: datetime) -> dict[str, Any]:
    return {
        "site": "s",
        "entity": "paintings",
        "template_id": label,
        "content_hash": int.from_bytes(label.encode()[:7], "big"),
        "reason": "price: not a number",
        "payload": '{"email": "a@b.example"}',
        "first_seen_at": seen,
        "last_seen_at": seen,
        "resolved_at": resolved,
    }


def _alert(key: str, source: str, created: datetime, resolved: datetime | None) -> dict[str, Any]:
    return {
        "dedupe_key": key,
        "source": source,
        "severity": "ERROR",
        "message": key,
        "created_at": created,
        "resolved_at": resolved,
    }


def _fill(url: str) -> None:
    """Rows named after what must become of them: 'old' ones go, the others stay."""
    _insert(
        url,
        "template_rejects",
        [
            _reject("old-resolved", ago(40), ago(45)),
            _reject("young-resolved", ago(10), ago(12)),
            _reject("open-ancient", None, ago(100)),
        ],
    )
    health = [("a", 20, "old"), ("a", 19, "old"), ("a", 1, "latest"), ("b", 30, "only")]
    _insert(
        url,
        "template_site_health",
        [
            {"site": s, "checked_at": ago(d), "status": "up", "probe": "ok", "detail": what}
            for s, d, what in health
        ],
    )
    events = [("old", ago(12), ago(10)), ("young", ago(3), ago(2)), ("pending", ago(30), None)]
    _insert(
        url,
        "template_webhook_events",
        [
            {"site": "s", "event": e, "payload": "{}", "received_at": r, "consumed_at": c}
            for e, r, c in events
        ],
    )
    _insert(
        url,
        "template_alerts",
        [
            _alert("old-resolved", "check", ago(100), ago(99)),
            _alert("old-run", "run", ago(100), None),
            _alert("open-check", "check", ago(100), None),
            _alert("open-health", "health", ago(95), None),
            _alert("young-resolved", "health", ago(10), ago(9)),
        ],
    )


def _state(url: str) -> dict[str, list[dict[str, Any]]]:
    tables = (
        "template_rejects",
        "template_site_health",
        "template_webhook_events",
        "template_alerts",
        "template_paintings",
        *KEPT_TABLES,
    )
    return {t: query(url, f"SELECT * FROM {t} ORDER BY 1") for t in tables}


def _with_live_data(url: str) -> None:
    """A site with live paintings, stats history, sync runs and state: none of it may go."""
    rejected = Reject("9", "price: not a number", {"id": 9})
    sync(url, snap("s", [painting(1), painting(2)], rejects=[rejected]), run_id="run-live")
    with psycopg.connect(db.libpq_conninfo(url)) as conn:
        # Old enough for every limit: retention keys on its own tables' columns only.
        conn.execute("UPDATE template_paintings SET first_seen_at = %s", (ago(400),))
        conn.execute("INSERT INTO template_stats (site, fetched_at) VALUES ('s', %s)", (ago(400),))


def test_rows_older_than_their_limit_go_and_the_rest_stays(scratch):
    _fill(scratch)
    _with_live_data(scratch)
    before = _state(scratch)

    done = purge_tables(scratch, POLICY, now=NOW)

    assert {p.kind: p.rows for p in done} == {
        "rejects": 1,
        "health": 2,
        "webhook_events": 1,
        "alerts": 2,
    }
    assert [p.days for p in done] == [30, 14, 7, 90]
    after = _state(scratch)
    labels = sorted(r["template_id"] for r in after["template_rejects"])
    assert labels == ["9", "open-ancient", "young-resolved"]
    assert sorted(r["detail"] for r in after["template_site_health"]) == ["latest", "only"]
    assert sorted(r["event"] for r in after["template_webhook_events"]) == ["pending", "young"]
    assert sorted(r["dedupe_key"] for r in after["template_alerts"]) == [
        "open-check",
        "open-health",
        "young-resolved",
    ]
    for table in ("template_paintings", *KEPT_TABLES):
        assert after[table] == before[table], table
    # A second purge finds nothing more.
    assert [p.rows for p in purge_tables(scratch, POLICY, now=NOW)] == [0, 0, 0, 0]


def test_a_dry_run_counts_what_a_purge_removes_and_changes_nothing(scratch):
    _fill(scratch)
    before = _state(scratch)

    counted = purge_tables(scratch, POLICY, now=NOW, dry_run=True)

    assert _state(scratch) == before
    removed = purge_tables(scratch, POLICY, now=NOW)
    assert [(p.kind, p.rows) for p in counted] == [(p.kind, p.rows) for p in removed]
    assert sum(p.rows for p in removed) == 6


def test_tiny_batches_remove_the_same_rows(scratch):
    _fill(scratch)
    extra = [
        {"site": "a", "checked_at": ago(30 + i), "status": "down", "probe": "unreachable"}
        for i in range(7)
    ]
    _insert(scratch, "template_site_health", extra)

    done = purge_tables(scratch, POLICY, now=NOW, batch_size=2)

    assert {p.kind: p.rows for p in done}["health"] == 9
    assert len(query(scratch, "SELECT 1 FROM template_site_health")) == 2
    with pytest.raises(ValueError, match="batch_size"):
        purge_tables(scratch, POLICY, batch_size=0)


def test_shorter_limits_remove_more(scratch):
    _fill(scratch)
    policy = RetentionPolicy(rejects_days=5, health_days=14, webhook_events_days=1, alerts_days=5)

    done = {p.kind: p.rows for p in purge_tables(scratch, policy, now=NOW)}

    assert (done["rejects"], done["webhook_events"], done["alerts"]) == (2, 2, 3)


def test_the_latest_successful_sync_runs_are_known(scratch):
    sync(scratch, snap("s", [painting(1)]), run_id="run-a")
    sync(scratch, snap("s", [painting(1)]), run_id="run-b")
    sync(scratch, snap("t", [painting(1)]), run_id="run-c")

    assert latest_success_run_ids(scratch) == {"run-b", "run-c"}


def test_the_limits_come_from_the_environment_with_documented_defaults():
    assert RetentionPolicy.from_env({}) == RetentionPolicy(30, 14, 7, 90, 30)
    env = {"TEMPLATE_RETENTION_HEALTH_DAYS": " 3 ", "TEMPLATE_RETENTION_DAGSTER_RUNS_DAYS": "60"}
    policy = RetentionPolicy.from_env(env)
    assert (policy.health_days, policy.dagster_runs_days, policy.rejects_days) == (3, 60, 30)
    for bad in ("0", "-1", "2.5", "a week"):
        with pytest.raises(ValueError, match="TEMPLATE_RETENTION_ALERTS_DAYS"):
            RetentionPolicy.from_env({"TEMPLATE_RETENTION_ALERTS_DAYS": bad})
    with pytest.raises(ValueError, match="rejects_days"):
        RetentionPolicy(rejects_days=0)
    assert KIND_NAMES == ("rejects", "health", "webhook_events", "alerts", "dagster_runs")
