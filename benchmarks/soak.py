"""Soak: many sites, random faults, a full nightly sync through the daemon, and its audit.

Run it with ``make bench-soak`` (12 sites, the CI size; ``BENCH_ARGS="--sites 200"`` for the
documented run), or ``python benchmarks/soak.py --help``.

The deployment is ``bench_nightly``'s (``_deployment.py``): the repo's ``dagster.yaml`` on
PostgreSQL, ``dagster-daemon`` with its code server, the nightly schedule's tick caught up by
the scheduler and its runs going through the run queue. The alerts sensor runs as deployed (the
other sensors and schedules are stopped: their runs are not the night's). The code location is
the project's definitions with the client's read timeout shortened (``--read-timeout``) and its
retry budget set (``--max-retries``), written into the scratch folder.

The simulator serves N sites of varied sizes, page caps and envelopes (from ``--seed``), each
with a share of invalid records and random faults on every request (``--fault-rate`` in all,
split evenly): 5xx, 429 with a short ``Retry-After``, answers held past the read timeout,
connections cut mid-body, 200 answers with their JSON cut in the middle. A burst of faults is
never longer than the retry budget allows (``max_consecutive_faults``), so every one of them can
heal. Two sites cannot: one's key is revoked after its first request (401), one fails every
request after the first half of its sync (500).

Two syncs: the scheduler's catch-up of last night's tick, then the same tick replayed (daemon
stopped, the first runs' run keys renamed, the schedule re-armed, daemon started again): a
second full sync of the same data through the same path. The audit compares the simulator's
ground truth with the Dashboard: every valid record of every reachable site stored exactly
once, every invalid one quarantined once (``template_rejects``), the two broken sites'
partitions failed and each alerted once (``template_alerts``, counted again after the daemon's
restart), every entity of a broken site either whole or absent, and the second sync writing no
entity row (``xmin``). Exit code 1 when any invariant fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
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
import _deployment as deployment

ALERTS_SENSOR = "template_alerts_sensor"
# The simulator's record entities, and the settings (keyed by ``key``).
RECORD_ENTITIES = ("paintings", "users", "orders", "exhibitions", "custom_requests")
RANDOM_KINDS = ("5xx", "429", "slow", "reset", "truncated")
# A site announcing at most this many records is read in one request (its full export): about
# half of the soak's sites, the others page through each endpoint.
FULL_EXPORT_MAX_RECORDS = 150
ALERT_TIMEOUT_S = 180.0

SOAK_DEFINITIONS = '''"""The soak's code location: the project's definitions, short timeouts."""

import dagster as dg

from template_pipeline import definitions as project
from template_pipeline.defs.resources import TemplateClientResource

defs = dg.Definitions(
    assets=project.defs.assets,
    asset_checks=project.defs.asset_checks,
    jobs=project.defs.jobs,
    schedules=project.defs.schedules,
    sensors=project.defs.sensors,
    resources={{
        **project.defs.resources,
        "template_client": TemplateClientResource(
            read_timeout={read_timeout!r}, max_retries={max_retries!r}
        ),
    }},
    executor=project.defs.executor,
)
'''


# --------------------------------------------------------------------------------------------
# The sites


def site_keys(count: int) -> list[str]:
    width = max(4, len(str(count)))
    return [f"soak-{i:0{width}d}" for i in range(1, count + 1)]


def plan_sites(args: argparse.Namespace) -> tuple[list[common.SimulatedSite], str, str]:
    """The simulated sites, and the keys of the revoked and of the failing site."""
    rng = random.Random(f"soak:{args.seed}")
    keys = site_keys(args.sites)
    revoked, failing = keys[1], keys[len(keys) // 2 + 1]
    rates = {kind: args.fault_rate / len(RANDOM_KINDS) for kind in RANDOM_KINDS}
    sites = []
    for index, key in enumerate(keys, 1):
        faults: dict[str, Any] = {
            "fault_rates": rates,
            "slow_fault_ms": int(args.slow_ms),
            "retry_after": 0.2,
            # One attempt of every request is left to heal it.
            "max_consecutive_faults": args.max_retries - 1,
        }
        options: dict[str, Any] = {
            "seed": args.seed * 100_000 + index,
            "paintings": rng.randint(10, 160),
            "users": rng.randint(3, 40),
            "orders": rng.randint(3, 60),
            "exhibitions": rng.randint(0, 8),
            "custom_requests": rng.randint(0, 10),
            "page_cap": rng.choice((10, 25, 50, 100)),
            "envelope": rng.choice(("success", "named")),
            "invalid_ratio": 0.03,
        }
        if key == revoked:
            faults["revoke_after"] = 1
        if key == failing:
            # Paged, and failing from the middle of its paintings on.
            options.update(paintings=300, page_cap=25)
            faults["fail_after"] = 10
        sites.append(common.SimulatedSite(key, f"soak-key-{key}", {**options, "faults": faults}))
    return sites, revoked, failing


def ground_truth(sites: Sequence[common.SimulatedSite]) -> dict[str, dict[str, Any]]:
    """Per site and entity: the ids of the valid records, and of the invalid ones."""
    from template_pipeline.apps.simulator import generate_site_data

    truth: dict[str, dict[str, Any]] = {}
    for site in sites:
        data = generate_site_data(common.sim_site(site.as_spec()))
        entities: dict[str, Any] = {"settings": {"valid": {s["key"] for s in data.settings}}}
        for entity in RECORD_ENTITIES:
            invalid = {str(i) for i in data.invalid_ids[entity]}
            served = {str(r["id"]) for r in data.records(entity)}
            entities[entity] = {"valid": served - invalid, "invalid": invalid}
        truth[site.key] = entities
    return truth


# --------------------------------------------------------------------------------------------
# The Dashboard and the instance, read back


def stored_ids(dashboard_url: str) -> dict[tuple[str, str], Counter[str]]:
    """(site, entity) -> how many live rows each id has."""
    from template_pipeline.store import db

    found: dict[tuple[str, str], Counter[str]] = {}
    with db.connect(dashboard_url) as conn:
        for entity in ("settings", *RECORD_ENTITIES):
            key = "key" if entity == "settings" else "template_id"
            rows = conn.execute(
                f'SELECT site, "{key}"::text FROM "template_{entity}" WHERE deleted_at IS NULL'
            ).fetchall()
            for site, ident in rows:
                found.setdefault((site, entity), Counter())[ident] += 1
    return found


def rejected_ids(dashboard_url: str, run_ids: Sequence[str]) -> dict[tuple[str, str], Counter]:
    """(site, entity) -> how often each id is quarantined.

    Rejects kept as history (a ``run_id`` column): the rows of the runs ``run_ids``. Rejects
    kept as state (one row per bad record, ``resolved_at`` once it is gone): the open rows.
    """
    from template_pipeline.store import db

    found: dict[tuple[str, str], Counter[str]] = {}
    with db.connect(dashboard_url) as conn:
        columns = {
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'template_rejects'"
            ).fetchall()
        }
        if "run_id" in columns:
            rows = conn.execute(
                "SELECT site, entity, template_id FROM template_rejects WHERE run_id = ANY(%s)",
                (list(run_ids),),
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT site, entity, template_id FROM template_rejects WHERE resolved_at IS NULL"
            ).fetchall()
    for site, entity, ident in rows:
        found.setdefault((site, entity), Counter())[str(ident)] += 1
    return found


def run_alerts(dashboard_url: str, run_ids: Sequence[str]) -> dict[str, int]:
    """Site -> alerts about failed runs among ``run_ids``."""
    from template_pipeline.store import db

    with db.connect(dashboard_url) as conn:
        rows = conn.execute(
            "SELECT coalesce(site, '?'), count(*) FROM template_alerts "
            "WHERE source = 'run' AND run_id = ANY(%s) GROUP BY 1",
            (list(run_ids),),
        ).fetchall()
    return {site: int(count) for site, count in rows}


def wait_for_alerts(
    dashboard_url: str, run_ids: Sequence[str], sites: set[str], live: Any
) -> dict[str, int]:
    """Poll ``template_alerts`` until each of ``sites`` has an alert from ``run_ids``."""
    deadline = time.monotonic() + ALERT_TIMEOUT_S
    while True:
        live.check_alive()
        alerts = run_alerts(dashboard_url, run_ids)
        if sites <= set(alerts) or time.monotonic() > deadline:
            return alerts
        time.sleep(2.0)


def failed_partitions(instance: Any, keys: Sequence[str]) -> dict[str, list[str]]:
    """Site -> the entities whose partition of the site is not materialised."""
    import dagster as dg

    from template_pipeline.domain.entities import NAMES

    materialised = {e: set(instance.get_materialized_partitions(dg.AssetKey(e))) for e in NAMES}
    failed = {key: [e for e in NAMES if key not in materialised[e]] for key in keys}
    return {key: entities for key, entities in failed.items() if entities}


def current_xid(dashboard_url: str) -> int:
    from template_pipeline.store import db

    with db.connect(dashboard_url) as conn:
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint % 4294967296").fetchone()
    return int(row[0]) if row else 0


def rows_written_since(dashboard_url: str, xid: int) -> dict[str, int]:
    """Entity table -> rows written by a transaction at or after ``xid`` (``xmin``)."""
    from template_pipeline.store import db
    from template_pipeline.store.tables import ENTITY_TABLES

    counts = {}
    with db.connect(dashboard_url) as conn:
        for spec in ENTITY_TABLES.values():
            row = conn.execute(
                f'SELECT count(*) FROM "{spec.table.name}" WHERE xmin::text::bigint >= %s', (xid,)
            ).fetchone()
            counts[spec.table.name] = int(row[0]) if row else 0
    return counts


def unexpected_failures(dashboard_url: str, broken: set[str]) -> list[str]:
    """What failed on a site that should have healed: ``site/entity (status): error``."""
    from template_pipeline.store import db

    with db.connect(dashboard_url) as conn:
        rows = conn.execute(
            "SELECT site, entity, status, coalesce(error, '') FROM template_sync_runs "
            "WHERE status <> 'success' AND NOT (site = ANY(%s)) ORDER BY site, entity",
            (sorted(broken),),
        ).fetchall()
    return [f"{site}/{entity} ({status}): {error[:300]}" for site, entity, status, error in rows]


def sync_statuses(dashboard_url: str, run_ids: Sequence[str]) -> dict[str, Counter[str]]:
    """Site -> its ``template_sync_runs`` statuses in the runs ``run_ids``."""
    from template_pipeline.store import db

    with db.connect(dashboard_url) as conn:
        rows = conn.execute(
            "SELECT site, status, count(*) FROM template_sync_runs WHERE run_id = ANY(%s) "
            "GROUP BY site, status",
            (list(run_ids),),
        ).fetchall()
    found: dict[str, Counter[str]] = {}
    for site, status, count in rows:
        found.setdefault(site, Counter())[status] += int(count)
    return found


# --------------------------------------------------------------------------------------------
# The audit


def audit_records(
    truth: dict[str, dict[str, Any]],
    stored: dict[tuple[str, str], Counter[str]],
    rejected: dict[tuple[str, str], Counter[str]],
    broken: set[str],
) -> dict[str, Any]:
    """Lost, duplicated, unexpected and unquarantined records; half-written entities."""
    figures = Counter[str]()
    half_written: list[str] = []
    for site, entities in truth.items():
        for entity, ids in entities.items():
            rows = stored.get((site, entity), Counter())
            valid = ids["valid"]
            figures["duplicates"] += sum(n - 1 for n in rows.values() if n > 1)
            figures["unexpected"] += len(set(rows) - valid)
            if site in broken:
                # A broken site's entity is whole (synced before it broke) or untouched.
                if rows and set(rows) != valid:
                    half_written.append(f"{site}/{entity}")
                continue
            figures["valid"] += len(valid)
            figures["lost"] += len(valid - set(rows))
            invalid = ids.get("invalid", set())
            quarantined = rejected.get((site, entity), Counter())
            figures["invalid"] += len(invalid)
            figures["not_quarantined"] += len(invalid - set(quarantined))
            figures["quarantined_twice"] += sum(n - 1 for n in quarantined.values() if n > 1)
    return {**figures, "half_written": half_written}


def fault_totals(counts: dict[str, dict[str, Any]], exclude: set[str]) -> dict[str, Any]:
    injected: Counter[str] = Counter()
    healed = requests = 0
    for site, count in counts.items():
        injected.update(count["injected"])
        requests += count["requests"]
        if site not in exclude:
            healed += count["faulted"]
    return {"requests": requests, "injected": dict(injected), "retried_to_success": healed}


# --------------------------------------------------------------------------------------------
# The run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soak.py",
        description="N sites with random faults synced twice by the nightly schedule; audited.",
    )
    parser.add_argument("--sites", type=int, default=12, help="number of sites (default 12)")
    parser.add_argument("--seed", type=int, default=1, help="seed of sites and faults (1)")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.10,
        help="share of requests faulted, split evenly among the kinds (default 0.10)",
    )
    parser.add_argument(
        "--read-timeout", type=float, default=1.5, help="the client's read timeout (1.5 s)"
    )
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=0.0,
        help="how long a slow answer is held (default: the read timeout + 1.5 s)",
    )
    parser.add_argument("--max-retries", type=int, default=3, help="the client's retries (3)")
    parser.add_argument("--sites-per-run", type=int, default=5, help="TEMPLATE_SITES_PER_RUN (5)")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds per night (auto)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the logs")
    parser.add_argument("--verbose", action="store_true")
    return parser


def _setup(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """The Dagster home (the repo's dagster.yaml) and the soak's workspace file."""
    home = work / "dagster_home"
    home.mkdir()
    shutil.copyfile(common.REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    definitions = work / "soak_definitions.py"
    definitions.write_text(
        SOAK_DEFINITIONS.format(read_timeout=args.read_timeout, max_retries=args.max_retries),
        encoding="utf-8",
    )
    workspace = work / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_file:\n"
        f"      relative_path: {json.dumps(str(definitions))}\n"
        "      attribute: defs\n"
        f"      location_name: {deployment.LOCATION_NAME}\n"
        f"      working_directory: {json.dumps(str(common.REPO_ROOT))}\n",
        encoding="utf-8",
    )
    return home, workspace


def night(
    instance: Any,
    env: dict[str, str],
    work: Path,
    workspace: Path,
    *,
    label: str,
    expected: int,
    timeout: float,
    exclude: frozenset[str] = frozenset(),
    wait_alerts: tuple[str, set[str]] | None = None,
) -> dict[str, Any]:
    """The daemon started, the night's runs waited for (and its alerts), the daemon stopped."""
    common.progress(f"{label}: starting dagster-daemon; the scheduler catches up the tick ...")
    started = time.time()
    with deployment.Deployment(env, work, workspace=workspace, label=f"-{label}") as live:
        records = deployment.wait_for_runs(instance, live, expected, timeout, exclude=exclude)
        ended = max((r.end_time or time.time()) for r in records)
        alerts: dict[str, int] = {}
        if wait_alerts is not None:
            common.progress(f"{label}: {len(records)} runs ended; waiting for the alerts ...")
            alerts = wait_for_alerts(
                wait_alerts[0], [r.dagster_run.run_id for r in records], wait_alerts[1], live
            )
    return {
        "run_ids": [r.dagster_run.run_id for r in records],
        "statuses": dict(Counter(r.dagster_run.status.value for r in records)),
        "wall_s": ended - started,
        "alerts_seen": alerts,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.sites < 4:
        raise SystemExit("--sites must be at least 4 (two of them break on purpose)")
    args.slow_ms = args.slow_ms or (args.read_timeout + 1.5) * 1000
    sites, revoked, failing = plan_sites(args)
    broken = {revoked, failing}
    server_url, source = common.database_server_url()
    timeout = args.timeout or max(600.0, args.sites * 6.0)
    expected_runs = -(-args.sites // args.sites_per_run)
    figures: dict[str, Any] = {
        "sites": args.sites,
        "seed": args.seed,
        "revoked_site": revoked,
        "failing_site": failing,
        "database": source,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
    }
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(common.workdir("soak", args.keep)))
        dashboard_url = stack.enter_context(
            common.fresh_database(server_url, "soak", keep=args.keep)
        )
        instance_url = stack.enter_context(
            common.fresh_database(server_url, "soak_dagster", keep=args.keep, dashboard=False)
        )
        figures["machine"] = common.machine_description(dashboard_url)
        home, workspace = _setup(work, args)
        common.progress(f"serving {len(sites)} simulated sites ...")
        simulator = stack.enter_context(common.SimulatorProcess(sites, work))
        env = _environment(work, simulator, home, dashboard_url, instance_url, args)
        import dagster as dg

        instance = stack.enter_context(dg.DagsterInstance.get())
        tick = deployment.last_nightly_tick(datetime.now(timezone.utc))
        common.progress("preparing the instance (loading the workspace once) ...")
        figures["instigators"] = deployment.prepare_instance(
            instance,
            [s.key for s in sites],
            tick,
            workspace=workspace,
            keep_sensors={ALERTS_SENSOR},
        )
        common.interrupt_on_signals()  # loading the workspace replaced the SIGINT handler
        started = time.perf_counter()
        first = night(
            instance, env, work, workspace, label="night-1", expected=expected_runs,
            timeout=timeout, wait_alerts=(dashboard_url, broken),
        )  # fmt: skip
        figures["first"] = first
        figures["faults_first"] = simulator.fault_counts()
        xid = current_xid(dashboard_url)
        deployment.replay_nightly(instance, tick, first["run_ids"], workspace=workspace)
        second = night(
            instance, env, work, workspace, label="night-2", expected=expected_runs,
            timeout=timeout, exclude=frozenset(first["run_ids"]),
        )  # fmt: skip
        figures["second"] = second
        figures["wall_s"] = time.perf_counter() - started
        figures["faults"] = simulator.fault_counts()
        figures["audit"] = _audit(instance, dashboard_url, sites, broken, first, second, xid)
    return figures


def _environment(
    work: Path,
    simulator: common.SimulatorProcess,
    home: Path,
    dashboard_url: str,
    instance_url: str,
    args: argparse.Namespace,
) -> dict[str, str]:
    import os

    from template_pipeline.store import db

    env = common.child_env(
        {
            "DAGSTER_HOME": str(home),
            "DAGSTER_POSTGRES_URL": db.dagster_storage_url(instance_url),
            "DASHBOARD_DATABASE_URL": dashboard_url,
            "TEMPLATE_SITES_FILE": str(work / "sites.yaml"),
            "TEMPLATE_SITES_PER_RUN": str(args.sites_per_run),
            "TEMPLATE_FULL_EXPORT_MAX_RECORDS": str(FULL_EXPORT_MAX_RECORDS),
        }
    )
    env.update(common.write_sites(work / "sites.yaml", simulator))
    # This process reads the same instance (and loads the workspace once to set it up).
    os.environ.update(env)
    return env


def _audit(
    instance: Any,
    dashboard_url: str,
    sites: Sequence[common.SimulatedSite],
    broken: set[str],
    first: dict[str, Any],
    second: dict[str, Any],
    xid: int,
) -> dict[str, Any]:
    common.progress("auditing the Dashboard against the simulator's ground truth ...")
    truth = ground_truth(sites)
    records = audit_records(
        truth, stored_ids(dashboard_url), rejected_ids(dashboard_url, first["run_ids"]), broken
    )
    second_statuses = sync_statuses(dashboard_url, second["run_ids"])
    return {
        "records": records,
        "failed_partitions": failed_partitions(instance, [s.key for s in sites]),
        # Counted again after the second night: a restarted sensor must not alert twice.
        "alerts_first_night": run_alerts(dashboard_url, first["run_ids"]),
        "second_sync_rows_written": rows_written_since(dashboard_url, xid),
        # A site with no row at all failed before any entity was tried.
        "second_sync_failed_sites": sorted(
            s.key for s in sites if set(second_statuses.get(s.key, ())) != {"success"}
        ),
        "second_sync_sites": len(second_statuses),
        "unexpected_failures": unexpected_failures(dashboard_url, broken),
    }


# --------------------------------------------------------------------------------------------
# The report


def invariants(figures: dict[str, Any]) -> list[list[str]]:
    """Each invariant: what it is, what was measured, what it must be, whether it holds."""
    audit = figures["audit"]
    records = audit["records"]
    broken = sorted({figures["revoked_site"], figures["failing_site"]})
    written = {t: n for t, n in audit["second_sync_rows_written"].items() if n}
    rows = [
        ("valid records lost", records.get("lost", 0), 0),
        ("records stored more than once", records.get("duplicates", 0), 0),
        ("records stored that the sites never served valid", records.get("unexpected", 0), 0),
        ("invalid records not quarantined", records.get("not_quarantined", 0), 0),
        ("invalid records quarantined twice", records.get("quarantined_twice", 0), 0),
        ("entities of the broken sites half-written", len(records["half_written"]), 0),
        ("entity syncs of reachable sites that failed", len(audit.get("unexpected_failures", ())),
         0),
        ("sites with failed partitions", sorted(audit["failed_partitions"]), broken),
        ("run alerts of the first night, per site", audit["alerts_first_night"],
         dict.fromkeys(broken, 1)),
        ("sites failing the second sync", audit["second_sync_failed_sites"], broken),
        ("entity rows written by the second sync (xmin)", written, {}),
    ]  # fmt: skip
    return [
        [name, json.dumps(measured), json.dumps(expected), common.verdict(measured == expected)]
        for name, measured, expected in rows
    ]


def summarise(figures: dict[str, Any]) -> tuple[str, bool]:
    audit, faults = (
        figures["audit"],
        fault_totals(figures["faults"], {figures["revoked_site"], figures["failing_site"]}),
    )
    records = audit["records"]
    injected = ", ".join(f"{k} {v}" for k, v in sorted(faults["injected"].items()))
    rows = [
        ["sites", f"{figures['sites']} (revoked key: {figures['revoked_site']}, failing half-way: "
         f"{figures['failing_site']})"],
        ["records of the reachable sites", f"{records.get('valid', 0) + records.get('invalid', 0)}"
         f" ({records.get('valid', 0)} valid, {records.get('invalid', 0)} invalid)"],
        ["requests answered (two nights)", str(faults["requests"])],
        ["faults injected, by kind", injected],
        ["retries (faulted answers to reachable sites, each retried to success)",
         str(faults["retried_to_success"])],
        ["records lost", str(records.get("lost", 0))],
        ["duplicates", str(records.get("duplicates", 0) + records.get("quarantined_twice", 0))],
        ["wall time, first night (daemon start to last run end)",
         common.fmt_s(figures["first"]["wall_s"])],
        ["wall time, second night", common.fmt_s(figures["second"]["wall_s"])],
        ["wall time, both nights and the alerts", common.fmt_s(figures["wall_s"])],
        ["runs", f"{json.dumps(figures['first']['statuses'])}, then "
         f"{json.dumps(figures['second']['statuses'])}"],
    ]  # fmt: skip
    checks = invariants(figures)
    held = all(row[3] == "yes" for row in checks)
    lines = [
        f"machine: {figures['machine']}",
        f"database: {figures['database']}; seed {figures['seed']}; settings: "
        + json.dumps(figures["settings"]),
        "",
        common.render_table(["figure", "measured"], rows),
        "",
        common.render_table(["invariant", "measured", "expected", "holds?"], checks),
    ]
    if records["half_written"]:
        lines.append("half-written: " + ", ".join(records["half_written"]))
    for failure in audit.get("unexpected_failures", [])[:10]:
        lines.append(f"failed on a reachable site: {failure}")
    return "\n".join(lines), held


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _, held = common.run_and_report(args, run, summarise, label="soak")
    if not held:
        print("\nsoak: an invariant does not hold (see the table above)", file=sys.stderr)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
