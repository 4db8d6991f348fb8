"""``template-pipeline purge [--dry-run]``: the retention of the command line.

Under test, in a database of its own: the dry run prints what would go, kind by kind, and
changes nothing; the purge then removes exactly that and exits 0; without ``DAGSTER_HOME`` the
Dagster runs are skipped, saying so, and with it the instance's young runs stay; a limit that is
not a whole number of days, or no database URL, is a configuration error (exit 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import dagster as dg
import psycopg
import pytest

from template_pipeline.apps.cli import EXIT_CONFIG, EXIT_OK, main
from template_pipeline.store import db, migrate
from template_pipeline_tests.fixtures.catalog import scratch_database
from template_pipeline_tests.fixtures.helpers import query


@pytest.fixture
def scratch(postgres_server_url, monkeypatch) -> Iterator[str]:
    with scratch_database(postgres_server_url, "tp_purge") as url:
        migrate.upgrade(url)
        monkeypatch.setenv("DASHBOARD_DATABASE_URL", url)
        old = datetime.now(timezone.utc) - timedelta(days=20)
        with psycopg.connect(db.libpq_conninfo(url)) as conn:
            for at in (old, old, datetime.now(timezone.utc)):
                conn.execute(
                    "INSERT INTO template_site_health (site, checked_at, status, probe) "
                    "VALUES ('s', %s, 'down', 'unreachable')",
                    (at,),
                )
            conn.execute(
                "INSERT INTO template_webhook_events (site, event, payload, consumed_at) "
                "VALUES ('s', 'updated', '{}', %s)",
                (old,),
            )
        yield url


def _lines(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in text.splitlines() if line[:2] == "  "}


def test_the_dry_run_prints_what_would_go_and_the_purge_removes_it(scratch, capsys):
    assert main(["purge", "--dry-run"]) == EXIT_OK
    dry = capsys.readouterr().out
    assert "dry run: nothing is removed" in dry and "would remove" in dry
    rows = _lines(dry)
    assert rows["health"][:2] == ["14", "days"] and rows["health"][-1] == "2"
    assert rows["webhook_events"][-1] == "1" and rows["rejects"][-1] == "0"
    assert "skipped: DAGSTER_HOME is not set" in dry
    assert "3 row(s) would go in all" in dry
    assert len(query(scratch, "SELECT 1 FROM template_site_health")) == 3

    assert main(["purge"]) == EXIT_OK
    done = capsys.readouterr().out
    assert _lines(done)["health"][-1] == "2" and "3 row(s) removed in all" in done
    assert len(query(scratch, "SELECT 1 FROM template_site_health")) == 1
    assert query(scratch, "SELECT 1 FROM template_webhook_events") == []


def test_with_dagster_home_the_instance_is_purged_too(scratch, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("", encoding="utf-8")
    with dg.DagsterInstance.get() as instance:

        @dg.asset
        def one() -> int:
            return 1

        run_id = dg.materialize([one], instance=instance).run_id

    assert main(["purge"]) == EXIT_OK
    out = _lines(capsys.readouterr().out)
    assert out["dagster_runs"][:2] == ["30", "days"] and out["dagster_runs"][-1] == "0"
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id) is not None


@pytest.mark.parametrize("bad", ["0", "ten", "1.5"])
def test_a_bad_limit_is_a_configuration_error(scratch, monkeypatch, capsys, bad):
    monkeypatch.setenv("TEMPLATE_RETENTION_REJECTS_DAYS", bad)
    assert main(["purge", "--dry-run"]) == EXIT_CONFIG
    assert "TEMPLATE_RETENTION_REJECTS_DAYS" in capsys.readouterr().err


def test_no_database_url_is_a_configuration_error(capsys):
    assert main(["purge"]) == EXIT_CONFIG
    assert "DASHBOARD_DATABASE_URL" in capsys.readouterr().err
