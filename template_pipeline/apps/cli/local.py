"""``simulate``, ``demo`` and ``dev``: the project on one machine, with simulated sites."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from template_pipeline.apps.cli.common import EXIT_OK, out, sync_exit_code
from template_pipeline.domain import config
from template_pipeline.store import db


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
        out(f"sites file written to {args.write_sites_file}; export the keys:")
        for s, entry in zip(sites, entries, strict=True):
            out(f"  export {entry['api_key_env']}={s.api_key}")
    out(f"serving {len(sites)} simulated site(s) on {base}/t/<key>/ (Ctrl-C stops)")
    serve(sites, host=args.host, port=args.port)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from template_pipeline.apps.demo import demo_environment
    from template_pipeline.apps.summary import exit_status, format_summary
    from template_pipeline.apps.sync import run_sync
    from template_pipeline.domain.sites import load_registry

    started = time.perf_counter()
    where = (
        "the PostgreSQL of DASHBOARD_DATABASE_URL"
        if config.DASHBOARD_DATABASE_URL.get()
        else "the embedded PostgreSQL"
    )
    out(f"demo: starting the Template simulator; tables go to {where} ...")
    with demo_environment() as env:
        out(
            f"demo: Dashboard schema at revision {env.schema.after} "
            f"(template-pipeline migrate; before: {env.schema.before or 'none'})"
        )
        registry = load_registry()
        out(
            f"demo: {len(registry)} simulated sites on {env.simulator.url}: "
            f"{', '.join(registry.keys())}"
        )
        out("demo: full sync through Dagster (template-pipeline sync) ...\n")
        outcomes = run_sync(registry, database_url=env.env[db.DASHBOARD_DATABASE_URL_ENV])
        out(format_summary(outcomes))
    out(f"\ndemo finished in {time.perf_counter() - started:.1f} s.")
    out("Open the Dagster UI on the same setup with `make dev` (http://127.0.0.1:3000).")
    return sync_exit_code(exit_status(outcomes))


def cmd_dev(args: argparse.Namespace) -> int:
    from template_pipeline.apps.demo import demo_environment

    with demo_environment(port=args.simulator_port) as env:
        out(f"dev: Dashboard schema at revision {env.schema.after} (template-pipeline migrate)")
        out(f"dev: simulator on {env.simulator.url}, sites file {env.sites_file}")
        out(f"dev: Dagster UI on http://{args.host}:{args.port} (Ctrl-C stops everything)")
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


def register(sub: argparse._SubParsersAction) -> None:
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
