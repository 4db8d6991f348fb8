"""The ``template-pipeline`` command (also ``python -m template_pipeline.cli``).

Commands: ``sync``, ``sites``, ``health``, ``simulate``, ``demo``, ``dev``, ``webhook``. Exit codes:
0 all good, 1 a site failed (sync, health), 2 a configuration error (nothing was contacted).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from template_pipeline import __version__
from template_pipeline.domain import config
from template_pipeline.domain.entities import NAMES
from template_pipeline.store import db

EXIT_OK, EXIT_SITE_FAILED, EXIT_CONFIG = 0, 1, 2


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(f"template-pipeline: {text}\n")


# --- sites / health ----------------------------------------------------------------------------


def cmd_sites(args: argparse.Namespace) -> int:
    from template_pipeline.domain.sites import load_registry

    registry = load_registry()
    _out(f"{len(registry)} site(s) from {registry.source}")
    for site in registry:
        # The key variable's name only: the key itself never leaves the process.
        _out(f"  {site.key:<24} {site.base_url:<45} key in ${site.api_key_env}  {site.name}")
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
        _out(f"{site.key:<24} {status:<13} {took}  {site.base_url}")
        if status != "ok":
            down += 1
            _out(f"{'':<24} {detail}")
    _out(f"{len(keys) - down} of {len(keys)} site(s) up")
    return EXIT_SITE_FAILED if down else EXIT_OK


# --- sync --------------------------------------------------------------------------------------


def cmd_sync(args: argparse.Namespace) -> int:
    from template_pipeline.apps.sync import format_summary, run_sync
    from template_pipeline.domain.sites import load_registry

    registry = load_registry()
    database_url = db.dashboard_database_url()
    if not config.DAGSTER_HOME.get():
        raise db.DatabaseConfigError(
            "DAGSTER_HOME is not set: it names the Dagster instance the runs are recorded in "
            "(a folder holding the repo's dagster.yaml)"
        )
    outcomes = run_sync(
        registry,
        sites=args.site,
        entities=args.entity,
        database_url=database_url,
        # Without -v the summary says what failed and why; step tracebacks stay in the run's
        # event log (the UI), where they belong.
        log_level="DEBUG" if args.verbose else "CRITICAL",
    )
    _out(format_summary(outcomes))
    return EXIT_OK if all(o.success for o in outcomes) else EXIT_SITE_FAILED


# --- simulator, demo, dev ---------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace) -> int:
    from template_pipeline.apps.simulator import SimSite, api_key_env_name, demo_sites, serve
    from template_pipeline.domain.sites import write_sites_file

    if args.sites:
        sites = [
            SimSite(
                key=f"site-{i + 1}",
                api_key=f"sim-key-{i + 1}",
                seed=args.seed + i,
                paintings=args.paintings,
                users=args.users,
                orders=args.orders,
            )
            for i in range(args.sites)
        ]
    else:
        sites = demo_sites()
    base = f"http://{args.host}:{args.port}"
    if args.write_sites_file:
        entries = [
            {
                "key": s.key,
                "base_url": f"{base}/t/{s.key}/",
                "api_key_env": api_key_env_name(s.key),
                "name": s.name or s.key,
            }
            for s in sites
        ]
        write_sites_file(args.write_sites_file, entries)
        _out(f"sites file written to {args.write_sites_file}; export the keys:")
        for s, entry in zip(sites, entries, strict=True):
            _out(f"  export {entry['api_key_env']}={s.api_key}")
    _out(f"serving {len(sites)} simulated site(s) on {base}/t/<key>/ (Ctrl-C stops)")
    serve(sites, host=args.host, port=args.port)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from template_pipeline.apps.demo import demo_environment
    from template_pipeline.apps.sync import format_summary, run_sync
    from template_pipeline.domain.sites import load_registry

    started = time.perf_counter()
    where = (
        "the PostgreSQL of DASHBOARD_DATABASE_URL"
        if config.DASHBOARD_DATABASE_URL.get()
        else "the embedded PostgreSQL"
    )
    _out(f"demo: starting the Template simulator; tables go to {where} ...")
    with demo_environment() as env:
        registry = load_registry()
        _out(
            f"demo: {len(registry)} simulated sites on {env.simulator.url}: "
            f"{', '.join(registry.keys())}"
        )
        _out("demo: full sync through Dagster (template-pipeline sync) ...\n")
        outcomes = run_sync(registry, database_url=env.env[db.DASHBOARD_DATABASE_URL_ENV])
        _out(format_summary(outcomes))
    _out(f"\ndemo finished in {time.perf_counter() - started:.1f} s.")
    _out("Open the Dagster UI on the same setup with `make dev` (http://127.0.0.1:3000).")
    return EXIT_OK if all(o.success for o in outcomes) else EXIT_SITE_FAILED


def cmd_dev(args: argparse.Namespace) -> int:
    from template_pipeline.apps.demo import demo_environment

    with demo_environment(port=args.simulator_port) as env:
        _out(f"dev: simulator on {env.simulator.url}, sites file {env.sites_file}")
        _out(f"dev: Dagster UI on http://{args.host}:{args.port} (Ctrl-C stops everything)")
        command = [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            str(config.PROJECT_ROOT / "workspace.yaml"),
            "-h",
            args.host,
            "-p",
            str(args.port),
        ]
        process = subprocess.Popen(command, env=os.environ.copy(), cwd=config.PROJECT_ROOT)
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            return EXIT_OK


# --- webhook intake ----------------------------------------------------------------------------


def cmd_webhook(args: argparse.Namespace) -> int:
    from template_pipeline.apps.webhooks import WEBHOOK_PATH, serve

    database_url = db.dashboard_database_url()
    _out(f"webhook intake on http://{args.host}:{args.port}{WEBHOOK_PATH} (Ctrl-C stops)")
    serve(
        host=args.host,
        port=args.port,
        database_url=database_url,
        max_body_bytes=args.max_body_bytes,
        log_level="debug" if args.verbose else "info",
    )
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="template-pipeline",
        description="Keep the Dashboard's PostgreSQL in sync with every Template artist site.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("sites", help="list the configured sites (never their keys)")
    p.set_defaults(func=cmd_sites)

    p = sub.add_parser("health", help="probe every configured site's export API")
    p.add_argument("--site", action="append", metavar="KEY")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("simulate", help="serve simulated Template sites (demo, tests, benchmarks)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument(
        "--sites", type=int, default=0, help="N generated sites (default: the 3 demo sites)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paintings", type=int, default=40)
    p.add_argument("--users", type=int, default=15)
    p.add_argument("--orders", type=int, default=25)
    p.add_argument("--write-sites-file", metavar="PATH", help="write a sites file for these sites")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="embedded PostgreSQL + simulator + a full sync, end to end")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("dev", help="the demo setup under `dagster dev` (UI, schedules, sensors)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--simulator-port", type=int, default=8765)
    p.set_defaults(func=cmd_dev)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from template_pipeline.domain.sites import SiteConfigError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (SiteConfigError, db.DatabaseConfigError) as exc:
        _err(str(exc))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
