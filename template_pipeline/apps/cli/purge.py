"""``purge [--dry-run]``: what the daily ``retention`` asset does, from the command line.

Resolved rejects, health probes, consumed webhook events and old alerts of the Dashboard database
(``DASHBOARD_DATABASE_URL``), and the finished runs of the Dagster instance of ``DAGSTER_HOME``
(skipped, saying so, when it is unset), each older than its ``TEMPLATE_RETENTION_*_DAYS`` limit.
Prints one line per kind; ``--dry-run`` counts and removes nothing. Exits 0, or 2 on a
configuration error (no database URL, a limit that is not a whole number of days, a schema that
is behind).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from template_pipeline.apps.cli.common import EXIT_CONFIG, EXIT_OK, err, out
from template_pipeline.domain import config
from template_pipeline.store import db

if TYPE_CHECKING:
    from template_pipeline.store.retention import Purged, RetentionPolicy


def cmd_purge(args: argparse.Namespace) -> int:
    from template_pipeline.store.retention import RetentionPolicy, purge_tables
    from template_pipeline.store.schema_version import require_current

    try:
        policy = RetentionPolicy.from_env()
    except ValueError as exc:
        err(str(exc))
        return EXIT_CONFIG
    database_url = db.dashboard_database_url()
    require_current(database_url)
    dry_run = bool(args.dry_run)
    purged = purge_tables(database_url, policy, dry_run=dry_run)
    runs = _purge_runs(database_url, policy, dry_run)
    verb = "would remove" if dry_run else "removed"
    out(f"purge{' (dry run: nothing is removed)' if dry_run else ''}:")
    out(f"  {'kind':<16} {'older than':<11} {'before':<22} {verb}")
    for p in [*purged, runs] if runs is not None else purged:
        out(
            f"  {p.kind:<16} {f'{p.days} days':<11} {f'{p.cutoff:%Y-%m-%d %H:%M} UTC':<22} {p.rows}"
        )
    if runs is None:
        days = f"{policy.dagster_runs_days} days"
        out(f"  {'dagster_runs':<16} {days:<11} {'-':<22} skipped: DAGSTER_HOME is not set")
    total = sum(p.rows for p in purged) + (runs.rows if runs is not None else 0)
    went = "would go" if dry_run else "removed"
    out(f"purge: {total} row(s) {went} in all; live entity rows are never touched")
    return EXIT_OK


def _purge_runs(database_url: str, policy: RetentionPolicy, dry_run: bool) -> Purged | None:
    """The Dagster instance's part, or None without ``DAGSTER_HOME``."""
    if not config.DAGSTER_HOME.get():
        return None
    from template_pipeline.apps.sync import instance_from_home
    from template_pipeline.defs.retention import purge_dagster_runs
    from template_pipeline.store.retention import latest_success_run_ids

    instance = instance_from_home()
    try:
        return purge_dagster_runs(
            instance,
            policy.dagster_runs_days,
            keep=latest_success_run_ids(database_url),
            dry_run=dry_run,
        )
    finally:
        instance.dispose()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "purge",
        help="remove resolved rejects, old health probes, consumed webhook events, old alerts "
        "and finished Dagster runs older than their TEMPLATE_RETENTION_*_DAYS limit",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be removed, remove nothing",
    )
    p.set_defaults(func=cmd_purge)
