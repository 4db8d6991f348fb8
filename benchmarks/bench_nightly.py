"""Benchmark: the nightly sync of N small sites through the run queue and the daemon.

Run it with ``make bench-nightly`` (``BENCH_ARGS="--sites 1000"`` for the documented run), or
``python benchmarks/bench_nightly.py --help``.

The deployment is the production one, on this machine: a temporary ``DAGSTER_HOME`` holding the
repo's ``dagster.yaml`` (PostgreSQL storage, the ``QueuedRunCoordinator`` with its limits),
``dagster-daemon run -w workspace.yaml`` as a subprocess, the simulator serving N small sites in
its own process, and a fresh Dashboard database.

How the runs are asked for: the schedule itself ticks. Before the daemon starts, the schedule's
state is written as "running since just before last night's 02:00", so the daemon's scheduler
finds that tick missed and evaluates ``nightly_template_sync`` for it (the catch-up it would do
after a deploy): the schedule's own code produces one ``RunRequest`` per window of
``TEMPLATE_SITES_PER_RUN`` sites (``--sites-per-run``), the daemon creates the runs and submits
them to the queue, and the queue launches them through the code location. Everything an
operator's night pays for is measured, tick included. The sensors and the hourly health schedule
are stopped for the benchmark: they would add runs of their own (the sites sensor asks a first
sync of every new partition) that are not the nightly's.

One site gets a wrong API key: it must fail alone (its partitions failed, every other site's
materialised, though they share its run).

Figures: wall time from the daemon's start to the end of the last run, sites per minute, and the
CPU time of the processes involved, from the kernel's accounting: the run workers (children of
the code server, summed when they are reaped), the code server and the daemon. The in-asset work
(``sync_site``: fetch, validate, write and evaluate the checks, without Dagster's events) is
measured on a few sites in a warm process of its own, so that Dagster's share of a run is what
remains.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
from _deployment import (  # noqa: F401  (process_kind and last_nightly_tick: tested here)
    Deployment,
    last_nightly_tick,
    prepare_instance,
    process_kind,
    wait_for_runs,
)

# What the issue states.
TARGET_CPU_PER_SITE_S = 0.5
TARGET_1000_SITES_S = 10 * 60
DEFAULT_SITES_PER_RUN = 50


# --------------------------------------------------------------------------------------------
# Child: the in-asset work of a few sites, without Dagster


def child_in_asset(args: argparse.Namespace) -> dict[str, Any]:
    """What the sync step does for each site (``sync_site``: fetch, validate, write, checks),
    in a warm process: the first site only warms it up (imports, connections) and is not
    counted, as a run's first site pays those costs once for its whole batch."""
    from template_pipeline.defs.checks import sync_check_specs
    from template_pipeline.defs.resources import TemplateCheckSettings, TemplateClientResource
    from template_pipeline.defs.sync.site import SyncSettings, sync_site
    from template_pipeline.domain.entities import NAMES

    client = TemplateClientResource()
    registry = client.registry()
    settings = SyncSettings(
        database_url=args.database_url,
        run_id="bench-in-asset",
        client=client.settings(),
        checks=TemplateCheckSettings(),
        entities=frozenset(NAMES),
        check_keys=frozenset((s.asset_key.path[-1], s.name) for s in sync_check_specs()),
    )
    warm_up, *measured = args.sites.split(",")
    sync_site(registry.get(warm_up), settings)
    per_site = []
    for site in measured:
        cpu = time.process_time()
        started = time.perf_counter()
        report = sync_site(registry.get(site), settings)
        per_site.append(
            {
                "site": site,
                "cpu_s": time.process_time() - cpu,
                "seconds": time.perf_counter() - started,
                "rows": sum(o.result.valid for o in report.entities.values() if o.result),
                "failed": report.failed,
            }
        )
    return {"sites": per_site}


def child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_nightly.py child")
    parser.add_argument("mode", choices=["in-asset"])
    parser.add_argument("--sites", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--report", required=True)
    args = parser.parse_args(argv)
    common.setup_logging(False)
    common.write_report(args.report, child_in_asset(args))
    return 0


# --------------------------------------------------------------------------------------------
# The benchmark


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_nightly.py",
        description="N small sites synced by the nightly schedule through the daemon's run queue.",
    )
    parser.add_argument("--sites", type=int, default=100, help="number of sites (default 100)")
    parser.add_argument(
        "--in-asset-samples",
        type=int,
        default=5,
        help="sites whose in-asset work is measured without Dagster (default 5)",
    )
    parser.add_argument(
        "--sites-per-run",
        type=int,
        default=DEFAULT_SITES_PER_RUN,
        help=f"TEMPLATE_SITES_PER_RUN of the deployment (default {DEFAULT_SITES_PER_RUN})",
    )
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="seconds to wait for the runs (default: auto)"
    )
    parser.add_argument(
        "--dagster-yaml",
        type=Path,
        default=common.REPO_ROOT / "dagster.yaml",
        help="the instance configuration to use (default: the repo's dagster.yaml)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the logs")
    parser.add_argument("--verbose", action="store_true")
    return parser


def _site_keys(count: int) -> list[str]:
    width = max(4, len(str(count)))
    return [f"site-{i:0{width}d}" for i in range(1, count + 1)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.sites < 2:
        raise SystemExit("--sites must be at least 2 (one of them fails on purpose)")
    keys = _site_keys(args.sites)
    refused = keys[len(keys) // 2]
    server_url, source = common.database_server_url()
    figures: dict[str, Any] = {"sites": args.sites, "refused_site": refused, "database": source}
    timeout = args.timeout or max(900.0, args.sites * 3.0)
    per_run = args.sites_per_run
    expected_runs = -(-args.sites // per_run)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(common.workdir("nightly", args.keep)))
        dashboard_url = stack.enter_context(
            common.fresh_database(server_url, "nightly", keep=args.keep)
        )
        instance_url = stack.enter_context(
            common.fresh_database(server_url, "nightly_dagster", keep=args.keep, dashboard=False)
        )
        figures["machine"] = common.machine_description(dashboard_url)
        home = work / "dagster_home"
        home.mkdir()
        shutil.copyfile(args.dagster_yaml, home / "dagster.yaml")
        figures["dagster_yaml"] = str(args.dagster_yaml)

        sites = [
            common.SimulatedSite(key, f"sim-key-{key}", {"seed": index})
            for index, key in enumerate(keys, 1)
        ]
        common.progress(f"serving {len(sites)} simulated sites ...")
        simulator = stack.enter_context(common.SimulatorProcess(sites, work))
        from template_pipeline.store import db

        env = common.child_env(
            {
                "DAGSTER_HOME": str(home),
                "DAGSTER_POSTGRES_URL": db.dagster_storage_url(instance_url),
                "DASHBOARD_DATABASE_URL": dashboard_url,
                "TEMPLATE_SITES_FILE": str(work / "sites.yaml"),
                "TEMPLATE_SITES_PER_RUN": str(per_run),
            }
        )
        env.update(common.write_sites(work / "sites.yaml", simulator, refused=frozenset({refused})))
        # The Dashboard's tables exist in production before any night: fresh_database migrated
        # dashboard_url.
        # This process reads the same instance (and loads the workspace once to set it up).
        os.environ.update(env)

        import dagster as dg

        instance = stack.enter_context(dg.DagsterInstance.get())
        tick = last_nightly_tick(datetime.now(timezone.utc))
        common.progress("preparing the instance (loading the workspace once) ...")
        figures["instigators"] = prepare_instance(instance, keys, tick)

        common.progress("starting dagster-daemon; the scheduler catches up last night's tick ...")
        common.interrupt_on_signals()  # loading the workspace replaced the SIGINT handler
        started = time.time()
        with Deployment(env, work) as deployment:
            records = wait_for_runs(instance, deployment, expected_runs, timeout)
            finished = time.time()
            # Run workers' last moments (and their log tails) are part of the night.
            deadline = time.monotonic() + 30
            while deployment.run_workers() and time.monotonic() < deadline:
                time.sleep(0.2)
            deployment.sample()
            deployment.stop()
        figures["cpu"] = {
            "total_s": deployment.total_cpu_s,
            "by_kind_s": deployment.cpu_by_kind(),
            "run_workers_seen": sum(
                1 for kind, _ in deployment.cpu_by_pid.values() if kind == "run worker"
            ),
            "other_processes": sorted(
                (round(cpu, 2), deployment.cmdlines.get(pid, "?")[:120])
                for pid, (kind, cpu) in deployment.cpu_by_pid.items()
                if kind == "other"
            ),
        }
        common.progress(f"{len(records)} runs ended in {finished - started:.0f} s; daemon stopped")
        figures["wall"] = _wall_figures(records, started, finished)
        figures["isolation"] = _isolation(instance, dashboard_url, keys, refused)
        figures["runs"] = _run_figures(records, refused, figures["isolation"], per_run)

        # The daemon is stopped and the simulator idle: the in-asset reference, on the same
        # sites, into a database of its own (a first sync, like the night's).
        ref_url = stack.enter_context(
            common.fresh_database(server_url, "nightly_ref", keep=args.keep)
        )
        # One more site than measured: the child's first one warms it up.
        sample = [k for k in keys if k != refused][: max(1, args.in_asset_samples) + 1]
        common.progress(f"in-asset work of {len(sample) - 1} site(s) without Dagster ...")
        measured = common.run_measured(
            "in-asset",
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "child",
                "in-asset",
                "--sites",
                ",".join(sample),
                "--database-url",
                ref_url,
            ],
            env={**env, "DASHBOARD_DATABASE_URL": ref_url},
            workdir=work,
            timeout=600,
        )
        figures["in_asset"] = measured.report["sites"]
    return figures


def _wall_figures(records: list[Any], started: float, finished: float) -> dict[str, float]:
    created = [r.create_timestamp.timestamp() for r in records]
    starts = [r.start_time for r in records if r.start_time]
    ends = [r.end_time for r in records if r.end_time]
    durations = [r.end_time - r.start_time for r in records if r.start_time and r.end_time]
    durations.sort()
    return {
        "total_s": (max(ends) if ends else finished) - started,
        "to_first_run_created_s": min(created) - started,
        "tick_s": max(created) - min(created),
        "first_start_to_last_end_s": (max(ends) - min(starts)) if starts and ends else 0.0,
        "run_median_s": durations[len(durations) // 2] if durations else 0.0,
        "run_max_s": durations[-1] if durations else 0.0,
    }


def _run_figures(
    records: list[Any], refused: str, isolation: dict[str, Any], per_run: int
) -> dict[str, Any]:
    failed = sorted(isolation["failed_sites"])
    return {
        "count": len(records),
        "sites_per_run": per_run,
        "statuses": dict(Counter(r.dagster_run.status.value for r in records)),
        "failed_sites": failed,
        "only_refused_failed": failed == [refused],
    }


def _isolation(instance: Any, dashboard_url: str, keys: list[str], refused: str) -> dict[str, Any]:
    """Which partitions got materialised, and what the Dashboard's audit table says."""
    import dagster as dg

    from template_pipeline.domain.entities import NAMES as ALL_ENTITIES
    from template_pipeline.store import db

    materialised = {
        entity: set(instance.get_materialized_partitions(dg.AssetKey(entity)))
        for entity in ALL_ENTITIES
    }
    good = [k for k in keys if k != refused]
    complete = [k for k in good if all(k in parts for parts in materialised.values())]
    refused_partitions = sorted(e for e, parts in materialised.items() if refused in parts)
    with db.connect(dashboard_url) as conn:
        rows = conn.execute(
            "SELECT site, count(*) FILTER (WHERE status = 'success'), count(*) "
            "FROM template_sync_runs GROUP BY site"
        ).fetchall()
    synced = {site: (int(ok), int(total)) for site, ok, total in rows}
    failed = [k for k in keys if not all(k in parts for parts in materialised.values())]
    return {
        "failed_sites": failed,
        "sites_fully_materialised": len(complete),
        "good_sites": len(good),
        "refused_site_materialised_entities": refused_partitions,
        "sites_with_all_syncs_successful": sum(
            1 for k in good if synced.get(k, (0, 0))[0] == len(ALL_ENTITIES)
        ),
        "refused_site_sync_rows": synced.get(refused, (0, 0))[1],
    }


def summarise(figures: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """The report text, and the rows of the targets table."""
    sites = figures["sites"]
    wall = figures["wall"]
    runs = figures["runs"]
    cpu = figures["cpu"]
    isolation = figures["isolation"]
    in_asset = figures["in_asset"]
    run_count = max(runs["count"], 1)

    by_kind = cpu["by_kind_s"]
    total_per_run = cpu["total_s"] / run_count
    worker_per_run = by_kind.get("run worker", 0.0) / run_count
    total_per_site = cpu["total_s"] / sites
    worker_per_site = by_kind.get("run worker", 0.0) / sites
    in_asset_cpu = sum(s["cpu_s"] for s in in_asset) / max(len(in_asset), 1)
    sites_per_min = sites / (wall["total_s"] / 60)
    extrapolated_1000 = wall["total_s"] / sites * 1000

    lines = [
        f"machine: {figures['machine']}",
        f"database: {figures['database']}; instance configuration: {figures['dagster_yaml']}",
        f"sites: {sites} (the simulator's default sizes: 40 paintings, 15 users, 25 orders, "
        f"...), one with a refused key: {figures['refused_site']}; "
        f"{runs.get('sites_per_run', '?')} sites a run",
        "instigators: " + ", ".join(f"{k} {v}" for k, v in figures["instigators"].items()),
        "",
    ]
    kinds = ", ".join(f"{kind} {seconds:.0f} s" for kind, seconds in sorted(by_kind.items()))
    rows = [
        ["wall time, daemon start to last run end", common.fmt_s(wall["total_s"])],
        ["  daemon start to first run created", common.fmt_s(wall["to_first_run_created_s"])],
        ["  schedule tick: first to last run created", common.fmt_s(wall["tick_s"])],
        ["  first run start to last run end", common.fmt_s(wall["first_start_to_last_end_s"])],
        ["run duration, median / max", f"{wall['run_median_s']:.1f} s / {wall['run_max_s']:.1f} s"],
        ["sites per minute", f"{sites_per_min:.1f}"],
        ["runs", f"{runs['count']} ({', '.join(f'{k} {v}' for k, v in runs['statuses'].items())})"],
        [
            "CPU of the deployment's processes, in all",
            f"{cpu['total_s']:.0f} s ({kinds}; split sampled from /proc)",
        ],
        [
            "CPU per run: all processes (daemon, code servers, run worker, log capture)",
            f"{total_per_run:.2f} s",
        ],
        ["CPU per run: the run worker process", f"{worker_per_run:.2f} s"],
        ["CPU per site: the run workers", f"{worker_per_site:.3f} s"],
        [
            "CPU per site: in-asset work without Dagster (reference)",
            f"{in_asset_cpu:.3f} s (mean of {len(in_asset)} sites, one at a time)",
        ],
    ]
    lines.append(common.render_table(["figure", "measured"], rows))
    lines.append("")
    lines.append(
        "isolation: failed sites "
        + (", ".join(runs["failed_sites"]) or "none")
        + f"; {isolation['sites_fully_materialised']}/{isolation['good_sites']} other sites "
        "materialised every asset of their partition, "
        f"{isolation['sites_with_all_syncs_successful']} have a success row per entity in "
        f"template_sync_runs; the refused site materialised "
        f"{', '.join(isolation['refused_site_materialised_entities']) or 'nothing'} and wrote "
        f"{isolation['refused_site_sync_rows']} sync rows"
    )
    isolated = (
        runs["only_refused_failed"]
        and isolation["sites_fully_materialised"] == isolation["good_sites"]
        and not isolation["refused_site_materialised_entities"]
    )
    targets = [
        [
            "CPU per site, every process of the deployment",
            f"{total_per_site:.3f} s",
            f"<= {TARGET_CPU_PER_SITE_S} s",
            common.verdict(total_per_site <= TARGET_CPU_PER_SITE_S),
        ],
        [
            f"1000 sites (measured {sites}, extrapolated linearly)"
            if sites != 1000
            else "1000 sites",
            common.fmt_s(extrapolated_1000),
            "<= 10 min",
            common.verdict(extrapolated_1000 <= TARGET_1000_SITES_S),
        ],
        [
            "a failing site fails alone (its partitions only, in a shared run)",
            "yes" if isolated else "no",
            "yes",
            common.verdict(isolated),
        ],
    ]
    lines.append("")
    lines.append(common.render_table(["target", "measured", "target", "met?"], targets))
    return "\n".join(lines), targets


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "child":
        return child_main(argv[1:])
    args = build_parser().parse_args(argv)

    def report(figures: dict[str, Any]) -> tuple[str, bool]:
        return summarise(figures)[0], bool(figures["runs"]["only_refused_failed"])

    _, held = common.run_and_report(args, run, report)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
