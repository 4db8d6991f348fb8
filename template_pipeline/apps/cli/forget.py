"""``forget``: erase one person's data (an e-mail address) everywhere the pipeline stored it."""

from __future__ import annotations

import argparse

from template_pipeline.apps.cli.common import EXIT_OK, EXIT_SITE_FAILED, err, out


def cmd_forget(args: argparse.Namespace) -> int:
    import psycopg

    from template_pipeline.store import db
    from template_pipeline.store.personal_data import ForgetError, forget
    from template_pipeline.store.schema_version import require_current

    url = db.dashboard_database_url()
    require_current(url)
    where = f"site {args.site}" if args.site else "every site"
    try:
        with db.connect(url) as conn:
            erased = forget(conn, args.email, site=args.site)
    except ForgetError as exc:
        err(str(exc))
        return EXIT_SITE_FAILED
    except psycopg.Error as exc:
        err(f"could not erase: database error: {str(exc).strip().splitlines()[0]}")
        return EXIT_SITE_FAILED
    if not erased.tables:
        out(f"forget: nothing held that address ({where})")
        return EXIT_OK
    out(f"forget: erased from {where}:")
    for table, count in erased.tables.items():
        out(f"  {table:<28} {count} row(s)")
    if erased.live:
        out(
            f"forget: {erased.live} of these row(s) are still served by their site: the next "
            "sync writes them again unless the site erases the person too"
        )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "forget", help="erase one person's data (by e-mail address) from every table and reject"
    )
    p.add_argument("--email", required=True, metavar="ADDRESS")
    p.add_argument("--site", metavar="KEY", help="only this site's rows")
    p.set_defaults(func=cmd_forget)
