"""The benchmarks under ``benchmarks/``, and the fast path they measure.

Behaviour under test:

- the benchmarks' own arithmetic: the ratios and verdicts of ``bench_site`` and
  ``bench_nightly`` come out of their figures as the targets state them; the nightly tick the
  benchmark replays is last night's 02:00 in Paris (DST included); processes are classified by
  command line; tables render;
- the fast path: the IO manager's ``load_input`` reads only the columns an ``AssetIn`` asks for,
  a snapshot write leaves the garbage collector as it found it, even when it fails; the client
  reads the environment's proxy settings once, for its site's origin;
- smoke runs (marked ``slow``): each benchmark runs end to end at toy sizes (simulator in its own
  process, fresh databases, Dagster, for the nightly the daemon and the run queue), exits 0,
  prints its targets table, drops its databases; an unchanged re-sync writes no entity row, and
  only the site with a refused key fails; the soak, under random faults, loses and duplicates
  nothing, quarantines every invalid record, fails and alerts only its two broken sites, once
  each, and its second sync writes nothing (and its audit counts what it should). Nothing here
  asserts a speed.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.domain.batches import EntitySnapshot, ValidatedBatch
from template_pipeline.source.client import TemplateClient
from template_pipeline.store import db
from template_pipeline.store.writer import write_snapshot

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common as common  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
import bench_nightly  # noqa: E402
import bench_site  # noqa: E402
import soak  # noqa: E402

SMOKE_TIMEOUT_S = 600


# --------------------------------------------------------------------------------------------
# The benchmarks' arithmetic


@pytest.mark.parametrize(
    ("now_utc", "expected_local"),
    [
        # Winter (UTC+1): 02:00 Paris is 01:00 UTC.
        ("2026-01-15T00:30:00", "2026-01-14T02:00:00+01:00"),
        ("2026-01-15T01:00:00", "2026-01-15T02:00:00+01:00"),
        ("2026-01-15T13:00:00", "2026-01-15T02:00:00+01:00"),
        # Summer (UTC+2): 02:00 Paris is 00:00 UTC.
        ("2026-07-01T23:59:00", "2026-07-01T02:00:00+02:00"),
        ("2026-07-02T00:00:00", "2026-07-02T02:00:00+02:00"),
    ],
)
def test_last_nightly_tick_is_the_latest_0200_in_paris(now_utc, expected_local):
    now = datetime.fromisoformat(now_utc).replace(tzinfo=timezone.utc)
    tick = bench_nightly.last_nightly_tick(now)
    assert tick.isoformat() == expected_local
    assert tick <= now


@pytest.mark.parametrize(
    ("cmdline", "kind"),
    [
        ("/v/bin/python3 /v/bin/dagster-daemon run -w /r/workspace.yaml", "daemon"),
        ("/v/bin/python3 -m dagster api grpc --lazy-load-user-code --socket /tmp/x", "code server"),
        (
            "/v/bin/python3 -B -c from multiprocessing.spawn import spawn_main; "
            "spawn_main(tracker_fd=12, pipe_handle=14) --multiprocessing-fork",
            "run worker",
        ),
        (
            "/v/bin/python3 -B -c from multiprocessing.resource_tracker import main;main(11)",
            "other",
        ),
        ("tail -F -c +0 /h/storage/r/compute_logs/x.out", "compute log capture"),
        (
            "/v/bin/python3 /v/dagster/_core/execution/scripts/watch_orphans.py 1 2",
            "compute log capture",
        ),
    ],
)
def test_process_kind_from_the_command_line(cmdline, kind):
    assert bench_nightly.process_kind(cmdline) == kind


def test_render_table_aligns_columns_as_markdown():
    text = common.render_table(["a", "bb"], [["xxx", 1], ["y", 22]])
    assert text.splitlines() == [
        "| a   | bb |",
        "|-----|----|",
        "| xxx | 1  |",
        "| y   | 22 |",
    ]


@pytest.mark.parametrize(
    ("value", "text"), [(1234.4, "1,234/s"), (98_765.0, "99k/s"), (float("inf"), "-")]
)
def test_fmt_rate(value, text):
    assert common.fmt_rate(value) == text


def _sync_runs(valid: int, written: int = 0) -> dict[str, dict[str, int]]:
    return {
        "paintings": {
            "valid": valid,
            "fetched": valid,
            "inserted": written,
            "updated": 0,
            "deleted": 0,
            "restored": 0,
        }
    }


def _site_figures(*, unchanged_written: int = 0, sync_s: float = 2.0) -> dict[str, Any]:
    def sync(run_s: float, written: int) -> dict[str, Any]:
        return {
            "run_s": run_s,
            "import_s": 1.0,
            "process_wall_s": run_s + 2,
            "maxrss_mb": 300.0,
            "success": True,
            "errors": [],
            "entities": {"paintings": {}},
            "steps": {"paintings": run_s / 2, "paintings_checks": 0.1},
            "sync_runs": _sync_runs(100_000, written),
        }

    return {
        "machine": "test machine",
        "database": "test",
        "sizes": {"paintings": 200_000, "orders": 50_000, "users": 20_000},
        "fetch": {"seconds": 1.0, "records": 100_000},
        "fetch_validate": {"seconds": 2.0, "records": 100_000},
        "direct": {"seconds": 1.5, "rows": {"paintings": 100_000}, "maxrss_mb": 200.0},
        "sync_empty": sync(sync_s, 100_000),
        "sync_unchanged": sync(2.5, 0),
        "sync_empty_noautovacuum": sync(2.0, 100_000),
        "sync_changed": sync(3.0, 500),
        "sync_changed_noautovacuum": sync(4.0, 500),
        "churned": {"paintings": {"changed": 1000, "deleted": 500, "added": 500}},
        "unchanged_writes": {
            "template_paintings": unchanged_written,
            "template_sync_runs": 8,
            "template_rejects": 30,
        },
        # COPY at 250k rows/s, per-record at 5k rows/s.
        "copy": {
            "copied": 100_000,
            "copy_s": 0.4,
            "per_record_rows": 10_000,
            "per_record_s": 2.0,
            "per_row_commit_rows": 1_000,
            "per_row_commit_s": 4.0,
        },
    }


def _targets(targets: list[list[str]]) -> dict[str, tuple[str, str]]:
    return {row[0]: (row[1], row[3]) for row in targets}


def test_bench_site_ratios_and_verdicts():
    # sync: 100k rows in 2 s = 50k/s, so 0.2x COPY and 10x per-record; unchanged 2.5 s vs 2 s.
    text, targets = bench_site.summarise(_site_figures(), scale=1.0)
    found = _targets(targets)
    assert found["first sync rate / COPY rate"] == ("0.20x", "yes")
    assert found["first sync rate / per-record rate"] == ("10.0x", "yes")
    # 100k records fetched in 1 s, synced in 2 s: half the fetch rate; unchanged 2.5 s vs 1 s.
    assert found["first sync rate / fetch rate (records/s)"] == ("0.50x", "yes")
    assert found["unchanged re-sync time / fetch time"] == ("2.50x", "**no**")
    assert found["unchanged re-sync time / fetch+validate time"] == ("1.25x", "n/a")
    # 3 s changed against 2 s first (autovacuum on); 4 s against 2 s (off).
    assert found["changed re-sync time / first sync time (autovacuum on)"] == ("1.50x", "yes")
    assert found["changed re-sync time / first sync time (autovacuum off)"] == ("2.00x", "**no**")
    assert "1,000 changed, 500 deleted, 500 added" in text
    assert found["entity rows written by the unchanged re-sync (xmin)"] == ("0", "yes")
    assert found["peak RSS of the sync process"] == ("300 MB", "yes")
    assert "30 template_rejects rows" in text


def test_bench_site_reports_missed_targets():
    _, targets = bench_site.summarise(_site_figures(unchanged_written=3, sync_s=20.0), scale=1.0)
    found = _targets(targets)
    assert found["first sync rate / COPY rate"] == ("0.02x", "**no**")
    assert found["first sync rate / per-record rate"] == ("1.0x", "**no**")
    assert found["entity rows written by the unchanged re-sync (xmin)"] == ("3", "**no**")


def _nightly_figures(failed_sites: list[str]) -> dict[str, Any]:
    return {
        "machine": "test machine",
        "database": "test",
        "dagster_yaml": "dagster.yaml",
        "sites": 10,
        "refused_site": "site-0005",
        "instigators": {"nightly_template_sync": "running"},
        "wall": {
            "total_s": 120.0,
            "to_first_run_created_s": 5.0,
            "tick_s": 10.0,
            "first_start_to_last_end_s": 100.0,
            "run_median_s": 8.0,
            "run_max_s": 12.0,
        },
        "runs": {
            "count": 2,
            "sites_per_run": 5,
            "statuses": {"SUCCESS": 1, "FAILURE": 1},
            "failed_sites": failed_sites,
            "only_refused_failed": failed_sites == ["site-0005"],
        },
        "cpu": {"total_s": 50.0, "by_kind_s": {"run worker": 30.0, "daemon": 10.0}},
        "isolation": {
            "failed_sites": failed_sites,
            "sites_fully_materialised": 9,
            "good_sites": 9,
            "refused_site_materialised_entities": [],
            "sites_with_all_syncs_successful": 9,
            "refused_site_sync_rows": 0,
        },
        "in_asset": [{"cpu_s": 0.5}, {"cpu_s": 1.5}],
    }


def test_bench_nightly_cpu_is_per_site_over_every_process():
    text, targets = bench_nightly.summarise(_nightly_figures(["site-0005"]))
    found = _targets(targets)
    # 50 s of CPU in all for 10 sites.
    assert found["CPU per site, every process of the deployment"] == ("5.000 s", "**no**")
    # 120 s for 10 sites: 1000 sites in 12000 s.
    assert found["1000 sites (measured 10, extrapolated linearly)"] == ("12000 s", "**no**")
    key = "a failing site fails alone (its partitions only, in a shared run)"
    assert found[key] == ("yes", "yes")
    assert re.search(r"\| sites per minute +\| 5\.0 +\|", text)
    assert re.search(r"CPU per site: the run workers +\| 3\.000 s", text)


def test_bench_nightly_flags_a_failure_beyond_the_refused_site():
    _, targets = bench_nightly.summarise(_nightly_figures(["site-0002", "site-0005"]))
    key = "a failing site fails alone (its partitions only, in a shared run)"
    assert _targets(targets)[key] == ("no", "**no**")


# --------------------------------------------------------------------------------------------
# The fast path the benchmarks measure


def _painting(i: int) -> dict[str, Any]:
    return {
        "template_id": i,
        "name": f"Painting {i}",
        "price": None,
        "category": None,
        "technique": None,
        "year": None,
        "quantity": None,
        "status": None,
        "image": None,
        "image_url": None,
        "display_order": None,
        "site_name": None,
        "extra": {"i": i},
    }


def _snapshot(site: str, rows: list[dict[str, Any]]) -> EntitySnapshot:
    return EntitySnapshot(site, "paintings", [ValidatedBatch(rows=rows, fetched=len(rows))])


def test_load_input_reads_only_the_columns_the_input_asks_for(url):
    site = f"site-{uuid.uuid4().hex[:8]}"
    write_snapshot(url, _snapshot(site, [_painting(1), _painting(2)]), run_id="r1")
    manager = TemplatePostgresIOManager(database_url=url)

    narrow = manager.load_input(
        dg.build_input_context(
            asset_key=dg.AssetKey("paintings"),
            partition_key=site,
            definition_metadata={"columns": ["template_id", "extra"]},
        )
    )
    full = manager.load_input(
        dg.build_input_context(asset_key=dg.AssetKey("paintings"), partition_key=site)
    )

    # list() of a frame or of a mapping of columns: the column names, in order.
    assert list(narrow) == ["template_id", "extra"]
    assert sorted(narrow["template_id"]) == [1, 2]
    assert {"first_seen_at", "price", "extra"} <= set(full)


def test_load_input_refuses_columns_that_are_not_a_list_of_names(url):
    manager = TemplatePostgresIOManager(database_url=url)
    context = dg.build_input_context(
        asset_key=dg.AssetKey("paintings"),
        partition_key="any-site",
        definition_metadata={"columns": "template_id"},
    )
    with pytest.raises(ValueError, match="list of column names"):
        manager.load_input(context)


@pytest.mark.parametrize("enabled_before", [True, False])
@pytest.mark.parametrize("fails", [False, True])
def test_snapshot_write_leaves_the_garbage_collector_as_it_found_it(url, enabled_before, fails):
    site = f"site-{uuid.uuid4().hex[:8]}"
    seen_during: list[bool] = []

    def batches():
        seen_during.append(gc.isenabled())
        yield ValidatedBatch(rows=[_painting(1)], fetched=1)
        if fails:
            raise RuntimeError("site went away mid-stream")

    was = gc.isenabled()
    (gc.enable if enabled_before else gc.disable)()
    try:
        if fails:
            with pytest.raises(RuntimeError, match="mid-stream"):
                write_snapshot(url, EntitySnapshot(site, "paintings", batches()), run_id="r")
        else:
            write_snapshot(url, EntitySnapshot(site, "paintings", batches()), run_id="r")
        assert gc.isenabled() is enabled_before
    finally:
        (gc.enable if was else gc.disable)()
    # The stream itself ran with the collector paused.
    assert seen_during == [False]


def test_client_reads_the_environment_proxies_once_for_its_origin(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    proxied = TemplateClient(site="a", base_url="https://a.example/", api_key="k")
    direct = TemplateClient(site="b", base_url="https://direct.example/", api_key="k")
    try:
        # requests would re-read the environment (and ~/.netrc) on every request otherwise.
        assert proxied._transport._session.trust_env is False
        assert proxied._transport._session.proxies.get("https") == "http://proxy.internal:3128"
        assert "https" not in direct._transport._session.proxies
    finally:
        proxied.close()
        direct.close()


# --------------------------------------------------------------------------------------------
# Smoke runs of the benchmarks at toy sizes


def _run_benchmark(
    script: str, args: list[str], server_url: str, tmp_path: Path, table: str = "| target"
) -> dict:
    """The benchmark's figures, and under ``_pid`` the process id its database names carry.

    ``table``: how the header of the table of targets (or invariants) starts."""
    output = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "TEMPLATE_"))}
    env[common.BENCH_DATABASE_URL_ENV] = server_url
    with subprocess.Popen(
        [sys.executable, str(BENCHMARKS / script), *args, "--json", str(output)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=SMOKE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise AssertionError(f"{script} timed out: {stdout[-3000:]}{stderr[-3000:]}") from None
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert table in stdout and ("met?" in stdout or "holds?" in stdout)
    return {**json.loads(output.read_text(encoding="utf-8")), "_pid": process.pid}


def _leftover_bench_databases(server_url: str, pid: int) -> list[str]:
    """The benchmark databases the run of process ``pid`` left behind (other engineers'
    benchmarks may be running on the same server: theirs carry their own pid)."""
    import psycopg

    with psycopg.connect(db.libpq_conninfo(server_url)) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"tp_bench_%_{pid}_%",)
        ).fetchall()
    return [name for (name,) in rows]


@pytest.mark.slow
def test_bench_site_runs_end_to_end_at_toy_size(postgres_server_url, tmp_path):
    figures = _run_benchmark(
        "bench_site.py",
        [
            "--paintings",
            "300",
            "--orders",
            "60",
            "--users",
            "40",
            "--per-record-rows",
            "50",
            "--per-row-commit-rows",
            "5",
        ],
        postgres_server_url,
        tmp_path,
    )

    first, second = figures["sync_empty"], figures["sync_unchanged"]
    assert first["success"] and second["success"]
    assert first["sync_runs"]["paintings"]["inserted"] > 0
    written = figures["unchanged_writes"]
    assert all(
        count == 0
        for table, count in written.items()
        if table not in ("template_sync_runs", "template_rejects")
    )
    assert written["template_sync_runs"] == len(second["sync_runs"])
    assert figures["copy"]["copied"] == sum(figures["copy"]["rows"].values())
    assert sum(figures["direct"]["rows"].values()) == sum(
        int(r["valid"]) for r in first["sync_runs"].values()
    )
    # The changed re-sync, on the database of the first sync and on one with autovacuum off.
    churned = figures["churned"]["paintings"]
    assert churned["changed"] > 0 and churned["deleted"] > 0 and churned["added"] > 0
    for key in ("sync_changed", "sync_changed_noautovacuum"):
        changed = figures[key]
        assert changed["success"], changed["errors"]
        paintings = changed["sync_runs"]["paintings"]
        assert paintings["updated"] > 0 and paintings["deleted"] > 0
        assert paintings["inserted"] > 0
    assert figures["sync_empty_noautovacuum"]["success"]
    assert _leftover_bench_databases(postgres_server_url, figures["_pid"]) == []


@pytest.mark.slow
@pytest.mark.e2e
def test_bench_nightly_runs_through_the_daemon_at_toy_size(postgres_server_url, tmp_path):
    figures = _run_benchmark(
        "bench_nightly.py",
        ["--sites", "3", "--in-asset-samples", "1", "--sites-per-run", "2"],
        postgres_server_url,
        tmp_path,
    )

    assert figures["runs"]["count"] == 2  # two windows of (at most) two sites
    assert figures["runs"]["failed_sites"] == [figures["refused_site"]]
    assert figures["isolation"]["sites_fully_materialised"] == 2
    assert figures["isolation"]["refused_site_materialised_entities"] == []
    assert figures["cpu"]["total_s"] > 0
    assert figures["cpu"]["by_kind_s"].get("run worker", 0) > 0
    assert _leftover_bench_databases(postgres_server_url, figures["_pid"]) == []


@pytest.mark.slow
def test_bench_cli_sync_runs_the_command_twice_at_toy_size(postgres_server_url, tmp_path):
    figures = _run_benchmark(
        "bench_cli_sync.py", ["--sites", "3", "--sites-per-run", "2"], postgres_server_url, tmp_path
    )

    first, resync = figures["first_sync"], figures["resync"]
    assert first["exit_code"] == resync["exit_code"] == 1  # the refused site, each time
    assert sorted(first["audit"]["ok"]) == sorted(
        key for key in ("site-0001", "site-0002", "site-0003") if key != figures["refused_site"]
    )
    assert first["audit"]["written"]["inserted"] > 0
    assert resync["audit"]["written"] == dict.fromkeys(
        ("inserted", "updated", "deleted", "restored"), 0
    )
    assert resync["audit"]["unchanged"] == first["audit"]["written"]["inserted"]
    assert first["cpu_s"] > 0 and first["wall_s"] > 0
    assert _leftover_bench_databases(postgres_server_url, figures["_pid"]) == []


@pytest.mark.slow
@pytest.mark.e2e
def test_soak_holds_its_invariants_at_the_small_size(postgres_server_url, tmp_path):
    # Five sites in one run a night, a retry budget of two: about 90 s on a quiet machine.
    figures = _run_benchmark(
        "soak.py",
        ["--sites", "5", "--sites-per-run", "5", "--max-retries", "2", "--fault-rate", "0.3"],
        postgres_server_url,
        tmp_path,
        table="| invariant",
    )

    audit, broken = figures["audit"], sorted([figures["revoked_site"], figures["failing_site"]])
    records = audit["records"]
    assert records["lost"] == records["duplicates"] == records["unexpected"] == 0
    assert records["valid"] > 0 and records["invalid"] > 0 and records["not_quarantined"] == 0
    assert sorted(audit["failed_partitions"]) == broken
    assert audit["alerts_first_night"] == dict.fromkeys(broken, 1)
    assert not any(audit["second_sync_rows_written"].values())
    totals = soak.fault_totals(figures["faults"], set(broken))
    assert totals["injected"]["revoked"] > 0 and totals["injected"]["failing"] > 0
    assert sum(totals["injected"].get(kind, 0) for kind in soak.RANDOM_KINDS) > 0
    assert totals["retried_to_success"] > 0
    assert _leftover_bench_databases(postgres_server_url, figures["_pid"]) == []


def test_soak_audit_counts_lost_duplicated_and_unquarantined_records():
    from collections import Counter

    truth = {
        "ok": {"paintings": {"valid": {"1", "2", "3"}, "invalid": {"4.5"}}},
        "broken": {"paintings": {"valid": {"1", "2"}, "invalid": set()}},
    }
    stored = {
        ("ok", "paintings"): Counter({"1": 1, "2": 2, "9": 1}),
        ("broken", "paintings"): Counter({"1": 1}),
    }
    rejected = {("ok", "paintings"): Counter()}
    figures = soak.audit_records(truth, stored, rejected, {"broken"})
    assert (figures["lost"], figures["duplicates"], figures["unexpected"]) == (1, 1, 1)
    assert figures["not_quarantined"] == 1
    assert figures["half_written"] == ["broken/paintings"]


def test_soak_invariants_fail_on_a_second_alert_or_a_rewrite():
    figures = {
        "revoked_site": "b",
        "failing_site": "c",
        "audit": {
            "records": {"lost": 0, "duplicates": 0, "half_written": []},
            "failed_partitions": {"b": ["paintings"], "c": ["orders"]},
            "alerts_first_night": {"b": 2, "c": 1},
            "second_sync_failed_sites": ["b", "c"],
            "second_sync_rows_written": {"template_paintings": 3, "template_users": 0},
        },
    }
    verdicts = {row[0]: row[3] for row in soak.invariants(figures)}
    assert verdicts["valid records lost"] == "yes"
    assert verdicts["run alerts of the first night, per site"] == "**no**"
    assert verdicts["entity rows written by the second sync (xmin)"] == "**no**"
    assert verdicts["sites with failed partitions"] == "yes"
