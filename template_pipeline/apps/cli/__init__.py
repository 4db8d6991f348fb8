"""The ``template-pipeline`` command (also ``python -m template_pipeline.cli``).

One module per group of commands, each with a ``register(subparsers)``: :mod:`.sync`,
:mod:`.sites` (``sites``, ``health``), :mod:`.local` (``simulate``, ``demo``, ``dev``),
:mod:`.webhook`, :mod:`.migrate`, :mod:`.purge`, :mod:`.status`, :mod:`.forget`. Exit
codes are in :mod:`.common`: 0 all good, 1 a site failed (sync, health; for ``status``, a site
failing or stale; for ``forget``, an error: nothing was erased), 2 a configuration error
(nothing was contacted; for ``migrate``: no database URL, or a database this release cannot
upgrade), 3 synced but a blocking check failed, 130 / 143 ``sync`` stopped by SIGINT /
SIGTERM (see :mod:`template_pipeline.apps.interrupts`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from template_pipeline import __version__
from template_pipeline.apps.cli import (
    forget,
    local,
    migrate,
    purge,
    sites,
    status,
    sync,
    webhook,
)
from template_pipeline.apps.cli.common import (
    EXIT_CHECK_FAILED,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_SITE_FAILED,
    err,
)
from template_pipeline.domain.sites import SiteConfigError
from template_pipeline.source.redaction import install_log_redaction
from template_pipeline.store import db

COMMANDS = (sync, sites, status, local, webhook, migrate, purge, forget)

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_CONFIG",
    "EXIT_OK",
    "EXIT_SITE_FAILED",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="template-pipeline",
        description="Keep the Dashboard's PostgreSQL in sync with every Template artist site.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # With -v, urllib3 logs each request line (a redirect target's query included): API keys
    # echoed there, in any encoding, are redacted (each client registers its key).
    install_log_redaction()
    try:
        return args.func(args)
    except (SiteConfigError, db.DatabaseConfigError) as exc:
        err(str(exc))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
