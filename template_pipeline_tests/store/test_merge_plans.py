"""The merge's plans get the statistics they need (issue 11, item 6).

Behaviour under test: a large staging table is analyzed before the merge reads it, so the
soft-delete anti-join (``UPDATE ... NOT EXISTS``) is planned as a hash join (EXPLAIN); a small
stage is not analyzed (it costs more than it saves); a large committed write analyzes its target
table and a small one does not; an ANALYZE that would queue behind another one's lock is skipped
without failing the committed write.
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from template_pipeline.domain.batches import EntitySnapshot, ValidatedBatch
from template_pipeline.store import db, merge, merge_sql
from template_pipeline.store.results import SyncResult
from template_pipeline.store.staging import (
    ANALYZE_MIN_ROWS,
    analyze_stage,
    create_stage,
    load_stage,
)
from template_pipeline.store.tables import table_spec
from template_pipeline_tests.fixtures.snapshots import painting, snap, sync

LINES = 4000


def _stage_analyzed(cur: psycopg.Cursor) -> bool:
    row = cur.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'template_stage'").fetchone()
    return bool(row and row[0])


def _stage_paintings(cur: psycopg.Cursor, site: str, ids: range) -> None:
    spec = table_spec("paintings")
    create_stage(cur, spec)
    batch = ValidatedBatch(rows=[painting(i) for i in ids], fetched=len(ids))
    result = SyncResult(site=site, entity="paintings", status="success")
    load_stage(cur, spec, EntitySnapshot(site, "paintings", [batch]), result)


def test_soft_delete_anti_join_is_a_hash_join_once_the_stage_is_analyzed(url, site):
    sync(url, snap(site, [painting(i) for i in range(1, LINES + 1)]), run_id="run-0")
    statement = merge_sql.soft_delete_missing_statement(
        merge_sql.fragments(table_spec("paintings"))
    )
    with db.connect(url) as conn, conn.cursor() as cur:
        # 5 % of the site's rows no longer served.
        _stage_paintings(cur, site, range(1, LINES - LINES // 20 + 1))
        assert analyze_stage(cur, LINES, table_spec("paintings").keys) is True
        assert _stage_analyzed(cur)
        plan = "\n".join(
            row[0] for row in cur.execute(sql_explain(statement), ("run-1", site)).fetchall()
        )
        conn.rollback()
    assert "Hash Anti Join" in plan or "Hash Right Anti Join" in plan, plan
    assert "Nested Loop" not in plan, plan


def sql_explain(statement):
    from psycopg import sql

    return sql.SQL("EXPLAIN ") + statement


def test_a_small_stage_is_not_analyzed(url, site):
    with db.connect(url) as conn, conn.cursor() as cur:
        _stage_paintings(cur, site, range(1, 11))
        assert analyze_stage(cur, 10) is False
        assert analyze_stage(cur, ANALYZE_MIN_ROWS - 1) is False
        assert not _stage_analyzed(cur)
        conn.rollback()


def _analyze_count(url: str) -> int:
    with db.connect(url) as conn:
        row = conn.execute(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'template_paintings'"
        ).fetchone()
    return int(row[0]) if row else 0


def _settled_analyze_count(url: str, before: int) -> int:
    # The statistics collector reports a little after the fact.
    import time

    for _ in range(50):
        count = _analyze_count(url)
        if count > before:
            return count
        time.sleep(0.1)
    return _analyze_count(url)


def test_a_large_write_analyzes_its_table_and_a_small_one_does_not(url, site, monkeypatch):
    calls: list[str] = []
    real = merge.analyze_after_write

    def spy(conn, spec, result):
        done = real(conn, spec, result)
        if done:
            calls.append(spec.name)
        return done

    monkeypatch.setattr("template_pipeline.store.writer.analyze_after_write", spy)
    before = _analyze_count(url)
    sync(url, snap(site, [painting(i) for i in range(1, merge.ANALYZE_MIN_WRITTEN + 1)]))
    assert calls == ["template_paintings"]
    assert _settled_analyze_count(url, before) > before
    # One changed row of a thousand: below the thresholds.
    rows = [painting(i) for i in range(1, merge.ANALYZE_MIN_WRITTEN + 1)]
    rows[0]["name"] = "Renamed"
    result = sync(url, snap(site, rows))
    assert result.updated == 1
    assert calls == ["template_paintings"]


def test_an_analyze_behind_another_lock_is_skipped_and_the_write_stands(url, site):
    sync(url, snap(site, [painting(1)]))
    result = SyncResult(site=site, entity="paintings", status="success", inserted=5000)
    holder_ready, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with db.connect(url) as holder:
            # SHARE UPDATE EXCLUSIVE: what ANALYZE and autovacuum take.
            holder.execute("LOCK TABLE template_paintings IN SHARE UPDATE EXCLUSIVE MODE")
            holder_ready.set()
            release.wait(10)
            holder.rollback()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    try:
        assert holder_ready.wait(10)
        with db.connect(url) as conn:
            assert merge.analyze_after_write(conn, table_spec("paintings"), result) is False
            # The connection is usable afterwards (the failed statement was rolled back).
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        release.set()
        thread.join(10)


@pytest.mark.parametrize("written", [0, merge.ANALYZE_MIN_WRITTEN - 1])
def test_no_analyze_below_the_threshold(url, written):
    result = SyncResult(site="s", entity="paintings", status="success", inserted=written)
    with db.connect(url) as conn:
        assert merge.analyze_after_write(conn, table_spec("paintings"), result) is False
