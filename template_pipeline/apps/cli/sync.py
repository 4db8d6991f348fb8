"""``sync``: materialise the selected sites and entities through Dagster, then summarise.

A progress line per site as it is done; then the summary table. Exit codes: 0 synced, 1 a site
failed, 2 configuration error, 3 synced but a blocking check failed, 130 / 143 stopped by
SIGINT / SIGTERM (the site being written rolled back, its run marked canceled).
"""

from __future__ import annotations

import argparse

from template_pipeline.apps.cli.common import err, out, sync_exit_code
from template_pipeline.domain import config
from template_pipeline.domain.entities import NAMES
from template_pipeline.store import db
from template_pipeline.store.schema_version import require_current


def cmd_sync(args: argparse.Namespace) -> int:
    from template_pipeline.apps.interrupts import SyncInterrupted
    from template_pipeline.apps.summary import exit_status, format_summary, progress_line
    from template_pipeline.apps.sync import run_sync
    from template_pipeline.domain.sites import load_registry

    registry = load_registry()
    database_url = db.dashboard_database_url()
    if not config.DAGSTER_HOME.get():
        raise db.DatabaseConfigError(
            "DAGSTER_HOME is not set: it names the Dagster instance the runs are recorded in "
            "(a folder holding the repo's dagster.yaml)"
        )
    # Every run would fail on it, site after site: say it once, before any run starts.
    require_current(database_url)
    try:
        outcomes = run_sync(
            registry,
            sites=args.site,
            entities=args.entity,
            database_url=database_url,
            # Without -v the summary says what failed and why; step tracebacks stay in the
            # run's event log (the UI), where they belong.
            log_level="DEBUG" if args.verbose else "CRITICAL",
            progress=None if args.quiet else lambda report, done: out(progress_line(report, done)),
        )
    except SyncInterrupted as stopped:  # SIGINT / SIGTERM: what was done, then why it ended
        if stopped.outcomes:
            out(format_summary(stopped.outcomes))
        err(str(stopped))
        return stopped.interruption.exit_code
    out(format_summary(outcomes))
    return sync_exit_code(exit_status(outcomes))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sync", help="materialise the selected sites and entities through Dagster")
    p.add_argument(
        "--site", action="append", metavar="KEY", help="a site key (repeatable; default: all)"
    )
    p.add_argument(
        "--entity",
        action="append",
        metavar="NAME",
        help=f"an entity: {', '.join(NAMES)} (repeatable; default: all)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress line per site, the summary only"
    )
    p.set_defaults(func=cmd_sync)
