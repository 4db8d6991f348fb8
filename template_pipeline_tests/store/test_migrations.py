"""The schema migrations (``store.migrate``, ``store/migrations``) and the refusal to write
into a database whose schema is behind (``store.schema_version``).

Under test: the revisions this release knows are Alembic's, in order, and end at the schema the
code requires; a database upgraded to head has exactly the tables the table definitions create
(autogenerate finds no difference, and the catalogs are equal), and other applications' tables
are ignored; an empty database upgrades from nothing, a second upgrade does nothing, concurrent
upgrades apply each revision once; a database with release 0.1.0's tables and no version row is
stamped at the baseline, one with only some of them is refused; revision 0002 converts text ids
and moves every row it cannot convert (non-integer ids, ids that collide once converted, orders
whose items name a non-integer painting) to ``template_rejects`` without losing one; 0003 fills
``template_sync_state`` from the runs; ``--sql`` prints the upgrade and applies nothing; and a
behind database is refused by the writer, the IO manager and the ``sync`` command, with a
message that names both revisions and ``template-pipeline migrate``.
"""

from __future__ import annotations

import threading

import dagster as dg
import pytest
import sqlalchemy as sa

from template_pipeline.apps.cli import main
from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.store import db, migrate, schema_version
from template_pipeline.store.schema_version import (
    REQUIRED_REVISION,
    REVISIONS,
    SchemaBehindError,
    SchemaVersionError,
    require_current,
)
from template_pipeline_tests.fixtures.catalog import column_types, scratch_database, tables_catalog
from template_pipeline_tests.fixtures.helpers import query
from template_pipeline_tests.fixtures.snapshots import painting, snap, sync


def _execute(url: str, *statements: str) -> None:
    with db.get_engine(url).begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


@pytest.fixture
def scratch(postgres_server_url):
    with scratch_database(postgres_server_url, "tp_migrate") as url:
        yield url


# --- the revisions and the table definitions agree ---------------------------------------------


def test_the_known_revisions_are_alembics_and_end_at_the_required_one():
    assert migrate.revision_order() == list(REVISIONS)
    assert migrate.head_revision() == REQUIRED_REVISION == REVISIONS[-1]


def test_the_migrations_ship_inside_the_package():
    # A regular install (the Docker image) must carry the revisions and their template too.
    assert (migrate.MIGRATIONS_DIR / "__init__.py").is_file()
    assert (migrate.MIGRATIONS_DIR / "versions" / "__init__.py").is_file()
    assert (migrate.MIGRATIONS_DIR / "script.py.mako").is_file()
    pyproject = (migrate.MIGRATIONS_DIR.parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"template_pipeline.store.migrations" = ["script.py.mako"]' in pyproject


def test_autogenerate_finds_no_difference_between_head_and_the_tables(database_url):
    assert migrate.database_revision(database_url) == REQUIRED_REVISION
    assert migrate.compare_with_tables(database_url) == []


def test_head_has_exactly_the_catalog_of_the_table_definitions(database_url, scratch):
    migrate.target_metadata().create_all(db.get_engine(scratch))
    assert tables_catalog(database_url) == tables_catalog(scratch)


def test_a_table_missing_from_the_migrations_is_a_difference(scratch):
    migrate.upgrade(scratch, "0002")
    kinds = {diff[0] for diff in migrate.compare_with_tables(scratch)}
    assert "add_table" in kinds  # template_sync_state comes with 0003


def test_other_applications_tables_are_not_ours_to_compare_or_drop(scratch):
    _execute(scratch, "CREATE TABLE dashboard_app_users (id serial PRIMARY KEY, login text)")
    migrate.upgrade(scratch)
    assert migrate.compare_with_tables(scratch) == []
    assert query(scratch, "SELECT to_regclass('dashboard_app_users') IS NOT NULL AS ok")[0]["ok"]


# --- upgrading ---------------------------------------------------------------------------------


def test_an_empty_database_upgrades_from_nothing_and_then_has_nothing_to_do(scratch):
    first = migrate.upgrade(scratch)
    assert (first.before, first.after, first.stamped_legacy, first.changed) == (
        None,
        REQUIRED_REVISION,
        False,
        True,
    )
    again = migrate.upgrade(scratch)
    assert (again.before, again.after, again.changed) == (REQUIRED_REVISION,) * 2 + (False,)
    rows = query(scratch, "SELECT version_num FROM template_alembic_version")
    assert rows == [{"version_num": REQUIRED_REVISION}]
    assert query(scratch, "SELECT to_regclass('alembic_version') IS NULL AS free")[0]["free"]


def test_concurrent_upgrades_apply_each_revision_once(scratch):
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait(timeout=10)
        try:
            migrate.upgrade(scratch)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert migrate.database_revision(scratch) == REQUIRED_REVISION


def test_a_release_010_database_is_stamped_at_the_baseline(scratch):
    # Release 0.1.0's create_all made the baseline's tables and recorded no revision.
    migrate.upgrade(scratch, "0001")
    _execute(scratch, "DROP TABLE template_alembic_version")
    done = migrate.upgrade(scratch)
    assert (done.before, done.after, done.stamped_legacy) == (None, REQUIRED_REVISION, True)
    assert column_types(scratch, "template_paintings")["template_id"] == "bigint"


def test_a_database_with_only_some_old_tables_is_refused(scratch):
    migrate.upgrade(scratch, "0001")
    _execute(scratch, "DROP TABLE template_alembic_version", "DROP TABLE template_alerts")
    with pytest.raises(db.DatabaseConfigError, match="lacks template_alerts"):
        migrate.upgrade(scratch)
    assert migrate.database_revision(scratch) is None


def test_a_revision_from_a_newer_release_is_refused(scratch):
    migrate.upgrade(scratch)
    _execute(scratch, "UPDATE template_alembic_version SET version_num = '0099'")
    with pytest.raises(SchemaVersionError, match="newer release"):
        migrate.upgrade(scratch)
    with pytest.raises(SchemaVersionError, match="newer release") as info:
        require_current(scratch)
    assert not isinstance(info.value, SchemaBehindError)


def test_sql_prints_the_upgrade_and_applies_nothing(scratch, monkeypatch, capsys):
    migrate.upgrade(scratch, "0001")
    monkeypatch.setenv("DASHBOARD_DATABASE_URL", scratch)
    assert main(["migrate", "--sql"]) == 0
    printed = capsys.readouterr().out
    assert "ALTER TABLE template_paintings ALTER COLUMN template_id TYPE BIGINT" in printed
    assert "CREATE TABLE template_sync_state" in printed
    assert "CREATE VIEW dashboard_paintings" in printed
    assert "CREATE TABLE template_paintings" not in printed  # from 0001 on
    assert migrate.database_revision(scratch) == "0001"


def test_the_migrate_command_says_where_it_started_and_ended(scratch, monkeypatch, capsys):
    monkeypatch.setenv("DASHBOARD_DATABASE_URL", scratch)
    assert main(["migrate"]) == 0
    printed = capsys.readouterr().out
    assert "at revision none" in printed
    assert f"upgraded from none to {REQUIRED_REVISION}" in printed
    assert "0002: ids are bigint; 0 row(s) moved" in printed
    assert main(["migrate"]) == 0
    assert f"already at {REQUIRED_REVISION}, nothing to do" in capsys.readouterr().out


def test_the_migrate_command_needs_a_database(capsys):
    assert main(["migrate"]) == 2
    assert "DASHBOARD_DATABASE_URL is not set" in capsys.readouterr().err


# --- 0002: ids become bigint, nothing is lost ---------------------------------------------------

_OLD_ROWS = """
INSERT INTO template_paintings (site, template_id, name, first_seen_at, updated_at, synced_at)
VALUES ('s', '12', 'kept', now(), now(), now()),
       ('s', '012', 'same id, synced earlier', now(), now(), now() - interval '1 day'),
       ('s', ' 13 ', 'spaces', now(), now(), now()),
       ('s', 'P-7', 'not an integer', now(), now(), now()),
       ('s', '99999999999999999999', 'beyond bigint', now(), now(), now()),
       ('t', '12', 'another site', now(), now(), now());
INSERT INTO template_orders (site, template_id, total_price, items, first_seen_at, updated_at,
                             synced_at)
VALUES ('s', '1', 10, '[{"painting_id": "12", "price": "10.00", "quantity": 1}]', now(), now(),
        now()),
       ('s', '2', 10, '[{"painting_id": "P-7", "price": "10.00", "quantity": 1}]', now(), now(),
        now()),
       ('s', '3', 0, '[]', now(), now(), now());
INSERT INTO template_order_items (site, order_id, line_no, painting_id, price, first_seen_at,
                                  updated_at, synced_at)
VALUES ('s', '1', 1, '12', 10, now(), now(), now()),
       ('s', '2', 1, 'P-7', 10, now(), now(), now()),
       ('s', 'X', 1, NULL, 10, now(), now(), now());
"""


def _counts(url: str) -> dict[str, int]:
    tables = ("template_paintings", "template_orders", "template_order_items", "template_rejects")
    return {t: query(url, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}


def test_0002_converts_ids_and_quarantines_what_it_cannot_convert(scratch):
    migrate.upgrade(scratch, "0001")
    _execute(scratch, _OLD_ROWS)
    before = _counts(scratch)
    migrate.upgrade(scratch, "0002")
    after = _counts(scratch)

    moved = query(
        scratch,
        "SELECT entity, template_id, reason, payload FROM template_rejects "
        "WHERE run_id = 'migration-0002' ORDER BY entity, template_id",
    )
    per_table = {"paintings": 0, "orders": 0, "order_items": 0}
    for row in moved:
        per_table[row["entity"]] += 1
    for entity, n in per_table.items():
        assert after[f"template_{entity}"] + n == before[f"template_{entity}"], entity
    assert after["template_rejects"] == before["template_rejects"] + len(moved)

    reasons = {(r["entity"], r["template_id"]): r["reason"] for r in moved}
    assert set(reasons) == {
        ("paintings", "012"),
        ("paintings", "P-7"),
        ("paintings", "99999999999999999999"),
        ("orders", "2"),
        ("order_items", "2"),
        ("order_items", "X"),
    }
    assert reasons[("paintings", "P-7")].startswith(
        "migration 0002: template_id: not an integer (got 'P-7')"
    )
    assert "same integer as the id of another row" in reasons[("paintings", "012")]
    assert "items: a painting_id is not an integer" in reasons[("orders", "2")]
    assert "painting_id: not an integer (got 'P-7')" in reasons[("order_items", "2")]
    # The whole row is the payload: nothing of it is lost.
    payload = next(r["payload"] for r in moved if r["template_id"] == "P-7")
    assert payload["name"] == "not an integer" and payload["site"] == "s"

    paintings = query(
        scratch, "SELECT site, template_id, name FROM template_paintings ORDER BY 1, 2"
    )
    assert [(r["site"], r["template_id"], r["name"]) for r in paintings] == [
        ("s", 12, "kept"),
        ("s", 13, "spaces"),
        ("t", 12, "another site"),
    ]
    [order] = query(scratch, "SELECT items FROM template_orders WHERE template_id = 1")
    assert order["items"] == [{"painting_id": 12, "price": "10.00", "quantity": 1}]
    assert (
        query(scratch, "SELECT count(*) AS n FROM template_order_items WHERE order_id = 1")[0]["n"]
        == 1
    )
    for table, column in (("template_order_items", "order_id"), ("template_orders", "template_id")):
        assert column_types(scratch, table)[column] == "bigint"
    assert column_types(scratch, "template_order_items")["painting_id"] == "bigint"
    assert column_types(scratch, "template_rejects")["template_id"] == "text"


def test_0003_fills_the_sync_state_from_the_runs(scratch):
    migrate.upgrade(scratch, "0002")
    _execute(
        scratch,
        "INSERT INTO template_sync_runs (site, entity, run_id, status, error, started_at, "
        "finished_at) VALUES "
        "('s', 'paintings', 'r1', 'success', NULL, now(), '2024-01-01T00:00:00Z'), "
        "('s', 'paintings', 'r2', 'success', NULL, now(), '2024-01-02T00:00:00Z'), "
        "('s', 'paintings', 'r3', 'failed', 'boom', now(), '2024-01-03T00:00:00Z'), "
        "('s', 'paintings', 'r4', 'refused', 'guard', now(), '2024-01-04T00:00:00Z'), "
        "('s', 'users', 'r5', 'failed', 'down', now(), '2024-01-05T00:00:00Z'), "
        "('t', 'stats', 'r6', 'success', NULL, now(), '2024-01-06T00:00:00Z')",
    )
    migrate.upgrade(scratch, "0003")
    state = {
        (r["site"], r["entity"]): r for r in query(scratch, "SELECT * FROM template_sync_state")
    }
    assert set(state) == {("s", "paintings"), ("s", "users"), ("t", "stats")}
    paintings = state[("s", "paintings")]
    assert paintings["last_success_at"].isoformat() == "2024-01-02T00:00:00+00:00"
    assert paintings["last_run_id"] == "r2"
    assert (paintings["last_status"], paintings["consecutive_failures"]) == ("refused", 2)
    assert paintings["last_error"] == "guard"
    users = state[("s", "users")]
    assert users["last_success_at"] is None and users["consecutive_failures"] == 1
    stats = state[("t", "stats")]
    assert (stats["last_status"], stats["consecutive_failures"], stats["last_error"]) == (
        "success",
        0,
        None,
    )


# --- a behind database is refused ----------------------------------------------------------------


def test_an_empty_database_is_refused_with_the_migrate_hint(scratch):
    with pytest.raises(SchemaBehindError) as info:
        require_current(scratch)
    message = str(info.value)
    assert "no template-pipeline tables yet" in message
    assert f"needs schema revision {REQUIRED_REVISION}" in message
    assert "template-pipeline migrate" in message


def test_a_behind_database_is_refused_naming_both_revisions(scratch, site):
    migrate.upgrade(scratch, "0002")
    with pytest.raises(SchemaBehindError) as info:
        sync(scratch, snap(site, [painting(1)]))
    message = str(info.value)
    assert f"at revision 0002, this release needs {REQUIRED_REVISION}" in message
    assert "run `template-pipeline migrate`" in message
    # Refused before anything was written, not even the audit row.
    assert query(scratch, "SELECT count(*) AS n FROM template_sync_runs")[0]["n"] == 0
    assert query(scratch, "SELECT count(*) AS n FROM template_paintings")[0]["n"] == 0


def test_a_release_010_database_is_refused_as_such(scratch):
    migrate.upgrade(scratch, "0001")
    _execute(scratch, "DROP TABLE template_alembic_version")
    with pytest.raises(SchemaBehindError, match=r"created by release 0\.1\.0"):
        require_current(scratch)


def test_the_check_passes_once_migrated_and_is_then_cached(scratch, site, monkeypatch):
    with pytest.raises(SchemaBehindError):
        require_current(scratch)
    migrate.upgrade(scratch)
    require_current(scratch)
    assert sync(scratch, snap(site, [painting(1)])).inserted == 1

    def no_second_look(conn: object) -> None:
        raise AssertionError("checked again")

    monkeypatch.setattr(schema_version, "current_revision", no_second_look)
    require_current(scratch)


def test_the_io_manager_fails_the_step_without_retries(scratch, site):
    migrate.upgrade(scratch, "0003")
    manager = TemplatePostgresIOManager(database_url=scratch)
    context = dg.build_output_context(partition_key=site, asset_key=dg.AssetKey("paintings"))
    with pytest.raises(dg.Failure) as info:
        manager.handle_output(context, snap(site, [painting(1)]))
    assert "template-pipeline migrate" in str(info.value.description)
    assert info.value.allow_retries is False


def test_the_sync_command_refuses_before_any_run(scratch, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DASHBOARD_DATABASE_URL", scratch)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("TEMPLATE_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("TEMPLATE_API_KEY", "k")
    assert main(["sync"]) == 2
    assert "template-pipeline migrate" in capsys.readouterr().err
