"""``sites`` and ``health``: what is configured, and whether each site answers."""

from __future__ import annotations

import argparse

from template_pipeline.apps.cli.common import EXIT_OK, EXIT_SITE_FAILED, out


def cmd_sites(args: argparse.Namespace) -> int:
    from template_pipeline.domain.sites import load_registry

    registry = load_registry()
    out(f"{len(registry)} site(s) from {registry.source}")
    for site in registry:
        # The key variable's name only: the key itself never leaves the process.
        out(f"  {site.key:<24} {site.base_url:<45} key in ${site.api_key_env}  {site.name}")
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    from template_pipeline.domain.sites import load_registry
    from template_pipeline.source.probe import probe_site

    registry = load_registry()
    keys = args.site or registry.keys()
    down = 0
    for key in keys:
        site = registry.get(key)
        status, latency, detail = probe_site(site)
        took = f"{latency * 1000:7.0f} ms" if latency is not None else "      - ms"
        out(f"{site.key:<24} {status:<13} {took}  {site.base_url}")
        if status != "ok":
            down += 1
            out(f"{'':<24} {detail}")
    out(f"{len(keys) - down} of {len(keys)} site(s) up")
    return EXIT_SITE_FAILED if down else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sites", help="list the configured sites (never their keys)")
    p.set_defaults(func=cmd_sites)

    p = sub.add_parser("health", help="probe every configured site's export API")
    p.add_argument("--site", action="append", metavar="KEY")
    p.set_defaults(func=cmd_health)
