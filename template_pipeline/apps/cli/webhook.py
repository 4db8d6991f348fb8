"""``webhook``: the intake server of signed site events."""

from __future__ import annotations

import argparse

from template_pipeline.apps.cli.common import EXIT_OK, out
from template_pipeline.store import db


def cmd_webhook(args: argparse.Namespace) -> int:
    from template_pipeline.apps.webhooks import WEBHOOK_PATH, serve

    database_url = db.dashboard_database_url()
    out(f"webhook intake on http://{args.host}:{args.port}{WEBHOOK_PATH} (Ctrl-C stops)")
    serve(
        host=args.host,
        port=args.port,
        database_url=database_url,
        max_body_bytes=args.max_body_bytes,
        log_level="debug" if args.verbose else "info",
    )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "webhook",
        help="serve POST /webhooks/template: signed site events, stored for the webhook sensor",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=64 * 1024,
        help="larger bodies are refused with 413 (default 65536)",
    )
    p.set_defaults(func=cmd_webhook)
