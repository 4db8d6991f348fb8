"""Which schema revision a Dashboard database is at, and the refusal to write into another one.

The schema changes only through the Alembic revisions of :mod:`template_pipeline.store.migrations`
(applied by ``template-pipeline migrate``, :mod:`.migrate`). Every writer calls
:func:`require_current` first: writing into a database whose tables are older than this
release's code would fail halfway (``operator does not exist: text = integer``) or, worse,
succeed with the old meaning. The check reads one row and is cached per process and URL once it
passed; it does not import Alembic, which costs a fifth of a second to every run process.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from template_pipeline.store import db

# The revisions of store/migrations/versions, oldest first (a test keeps this equal to Alembic's
# view of them, so a new revision cannot be forgotten here). The last one is the schema this
# release's code reads and writes.
REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")
BASELINE_REVISION = REVISIONS[0]
REQUIRED_REVISION = REVISIONS[-1]
# Alembic's bookkeeping table, named for this project: the Dashboard application may keep its
# own ``alembic_version`` in the same database.
VERSION_TABLE = "template_alembic_version"
# A table every release has had: its presence without a version row means "release 0.1.0".
LEGACY_MARKER_TABLE = "template_sync_runs"
MIGRATE_HINT = (
    "run `template-pipeline migrate` (in production: `deploy/start.sh migrate`, the Procfile's "
    "release step)"
)

_current: set[str] = set()
_current_lock = threading.Lock()


class SchemaVersionError(db.DatabaseConfigError):
    """The Dashboard database's schema is not the one this release writes."""


class SchemaBehindError(SchemaVersionError):
    """The Dashboard database's schema is older than this release's: it must be migrated."""


def current_revision(conn: sa.Connection) -> str | None:
    """The revision recorded in the database, or ``None`` when none is."""
    exists = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": VERSION_TABLE}).scalar()
    if exists is None:
        return None
    rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def has_legacy_tables(conn: sa.Connection) -> bool:
    """Whether the database holds tables of a release that recorded no revision."""
    found = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": LEGACY_MARKER_TABLE}).scalar()
    return found is not None


def require_current(database_url: str) -> None:
    """Raise unless the database is at :data:`REQUIRED_REVISION` (cheap after the first pass).

    :class:`SchemaBehindError` (a :class:`~template_pipeline.store.db.DatabaseConfigError`)
    names the database's revision and the required one and says to run
    ``template-pipeline migrate``; a database at a revision this release does not know (written
    by a newer release) raises :class:`SchemaVersionError`.
    """
    if database_url in _current:
        return
    with _current_lock:
        if database_url in _current:
            return
        with db.get_engine(database_url).connect() as conn:
            revision = current_revision(conn)
            legacy = revision is None and has_legacy_tables(conn)
        if revision != REQUIRED_REVISION:
            raise _version_error(revision, legacy)
        _current.add(database_url)


def _version_error(revision: str | None, legacy: bool) -> SchemaVersionError:
    required = REQUIRED_REVISION
    if revision is None:
        where = (
            "was created by release 0.1.0 (no schema revision recorded)"
            if legacy
            else "has no template-pipeline tables yet"
        )
        return SchemaBehindError(
            f"the Dashboard database {where}; this release needs schema revision {required}: "
            f"{MIGRATE_HINT}"
        )
    if revision in REVISIONS:
        return SchemaBehindError(
            f"the Dashboard database's schema is at revision {revision}, this release needs "
            f"{required}: {MIGRATE_HINT}"
        )
    return SchemaVersionError(
        f"the Dashboard database's schema is at revision {revision}, which this release does "
        f"not know (it needs {required}): the database was migrated by a newer release; deploy "
        "that release again"
    )


def forget_checks() -> None:
    """Check again on the next write (tests that migrate a database under a running process)."""
    with _current_lock:
        _current.clear()
