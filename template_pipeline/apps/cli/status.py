"""``status``: the fleet at a glance, the same table as the ``fleet_status`` asset."""

from __future__ import annotations

import argparse
from datetime import timedelta

from template_pipeline.apps.cli.common import EXIT_OK, EXIT_SITE_FAILED, out


def cmd_status(args: argparse.Namespace) -> int:
    from template_pipeline.domain import config
    from template_pipeline.domain.sites import load_registry
    from template_pipeline.store import db
    from template_pipeline.store.fleet import markdown, read_fleet
    from template_pipeline.store.schema_version import require_current

    registry = load_registry()
    url = db.dashboard_database_url()
    require_current(url)
    hours = config.number(config.FRESHNESS_HOURS)
    with db.get_engine(url).connect() as conn:
        fleet = read_fleet(conn, registry.keys(), stale_after=timedelta(hours=hours))
    out(markdown(fleet))
    n = fleet.numbers()
    out()
    out(
        f"{n['sites']} site(s): {n['sites_ok']} ok, {n['sites_failing']} failing, "
        f"{n['sites_stale']} stale (no successful sync in {hours:g} h); "
        f"{n['refused_keys']} refused key(s); {n['records_synced']} record(s) in the latest syncs"
    )
    for site in fleet.sites:
        if site.state == "failing" and site.last_error:
            out(f"  {site.site}: {site.last_error_kind or 'failed'}: {site.last_error}")
    return EXIT_OK if n["sites_ok"] == n["sites"] else EXIT_SITE_FAILED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="every site's last sync, failures and records, failing sites first"
    )
    p.set_defaults(func=cmd_status)
