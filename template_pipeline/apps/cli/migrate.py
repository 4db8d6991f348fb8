"""``migrate``: upgrade the Dashboard database's schema to this release's (Alembic)."""

from __future__ import annotations

import argparse
import logging
import sys

from template_pipeline.apps.cli.common import EXIT_OK, out
from template_pipeline.store import db


class _Lines(logging.Handler):
    """The revisions' own messages (rows quarantined, rows backfilled) as output lines."""

    def emit(self, record: logging.LogRecord) -> None:
        out(f"  {record.getMessage()}")


def _show_revision_messages() -> None:
    from template_pipeline.store.migrate import LOGGER_NAME

    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.addHandler(_Lines())
    logger.propagate = False


def cmd_migrate(args: argparse.Namespace) -> int:
    from template_pipeline.store import migrate

    database_url = db.dashboard_database_url()
    if args.sql:
        sys.stdout.write(migrate.upgrade_sql(database_url))
        return EXIT_OK
    before = migrate.database_revision(database_url)
    out(f"migrate: the Dashboard database is at revision {before or 'none'}")
    _show_revision_messages()
    done = migrate.upgrade(database_url)
    if done.stamped_legacy:
        out("migrate: it was created by release 0.1.0: stamped at the baseline revision first")
    if done.changed:
        out(f"migrate: upgraded from {done.before or 'none'} to {done.after}")
    else:
        out(f"migrate: already at {done.after}, nothing to do")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate",
        help="upgrade the Dashboard database's schema (DASHBOARD_DATABASE_URL) to this release's",
    )
    p.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL the upgrade would run from the database's revision, apply nothing",
    )
    p.set_defaults(func=cmd_migrate)
