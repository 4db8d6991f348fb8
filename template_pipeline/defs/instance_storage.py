"""The Dagster instance's PostgreSQL storage, with a pooled event log.

``dagster.yaml`` names ``TemplatePostgresStorage`` as its ``storage``: dagster-postgres's own
storage, except for the event log. dagster-postgres opens the event log without a connection
pool (``NullPool``) so that short-lived instances never hold connections, and a sync run pays
for it: every event (a materialization, an asset check evaluation, a log line) opens a new
PostgreSQL connection, and storing one asset check evaluation takes three (the event, a table
probe, the check's execution row). A batch of 50 sites stores about 5,000 events: profiled,
opening connections was half the run worker's CPU time and a forked backend per event on the
server. Here a run worker (and the daemon) keeps one connection open and reuses it; a second
thread that writes at the same time gets a connection of its own that is closed when it is
done, which is what ``NullPool`` did for every write.

The webserver still swaps the engine for its own pool with a statement timeout
(``optimize_for_webserver``), as it does for dagster-postgres's storage.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from dagster._config.config_schema import UserConfigSchema
from dagster._core.storage.config import pg_config
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

# One connection kept open; up to this many more while threads write at once (the run's
# step thread and the sync workers' progress events), closed when returned.
POOL_OVERFLOW = 8
# An idle connection older than this is replaced rather than trusted (a restarted server,
# a proxy's idle cut); the pre-ping catches the rest.
POOL_RECYCLE_S = 300


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres's event log, on a small connection pool.

    It also remembers which tables exist: dagster probes the asset check table before every
    check evaluation it stores, and a table that exists stays there for the process's life (an
    absent one is probed again, so an upgrade made meanwhile is seen).
    """

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            token_provider,
            isolation_level="AUTOCOMMIT",
            poolclass=sa.pool.QueuePool,
            pool_size=1,
            max_overflow=POOL_OVERFLOW,
            pool_recycle=POOL_RECYCLE_S,
            pool_pre_ping=True,
        )
        self._existing_tables: set[str] = set()

    def has_table(self, table_name: str) -> bool:
        if table_name in self._existing_tables:
            return True
        exists = super().has_table(table_name)
        if exists:
            self._existing_tables.add(table_name)
        return exists


class TemplatePostgresStorage(DagsterPostgresStorage):
    """dagster-postgres's storage (runs, schedules) with the pooled event log."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._event_log_storage.dispose()
        self._event_log_storage = PooledPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return pg_config()

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> TemplatePostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        # What a process given this instance's reference (a run worker) rebuilds its event log
        # from: the pooled one, with the same configuration.
        if self.inst_data is None:
            return None
        return ConfigurableClassData(
            __name__, PooledPostgresEventLogStorage.__name__, self.inst_data.config_yaml
        )
