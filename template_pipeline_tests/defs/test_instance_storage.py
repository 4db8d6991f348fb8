"""The instance storage of the repo's dagster.yaml: dagster-postgres, with a pooled event log."""

import shutil

import dagster as dg
import pytest
import sqlalchemy as sa

from template_pipeline.defs.instance_storage import (
    PooledPostgresEventLogStorage,
    TemplatePostgresStorage,
)
from template_pipeline.domain import config
from template_pipeline.store import db
from template_pipeline_tests.fixtures.deployment import ScratchDatabase


@pytest.fixture
def instance(tmp_path, monkeypatch, postgres_server_url):
    scratch = ScratchDatabase.create(postgres_server_url, "tp_instance")
    shutil.copyfile(config.PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", db.dagster_storage_url(scratch.libpq_url))
    with dg.DagsterInstance.get() as instance:
        yield instance
    scratch.drop()


def _connects(engine: sa.Engine) -> list[object]:
    opened: list[object] = []
    sa.event.listen(engine, "connect", lambda dbapi_conn, record: opened.append(dbapi_conn))
    return opened


@dg.asset(check_specs=[dg.AssetCheckSpec(f"check_{i}", asset="many_events") for i in range(10)])
def many_events(context: dg.AssetExecutionContext):
    for i in range(10):
        context.log.info("line %s", i)
    yield dg.MaterializeResult(
        check_results=[dg.AssetCheckResult(check_name=f"check_{i}", passed=True) for i in range(10)]
    )


def test_the_repo_instance_uses_the_pooled_event_log(instance):
    assert isinstance(instance.event_log_storage, PooledPostgresEventLogStorage)
    ref = instance.get_ref()
    assert ref.storage_data.class_name == TemplatePostgresStorage.__name__
    # A run worker rebuilds its instance from the reference: the pooled event log again.
    with dg.DagsterInstance.from_ref(ref) as rebuilt:
        assert isinstance(rebuilt.event_log_storage, PooledPostgresEventLogStorage)


def test_a_run_stores_its_events_over_one_connection(instance):
    opened = _connects(instance.event_log_storage._engine)
    result = dg.materialize([many_events], instance=instance)
    assert result.success
    records = instance.get_records_for_run(result.run_id).records
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("many_events"), "check_3"), limit=5
    )
    # Every event and every check's execution row went through the pool.
    assert len(records) > 30
    assert [c.status.value for c in checks] == ["SUCCEEDED"]
    # One kept open, and one more whenever a second thread writes at the same moment; without
    # the pool it is one connection per event (and three per check evaluation).
    assert len(opened) <= 4, f"{len(opened)} connections for {len(records)} events"


def test_the_table_probe_is_remembered_only_when_the_table_exists(instance):
    storage = instance.event_log_storage
    assert storage.has_table("asset_check_executions")
    assert "asset_check_executions" in storage._existing_tables
    assert not storage.has_table("no_such_table")
    assert "no_such_table" not in storage._existing_tables


def test_a_connection_dropped_by_the_server_is_replaced(instance, postgres_server_url):
    storage = instance.event_log_storage
    assert (
        storage.get_event_records(
            dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION), limit=1
        )
        == []
    )
    # The server ends every other session of the instance database (a restart, a failover).
    database = storage._engine.url.database
    admin = sa.create_engine(
        str(sa.make_url(postgres_server_url).set(drivername="postgresql+psycopg")),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": database},
        )
    admin.dispose()
    result = dg.materialize([many_events], instance=instance)
    assert result.success
