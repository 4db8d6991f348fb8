"""The ``template-pipeline`` command line, end to end against the simulator and PostgreSQL.

Behaviour under test:

- ``sync`` over two simulated sites and a third whose key is refused: exit code 1, one summary
  line per site and entity, the failed site named with its reason; the good sites' data in the
  Dashboard tables, nothing for the refused one; every run recorded, with its ``template/site``
  tag, in the PostgreSQL-backed Dagster instance of ``DAGSTER_HOME`` (the repo's dagster.yaml);
- a second ``sync`` (through the installed console script) writes nothing, stats included;
- ``--site`` / ``--entity`` select what runs; configuration errors (unknown site or entity, no
  ``DASHBOARD_DATABASE_URL``, no ``DAGSTER_HOME``, an instance that cannot load) exit 2 with a
  clear message before any site is contacted;
- ``health`` reports a good site, one behind a path prefix, a refused key and an unreachable
  site, exits 1, and 0 when every site is up; ``sites`` never prints a key;
- ``simulate --write-sites-file`` serves what the file it writes describes.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from template_pipeline.apps.cli import main
from template_pipeline.apps.simulator import SimSite, SimulatorServer, api_key_env_name
from template_pipeline.apps.summary import COUNT_COLUMNS
from template_pipeline.definitions import defs
from template_pipeline.defs.run_requests import RANGE_END_TAG, RANGE_START_TAG
from template_pipeline.defs.tags import SITE_TAG, TRIGGER_TAG
from template_pipeline.domain import config
from template_pipeline.domain.entities import NAMES as ALL_ENTITIES
from template_pipeline.domain.sites import SITES_FILE_ENV, load_sites_file, write_sites_file
from template_pipeline.source.client import TemplateClient
from template_pipeline.store import db
from template_pipeline_tests.fixtures.helpers import closed_port, query

_SUFFIX = uuid.uuid4().hex[:6]
GOOD, NAMED, REFUSED = f"cli-good-{_SUFFIX}", f"cli-named-{_SUFFIX}", f"cli-refused-{_SUFFIX}"
REFUSED_KEY_ENV = "TP_TEST_CLI_REFUSED_KEY"
REFUSED_KEY_VALUE = "cli-wrong-key-value"
SIMULATED = (
    SimSite(key=GOOD, api_key="cli-key-good-value", seed=31, paintings=14, users=6, orders=8,
            exhibitions=3, custom_requests=3, page_cap=5),
    SimSite(key=NAMED, api_key="cli-key-named-value", seed=32, paintings=11, users=5, orders=7,
            exhibitions=3, custom_requests=4, page_cap=4, envelope="named"),
)  # fmt: skip
SECRETS = (REFUSED_KEY_VALUE, *(site.api_key for site in SIMULATED))
# The installed console script, beside this interpreter (pyproject's [project.scripts]).
CONSOLE_SCRIPT = Path(sys.executable).with_name("template-pipeline")
# Bounds of the waits on a subprocess: a count and a deadline, never an open-ended loop.
_POLL_S, _START_TIMEOUT_S = 0.05, 30.0


def summary_lines(output: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(site, entity) -> its summary line: ``status``, the counts as ints, ``rest`` (the error)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[1] not in ALL_ENTITIES:
            continue
        numbers = parts[3 : 3 + len(COUNT_COLUMNS)]
        counted = len(numbers) == len(COUNT_COLUMNS) and all(n.isdigit() for n in numbers)
        entry: dict[str, Any] = {"status": parts[2]}
        entry.update(zip(COUNT_COLUMNS, map(int, numbers), strict=True) if counted else ())
        entry["rest"] = " ".join(parts[3 + len(COUNT_COLUMNS) if counted else 3 :])
        found[(parts[0], parts[1])] = entry
    return found


def assert_wrote_nothing(lines: dict[tuple[str, str], dict[str, Any]]) -> None:
    for key, line in lines.items():
        assert line["status"] == "success", key
        assert (line["inserted"], line["updated"], line["deleted"]) == (0, 0, 0), key
        assert line["unchanged"] == line["valid"] == line["fetched"] - line["rejected"], key


@dataclass
class Setup:
    server: SimulatorServer
    sites_file: Path
    env: dict[str, str]
    database_url: str


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(list(SIMULATED)) as running:
        yield running


@pytest.fixture(scope="module")
def setup(server, database_url, postgres_server_url, tmp_path_factory) -> Iterator[Setup]:
    """Sites file, keys, dashboard database and a DAGSTER_HOME whose storage is PostgreSQL."""
    folder = tmp_path_factory.mktemp("cli")
    entries = server.sites_file_entries()
    entries.append(
        {"key": REFUSED, "base_url": server.base_url(GOOD), "api_key_env": REFUSED_KEY_ENV}
    )
    sites_file = write_sites_file(folder / "sites.yaml", entries)
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copyfile(config.PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    instance_db = f"tp_cli_dagster_{os.getpid()}_{_SUFFIX}"
    db.ensure_database(postgres_server_url, instance_db)
    env = {
        SITES_FILE_ENV: str(sites_file),
        REFUSED_KEY_ENV: REFUSED_KEY_VALUE,
        **server.api_key_env(),
        db.DASHBOARD_DATABASE_URL_ENV: database_url,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": db.dagster_storage_url(
            db.with_database(postgres_server_url, instance_db)
        ),
    }
    try:
        yield Setup(server=server, sites_file=sites_file, env=env, database_url=database_url)
    finally:
        db.drop_database(postgres_server_url, instance_db)


@pytest.fixture
def cli_env(setup, monkeypatch) -> Setup:
    for name, value in setup.env.items():
        monkeypatch.setenv(name, value)
    return setup


@contextlib.contextmanager
def dagster_instance(setup: Setup) -> Iterator[dg.DagsterInstance]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in setup.env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            yield instance


@dataclass
class Completed:
    code: int
    out: str
    err: str


# Tests marked slow sync sites through the PostgreSQL-backed instance: every run event is a
# write on a fresh connection (dagster-postgres), seconds per site run on a busy 2-core machine.
@pytest.fixture(scope="module")
def first_sync(setup) -> Completed:
    """``template-pipeline sync`` of every site, in process: the state later tests start from."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in setup.env.items():
            patch.setenv(name, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["sync"])
    return Completed(code, out.getvalue(), err.getvalue())


# --- sync ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sync_summarises_every_site_and_names_the_refused_one(first_sync):
    assert first_sync.code == 1
    lines = summary_lines(first_sync.out)
    assert set(lines) == {
        (site, entity) for site in (GOOD, NAMED, REFUSED) for entity in ALL_ENTITIES
    }
    for site in (GOOD, NAMED):
        for entity in ALL_ENTITIES:
            assert lines[(site, entity)]["status"] == "success", (site, entity)
    for entity in ALL_ENTITIES:
        status = lines[(REFUSED, entity)]["status"]
        # order_items never runs: its upstream orders failed.
        assert status == ("skipped" if entity == "order_items" else "failed"), entity
    refused_line = next(line for line in first_sync.out.splitlines() if line.startswith(REFUSED))
    assert "HTTP 401" in refused_line and "API key was refused" in refused_line
    footer = first_sync.out.split("1 of 3 site(s) failed:", 1)[1]
    assert f"  {REFUSED}: " in footer and "HTTP 401" in footer and REFUSED_KEY_ENV in footer
    assert GOOD not in footer and NAMED not in footer
    for secret in SECRETS:
        assert secret not in first_sync.out and secret not in first_sync.err


@pytest.mark.slow
def test_sync_counts_match_the_simulated_sites(first_sync, setup):
    lines = summary_lines(first_sync.out)
    for site in (GOOD, NAMED):
        data = setup.server.data(site)
        for entity in ("paintings", "users", "orders", "exhibitions", "custom_requests"):
            served = len(data.records(entity))
            bad = len(data.invalid_ids[entity])
            line = lines[(site, entity)]
            assert {name: line[name] for name in COUNT_COLUMNS} == {
                "fetched": served,
                "valid": served - bad,
                "rejected": bad,
                "inserted": served - bad,
                "updated": 0,
                "unchanged": 0,
                "deleted": 0,
            }, (site, entity)


@pytest.mark.slow
def test_sync_lands_the_good_sites_and_nothing_of_the_refused_one(first_sync, setup):
    url = setup.database_url
    for site in (GOOD, NAMED):
        data = setup.server.data(site)
        for entity in ("paintings", "users", "orders", "exhibitions", "custom_requests"):
            [stored] = query(
                url,
                f"SELECT count(*) AS n FROM template_{entity} "
                "WHERE site = %s AND deleted_at IS NULL",
                site,
            )
            [quarantined] = query(
                url,
                "SELECT count(*) AS n FROM template_rejects WHERE site = %s AND entity = %s",
                site,
                entity,
            )
            # Every record served is either stored or quarantined.
            assert stored["n"] + quarantined["n"] == len(data.records(entity)), (site, entity)
        [settings] = query(url, "SELECT count(*) AS n FROM template_settings WHERE site = %s", site)
        assert settings["n"] == len(data.settings)
        [stats] = query(url, "SELECT paintings FROM template_stats WHERE site = %s", site)
        assert stats["paintings"] == len(data.paintings)
        [items] = query(url, "SELECT count(*) AS n FROM template_order_items WHERE site = %s", site)
        assert items["n"] > 0
    for table in ("template_paintings", "template_stats", "template_rejects"):
        assert query(url, f"SELECT 1 FROM {table} WHERE site = %s", REFUSED) == [], table
    # Only its failed attempts are recorded, as refused keys (the fleet view reads them).
    runs = query(url, "SELECT status, error_kind FROM template_sync_runs WHERE site = %s", REFUSED)
    assert runs and {(r["status"], r["error_kind"]) for r in runs} == {("failed", "auth")}


@pytest.mark.slow
def test_sync_runs_are_recorded_in_the_postgres_instance(first_sync, setup):
    with dagster_instance(setup) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        # One run for the three sites: a range of the partitions, in registration order.
        [run] = [
            r
            for r in instance.get_runs(filters=dg.RunsFilter(tags={TRIGGER_TAG: "cli"}))
            if r.tags.get(RANGE_START_TAG) == GOOD
        ]
        assert run.tags[RANGE_END_TAG] == REFUSED
        # The refused site failed the run, and only its own partitions.
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert set(instance.get_dynamic_partitions("template_sites")) >= {GOOD, NAMED, REFUSED}
        partitions = defs.resolve_asset_graph().get(dg.AssetKey("paintings")).partitions_def
        status = instance.get_status_by_partition(
            dg.AssetKey("paintings"), [GOOD, NAMED, REFUSED], partitions
        )
        assert status == {
            GOOD: dg.AssetPartitionStatus.MATERIALIZED,
            NAMED: dg.AssetPartitionStatus.MATERIALIZED,
            REFUSED: dg.AssetPartitionStatus.FAILED,
        }


@pytest.mark.slow
def test_second_sync_writes_nothing(first_sync, cli_env, capsys):
    url = cli_env.database_url
    xmin_sql = (
        "SELECT template_id, xmin::text AS xmin FROM template_paintings WHERE site = %s ORDER BY 1"
    )
    stats_sql = "SELECT count(*) AS n FROM template_stats WHERE site = %s"
    # One site: with the PostgreSQL-backed instance a site's run costs seconds of event-log
    # writes. The selection test re-syncs part of the other site and checks that too.
    before, stats_before = query(url, xmin_sql, GOOD), query(url, stats_sql, GOOD)

    assert main(["sync", "--site", GOOD]) == 0
    out = capsys.readouterr().out
    assert "all 1 site(s) synced" in out
    lines = summary_lines(out)
    assert set(lines) == {(GOOD, entity) for entity in ALL_ENTITIES}
    assert_wrote_nothing(lines)

    assert query(url, xmin_sql, GOOD) == before
    assert query(url, stats_sql, GOOD) == stats_before  # stats unchanged: no new history row
    newest = query(
        url,
        "SELECT DISTINCT ON (entity) entity, status, inserted, updated, deleted, restored "
        "FROM template_sync_runs WHERE site = %s ORDER BY entity, id DESC",
        GOOD,
    )
    assert len(newest) == len(ALL_ENTITIES)
    assert all(
        (r["status"], r["inserted"], r["updated"], r["deleted"], r["restored"])
        == ("success", 0, 0, 0, 0)
        for r in newest
    )


@pytest.mark.slow
def test_selection_through_the_console_script(first_sync, setup):
    assert CONSOLE_SCRIPT.exists(), "the package is not installed in this environment"
    done = subprocess.run(
        [
            str(CONSOLE_SCRIPT),
            "sync",
            "--site",
            NAMED,
            "--entity",
            "paintings",
            "--entity",
            "order-items",
        ],
        env={**os.environ, **setup.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = summary_lines(done.stdout)
    assert set(lines) == {(NAMED, "paintings"), (NAMED, "order_items")}
    assert "all 1 site(s) synced" in done.stdout
    assert_wrote_nothing(lines)  # a re-sync of an unchanged site
    with dagster_instance(setup) as instance:
        [run] = instance.get_runs(filters=dg.RunsFilter(tags={SITE_TAG: NAMED}), limit=1)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert {key.to_user_string() for key in run.asset_selection} == {
            "paintings",
            "order_items",
        }
    entities = query(
        setup.database_url,
        "SELECT entity FROM template_sync_runs WHERE run_id = %s ORDER BY entity",
        run.run_id,
    )
    assert [r["entity"] for r in entities] == ["order_items", "paintings"]


@pytest.mark.parametrize(
    ("argv", "unset", "message"),
    [
        (["sync", "--site", "nowhere"], (), "site 'nowhere' is not in the site registry"),
        (["sync", "--entity", "artists"], (), "unknown entity artists"),
        (["sync"], ("DASHBOARD_DATABASE_URL",), "DASHBOARD_DATABASE_URL is not set"),
        (["sync"], ("DAGSTER_HOME",), "DAGSTER_HOME is not set"),
        (["sync"], ("DAGSTER_POSTGRES_URL",), 'environment variable "DAGSTER_POSTGRES_URL"'),
    ],
    ids=["unknown-site", "unknown-entity", "no-dashboard-url", "no-dagster-home", "no-storage"],
)
def test_configuration_errors_exit_2_before_contacting_any_site(
    cli_env, monkeypatch, capsys, argv, unset, message
):
    for name in unset:
        monkeypatch.delenv(name)
    before = {site.key: cli_env.server.request_count(site.key) for site in SIMULATED}
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.err.startswith("template-pipeline: ")
    assert "Traceback" not in captured.err and captured.out == ""
    assert {site.key: cli_env.server.request_count(site.key) for site in SIMULATED} == before


# --- health and sites ---------------------------------------------------------------------------


def test_health_reports_each_site_and_fails_when_one_is_down(setup, tmp_path, monkeypatch, capsys):
    server = setup.server
    down = f"http://127.0.0.1:{closed_port()}/t/down/"
    entries = [
        # The simulator also serves its first site at the root, without a path prefix.
        {"key": "root-site", "base_url": server.url, "api_key_env": "TP_HEALTH_GOOD"},
        {"key": "prefixed", "base_url": server.base_url(NAMED), "api_key_env": "TP_HEALTH_NAMED"},
        {"key": "refused", "base_url": server.base_url(GOOD), "api_key_env": "TP_HEALTH_BAD"},
        {"key": "down", "base_url": down, "api_key_env": "TP_HEALTH_DOWN"},
    ]
    monkeypatch.setenv(SITES_FILE_ENV, str(write_sites_file(tmp_path / "sites.yaml", entries)))
    monkeypatch.setenv("TP_HEALTH_GOOD", SIMULATED[0].api_key)
    monkeypatch.setenv("TP_HEALTH_NAMED", SIMULATED[1].api_key)
    monkeypatch.setenv("TP_HEALTH_BAD", REFUSED_KEY_VALUE)
    monkeypatch.setenv("TP_HEALTH_DOWN", "some-key-value")

    assert main(["health"]) == 1
    out = capsys.readouterr().out
    status = {
        match.group(1): match.group(2)
        for match in re.finditer(
            r"^(\S+)\s+(ok|auth refused|unreachable|not found|bad response)\s", out, re.MULTILINE
        )
    }
    assert status == {
        "root-site": "ok",
        "prefixed": "ok",
        "refused": "auth refused",
        "down": "unreachable",
    }
    assert re.search(r"^prefixed\s+ok\s+\d+ ms\s+" + re.escape(server.base_url(NAMED)), out, re.M)
    assert re.search(r"^down\s+unreachable\s+- ms\s+" + re.escape(down), out, re.MULTILINE)
    assert "HTTP 401" in out and "TP_HEALTH_BAD" in out
    assert "connection refused" in out
    assert out.rstrip().endswith("2 of 4 site(s) up")
    assert REFUSED_KEY_VALUE not in out and "some-key-value" not in out

    entries = entries[:2]
    monkeypatch.setenv(SITES_FILE_ENV, str(write_sites_file(tmp_path / "up.yaml", entries)))
    assert main(["health"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("2 of 2 site(s) up")


def test_sites_lists_sites_but_never_a_key(cli_env, capsys):
    assert main(["sites"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"3 site(s) from {cli_env.sites_file}")
    for site in (GOOD, NAMED, REFUSED):
        assert re.search(rf"^  {site}\s", captured.out, re.MULTILINE)
    assert f"${api_key_env_name(GOOD)}" in captured.out and f"${REFUSED_KEY_ENV}" in captured.out
    for secret in SECRETS:
        assert secret not in captured.out and secret not in captured.err


# --- simulate -------------------------------------------------------------------------------------


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    for _ in range(int(_START_TIMEOUT_S / _POLL_S) + 1):
        assert process.poll() is None, "the simulator exited early"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            break
        time.sleep(_POLL_S)
    raise AssertionError(f"the simulator did not listen on port {port} in {_START_TIMEOUT_S} s")


def test_simulate_writes_a_sites_file_it_then_serves(tmp_path):
    port = closed_port()
    sites_file = tmp_path / "simulated.yaml"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "template_pipeline.cli",
            "simulate",
            "--port",
            str(port),
            "--sites",
            "2",
            "--seed",
            "5",
            "--paintings",
            "7",
            "--users",
            "3",
            "--orders",
            "4",
            "--write-sites-file",
            str(sites_file),
        ],
        cwd=config.PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        keys: dict[str, str] = {}
        assert process.stdout is not None
        for line in process.stdout:  # bounded: the command prints a handful of lines first
            match = re.match(r"\s+export (\w+)=(\S+)$", line)
            if match:
                keys[match.group(1)] = match.group(2)
            if line.startswith("serving"):
                assert f"http://127.0.0.1:{port}/t/<key>/" in line
                break
        _wait_for_port(port, process)

        registry = load_sites_file(sites_file, environ=keys)
        assert registry.keys() == ["site-1", "site-2"]
        for site in registry:
            assert site.base_url == f"http://127.0.0.1:{port}/t/{site.key}/"
            with TemplateClient(
                site=site.key, base_url=site.base_url, api_key=site.api_key, max_retries=0
            ) as client:
                paintings = [record for page in client.iter_pages("paintings") for record in page]
                stats = client.fetch_stats()
            assert len(paintings) == 7 and stats["paintings"] == 7
            assert {p["id"] for p in paintings} == set(range(1, 8))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    assert process.returncode is not None


@pytest.mark.slow
def test_a_sync_never_imports_pandas(first_sync, setup):
    # pandas costs a run process 0.3-0.9 CPU-s to import; the sync path builds order lines in
    # SQL and needs no DataFrame. Python's own import log of a whole sync names every module.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "template_pipeline.cli", "sync", "-q"],
        env={**os.environ, **setup.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]  # the refused site
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "template_pipeline.defs.sync.site" in imported  # the log is the sync's
    assert not {name for name in imported if name.split(".")[0] == "pandas"}
