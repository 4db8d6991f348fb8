"""Upgrading a Dashboard database's schema with Alembic (``template-pipeline migrate``).

The revisions live in :mod:`template_pipeline.store.migrations` (shipped inside the package).
:func:`upgrade` runs them in one transaction under a transaction-scoped advisory lock, so two
processes migrating at once (two release phases, a test and a demo) apply each revision once:
the second waits, then finds nothing to do. PostgreSQL's DDL is transactional, so a revision
that fails leaves the database as it was.

Three starting points:

* an empty database is upgraded from nothing;
* a database created by release 0.1.0 (its ``create_all``: the tables, no version row) is first
  stamped at the baseline revision, which is exactly that schema, then upgraded;
* a database at a revision is upgraded from there.

Only this project's tables are Alembic's business: :func:`include_name` keeps the Dashboard
application's own tables (same database) out of autogenerate's comparisons.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from template_pipeline.store import db
from template_pipeline.store.locks import xact_lock_sa
from template_pipeline.store.schema_version import (
    BASELINE_REVISION,
    REVISIONS,
    SchemaVersionError,
    current_revision,
    forget_checks,
    has_legacy_tables,
)

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
# What the revisions log (rows moved, rows backfilled); the migrate command shows it.
LOGGER_NAME = "template_pipeline.store.migrations"
# The tables release 0.1.0 created: all of them must be there to stamp such a database.
LEGACY_TABLES = (
    "template_paintings",
    "template_users",
    "template_orders",
    "template_order_items",
    "template_settings",
    "template_exhibitions",
    "template_custom_requests",
    "template_stats",
    "template_rejects",
    "template_sync_runs",
    "template_alerts",
    "template_webhook_events",
    "template_site_health",
)


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: the revision before (``None``: none recorded) and after."""

    before: str | None
    after: str | None
    # The database was release 0.1.0's, stamped at the baseline before the upgrade.
    stamped_legacy: bool = False

    @property
    def changed(self) -> bool:
        return self.stamped_legacy or self.before != self.after


def target_metadata() -> sa.MetaData:
    """The live table definitions (every table module imported, so all of them are on it)."""
    from template_pipeline.store import ops_tables, tables
    from template_pipeline.store.base import metadata

    assert tables.ENTITY_TABLES and ops_tables.template_alerts is not None  # imported for this
    return metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Autogenerate compares this project's tables only (the Dashboard's are not ours)."""
    if type_ == "table":
        return name in target_metadata().tables
    return True


def alembic_config(
    connection: sa.Connection | None = None, output: io.StringIO | None = None
) -> Config:
    """An Alembic configuration for the packaged migrations (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    config.attributes["output_buffer"] = output
    return config


def revision_order() -> list[str]:
    """The revisions as Alembic sees them, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations have no revision"
    return head


def database_revision(database_url: str) -> str | None:
    """The revision recorded in the database (``None``: empty, or release 0.1.0's)."""
    with db.get_engine(database_url).connect() as conn:
        return current_revision(conn)


def _check_known(revision: str | None, target: str) -> None:
    for name, value in (("the database", revision), ("the requested", target)):
        if value is not None and value != "head" and value not in REVISIONS:
            raise SchemaVersionError(
                f"{name} schema revision {value} is not one of this release's "
                f"({', '.join(REVISIONS)}): a newer release migrated the database; deploy it"
            )


def _missing_legacy_tables(conn: sa.Connection) -> list[str]:
    present = set(sa.inspect(conn).get_table_names())
    return [name for name in LEGACY_TABLES if name not in present]


def _stamp_legacy(conn: sa.Connection) -> bool:
    """Stamp a release-0.1.0 database at the baseline; whether it was one."""
    from alembic import command

    if current_revision(conn) is not None or not has_legacy_tables(conn):
        return False
    missing = _missing_legacy_tables(conn)
    if missing:
        raise db.DatabaseConfigError(
            "the Dashboard database has template-pipeline tables but no schema revision, and "
            f"lacks {', '.join(missing)}: it is not a database of release 0.1.0, so it cannot "
            "be stamped at the baseline; compare it with the baseline revision by hand"
        )
    command.stamp(alembic_config(conn), BASELINE_REVISION)
    return True


def upgrade(database_url: str, revision: str = "head") -> Upgrade:
    """Upgrade the database to ``revision`` (default: this release's head), all or nothing."""
    from alembic import command

    engine = db.get_engine(database_url)
    with engine.begin() as conn:
        # A revision may rewrite a big table: no statement limit here (the lock timeout stays,
        # so a migration stuck behind a reader fails whole instead of waiting without end).
        conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
        xact_lock_sa(conn, "migrate")
        before = current_revision(conn)
        _check_known(before, revision)
        stamped = _stamp_legacy(conn)
        command.upgrade(alembic_config(conn), revision)
        after = current_revision(conn)
    forget_checks()
    return Upgrade(before=before, after=after, stamped_legacy=stamped)


def upgrade_sql(database_url: str, revision: str = "head") -> str:
    """The SQL :func:`upgrade` would run from the database's revision (nothing is applied)."""
    from alembic import command

    with db.get_engine(database_url).connect() as conn:
        start = current_revision(conn)
        _check_known(start, revision)
        if start is None and has_legacy_tables(conn):
            start = BASELINE_REVISION
    output = io.StringIO()
    span = f"{start}:{revision}" if start else revision
    command.upgrade(alembic_config(output=output), span, sql=True)
    return output.getvalue()


def compare_with_tables(database_url: str) -> list[tuple[object, ...]]:
    """Autogenerate's differences between the database and the live table definitions."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.get_engine(database_url).connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": include_name, "compare_type": True}
        )
        return list(_flatten(compare_metadata(context, target_metadata())))


def _flatten(diffs: Iterable[object]) -> Iterable[tuple[object, ...]]:
    for diff in diffs:
        # Column modifications come grouped in a list per column.
        if isinstance(diff, list):
            yield from (tuple(item) for item in diff)
        else:
            yield tuple(diff)  # type: ignore[arg-type]
