"""Benchmark: ``template-pipeline sync`` of N small sites, as an operator runs it.

Run it with ``make bench-cli-sync`` (100 sites by default; ``BENCH_ARGS="--sites 300"``), or
``python benchmarks/bench_cli_sync.py --help``.

The command runs in a process of its own, as typed in a shell: ``python -m
template_pipeline.cli sync -q``, against a fresh Dashboard database (migrated, as in production),
a Dagster instance on PostgreSQL (a temporary ``DAGSTER_HOME`` holding the repo's
``dagster.yaml``) and the simulator serving N small sites from another process. One site has a
wrong API key: it must fail alone, and the command exit 1 (a site failed). The command runs
twice: the first sync of every site, then the re-sync of the same data (a night where nothing
changed).

Figures: wall time, and CPU time of the command with every process it waited for (the kernel's
accounting, ``wait4``), per site. The target is the issue's: at most 0.5 CPU-s per site.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

TARGET_CPU_PER_SITE_S = 0.5
EXIT_SITE_FAILED = 1
WRITE_COUNTS = ("inserted", "updated", "deleted", "restored")


def _site_keys(count: int) -> list[str]:
    width = max(4, len(str(count)))
    return [f"site-{i:0{width}d}" for i in range(1, count + 1)]


def run_command(name: str, env: dict[str, str], workdir: Path, timeout: float) -> dict[str, Any]:
    """``template-pipeline sync -q`` in its own process: exit code, wall, CPU, peak RSS."""
    log_path = workdir / f"{name}.log"
    started = time.perf_counter()
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "template_pipeline.cli", "sync", "-q"],
            env=env,
            cwd=common.REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while True:
            pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > started + timeout:
                raise common.BenchmarkError(f"{name}: the sync did not end within {timeout:.0f} s")
            time.sleep(0.05)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(popen.pid, 0)
        raise
    return {
        "exit_code": os.waitstatus_to_exitcode(status),
        "wall_s": time.perf_counter() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "output_tail": log_path.read_text(encoding="utf-8", errors="replace")[-3000:],
    }


def audit(dashboard_url: str, since: Any) -> dict[str, Any]:
    """What ``template_sync_runs`` says the syncs since ``since`` did, site by site."""
    from template_pipeline.store import db

    with db.connect(dashboard_url) as conn:
        rows = conn.execute(
            "SELECT site, status, count(*), " + ", ".join(f"sum({c})" for c in WRITE_COUNTS) + ","
            " sum(unchanged) FROM template_sync_runs WHERE started_at >= %s"
            " GROUP BY site, status",
            (since,),
        ).fetchall()
    ok: dict[str, int] = {}
    failed: set[str] = set()
    written = dict.fromkeys(WRITE_COUNTS, 0)
    unchanged = 0
    for site, status, entities, *counts in rows:
        if status == "success":
            ok[site] = int(entities)
        else:
            failed.add(site)
        for name, value in zip(WRITE_COUNTS, counts[: len(WRITE_COUNTS)], strict=True):
            written[name] += int(value)
        unchanged += int(counts[-1])
    return {"ok": ok, "failed": sorted(failed), "written": written, "unchanged": unchanged}


def _now(dashboard_url: str) -> Any:
    from template_pipeline.store import db

    with db.connect(dashboard_url) as conn:
        return conn.execute("SELECT now()").fetchone()[0]


def _environment(work: Path, simulator: Any, dashboard_url: str, instance_url: str, **kw: Any):
    from template_pipeline.store import db

    home = work / "dagster_home"
    home.mkdir()
    shutil.copyfile(common.REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = common.child_env(
        {
            "DAGSTER_HOME": str(home),
            "DAGSTER_POSTGRES_URL": db.dagster_storage_url(instance_url),
            "DASHBOARD_DATABASE_URL": dashboard_url,
            "TEMPLATE_SITES_FILE": str(work / "sites.yaml"),
            "TEMPLATE_SITES_PER_RUN": str(kw["sites_per_run"]),
        }
    )
    env.update(common.write_sites(work / "sites.yaml", simulator, refused=kw["refused"]))
    return env


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.sites < 2:
        raise SystemExit("--sites must be at least 2 (one of them fails on purpose)")
    keys = _site_keys(args.sites)
    refused = keys[len(keys) // 2]
    server_url, source = common.database_server_url()
    figures: dict[str, Any] = {"sites": args.sites, "refused_site": refused, "database": source}
    timeout = args.timeout or max(600.0, args.sites * 6.0)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(common.workdir("cli_sync", args.keep)))
        dashboard_url = stack.enter_context(
            common.fresh_database(server_url, "cli_sync", keep=args.keep)
        )
        instance_url = stack.enter_context(
            common.fresh_database(server_url, "cli_sync_dagster", keep=args.keep, dashboard=False)
        )
        figures["machine"] = common.machine_description(dashboard_url)
        sites = [
            common.SimulatedSite(key, f"sim-key-{key}", {"seed": index})
            for index, key in enumerate(keys, 1)
        ]
        common.progress(f"serving {len(sites)} simulated sites ...")
        simulator = stack.enter_context(common.SimulatorProcess(sites, work))
        env = _environment(
            work,
            simulator,
            dashboard_url,
            instance_url,
            sites_per_run=args.sites_per_run,
            refused=frozenset({refused}),
        )
        for name in ("first_sync", "resync"):
            common.progress(f"{name.replace('_', ' ')}: template-pipeline sync -q ...")
            since = _now(dashboard_url)
            figures[name] = run_command(name, env, work, timeout)
            figures[name]["audit"] = audit(dashboard_url, since)
    return figures


def _isolated(figures: dict[str, Any], entities: int) -> bool:
    first = figures["first_sync"]
    audit_ = first["audit"]
    good = figures["sites"] - 1
    complete = [site for site, count in audit_["ok"].items() if count == entities]
    # A refused key fails the site before any entity is written: only its failed attempts are
    # recorded (with their kind, for the fleet view), and no other site failed.
    return (
        first["exit_code"] == EXIT_SITE_FAILED
        and figures["refused_site"] not in audit_["ok"]
        and audit_["failed"] == [figures["refused_site"]]
        and len(complete) == good
    )


def summarise(figures: dict[str, Any]) -> tuple[str, list[list[str]], bool]:
    from template_pipeline.domain.entities import NAMES

    sites = figures["sites"]
    first, resync = figures["first_sync"], figures["resync"]
    isolated = _isolated(figures, len(NAMES))
    nothing_rewritten = not any(resync["audit"]["written"].values())
    rows = []
    for label, measured in (("first sync", first), ("re-sync, nothing changed", resync)):
        rows += [
            [f"{label}: wall time", common.fmt_s(measured["wall_s"])],
            [f"{label}: CPU, the command and its children", f"{measured['cpu_s']:.1f} s"],
            [f"{label}: CPU per site", f"{measured['cpu_s'] / sites:.3f} s"],
            [f"{label}: peak RSS", f"{measured['maxrss_mb']:.0f} MB"],
            [f"{label}: exit code", str(measured["exit_code"])],
        ]
    rows.append(["re-sync: rows written", json.dumps(resync["audit"]["written"])])
    per_site = first["cpu_s"] / sites
    targets = [
        [
            "CPU per site, first sync (command and children)",
            f"{per_site:.3f} s",
            f"<= {TARGET_CPU_PER_SITE_S} s",
            common.verdict(per_site <= TARGET_CPU_PER_SITE_S),
        ],
        [
            "the refused site fails alone, exit code 1",
            "yes" if isolated else "no",
            "yes",
            common.verdict(isolated),
        ],
        [
            "the re-sync rewrites no row",
            "yes" if nothing_rewritten else "no",
            "yes",
            common.verdict(nothing_rewritten),
        ],
    ]
    lines = [
        f"machine: {figures['machine']}",
        f"database: {figures['database']}",
        f"sites: {sites} (the simulator's default sizes), one with a refused key: "
        f"{figures['refused_site']}",
        "",
        common.render_table(["figure", "measured"], rows),
        "",
        common.render_table(["target", "measured", "target", "met?"], targets),
    ]
    return "\n".join(lines), targets, isolated and nothing_rewritten


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_cli_sync.py",
        description="template-pipeline sync of N small sites, first sync and re-sync.",
    )
    parser.add_argument("--sites", type=int, default=100, help="number of sites (default 100)")
    parser.add_argument(
        "--sites-per-run",
        type=int,
        default=50,
        help="TEMPLATE_SITES_PER_RUN of the command (default 50, the project's default)",
    )
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="seconds one sync may take (default: auto)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the logs")
    parser.add_argument("--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def report(figures: dict[str, Any]) -> tuple[str, bool]:
        text, _, held = summarise(figures)
        return text, held

    figures, held = common.run_and_report(args, run, report)
    if not held:
        print("\nfirst sync's output:\n" + figures["first_sync"]["output_tail"], file=sys.stderr)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
