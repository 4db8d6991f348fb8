"""``template-pipeline sync`` killed, interrupted or cut off from its database, as operators do.

Behaviour under test, each through the installed command in a subprocess, against the simulator,
the session's Dashboard database and a PostgreSQL-backed Dagster instance:

- SIGKILL of the sync during the COPY (its pages arriving slowly) and during the merge (its
  UPDATE waiting on a table lock): the site's tables are exactly as before (a hash of their
  rows), no staging table and no advisory lock outlive the client by more than a few seconds,
  the dead run is failed (by the next sync, or by the dead-runs sensor) and never stays STARTED,
  and the next sync of the site completes;
- the sync's database connection cut (``pg_terminate_backend``) during the COPY and during the
  merge: nothing of the cut transaction stays, and the site is retried to completion;
- SIGTERM during the COPY and SIGINT during the merge stop the sync within seconds, without a
  retry: exit code 143 / 130, the tables as before, the run CANCELED; SIGTERM to a run executed
  in its process's main thread (as the daemon's run worker does) interrupts its step, which is
  not retried (the run ends FAILURE: Dagster's "unexpected termination");
- two syncs of the same site started together end consistent, with no duplicate; syncs of
  different sites run at the same time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from template_pipeline.apps.simulator import SimSite, SimulatorServer
from template_pipeline.defs.sensors.dead_runs import template_dead_runs_sensor
from template_pipeline.defs.tags import PID_TAG, SITE_TAG
from template_pipeline.domain import config
from template_pipeline.domain.sites import SITES_FILE_ENV, write_sites_file
from template_pipeline.store import db
from template_pipeline.store.locks import lock_holder
from template_pipeline_tests.fixtures.helpers import query

pytestmark = pytest.mark.slow

_SUFFIX = uuid.uuid4().hex[:6]
KILLED, CUT, STOPPED, TWICE, OTHER = (
    f"crash-{name}-{_SUFFIX}" for name in ("killed", "cut", "stopped", "twice", "other")
)
# Big enough to be read page by page (past the full export's 2000 records): 30 pages of 100.
SIMULATED = [
    SimSite(key=key, api_key=f"crash-key-{i}", seed=70 + i, paintings=3000, users=5, orders=5,
            exhibitions=2, custom_requests=2, page_cap=100)
    for i, key in enumerate((KILLED, CUT, STOPPED, TWICE, OTHER))
]  # fmt: skip
TABLES = ("template_paintings", "template_rejects")
CONSOLE_SCRIPT = Path(sys.executable).with_name("template-pipeline")
# Bounds of every wait on a subprocess or the database: a poll interval and deadlines.
_POLL_S, _PHASE_TIMEOUT_S, _SYNC_TIMEOUT_S, _GONE_S = 0.05, 120.0, 300.0, 6.0


@dataclass
class Setup:
    server: SimulatorServer
    env: dict[str, str]
    url: str


@pytest.fixture(scope="module")
def setup(database_url, postgres_server_url, tmp_path_factory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("crashes")
    with SimulatorServer(SIMULATED) as server:
        sites_file = write_sites_file(folder / "sites.yaml", server.sites_file_entries())
        home = folder / "dagster_home"
        home.mkdir()
        shutil.copyfile(config.PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
        instance_db = f"tp_crash_dagster_{os.getpid()}_{_SUFFIX}"
        db.ensure_database(postgres_server_url, instance_db)
        env = {
            SITES_FILE_ENV: str(sites_file),
            **server.api_key_env(),
            db.DASHBOARD_DATABASE_URL_ENV: database_url,
            "DAGSTER_HOME": str(home),
            "DAGSTER_POSTGRES_URL": db.dagster_storage_url(
                db.with_database(postgres_server_url, instance_db)
            ),
        }
        try:
            yield Setup(server=server, env=env, url=database_url)
        finally:
            db.drop_database(postgres_server_url, instance_db)


@contextlib.contextmanager
def dagster_instance(setup: Setup) -> Iterator[dg.DagsterInstance]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in setup.env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            yield instance


def start_sync(setup: Setup, site: str, *entities: str) -> subprocess.Popen:
    args = [str(CONSOLE_SCRIPT), "sync", "-q", "--site", site]
    for entity in entities:
        args += ["--entity", entity]
    return subprocess.Popen(
        args,
        env={**os.environ, **setup.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = _SYNC_TIMEOUT_S) -> tuple[int, str]:
    out, errors = process.communicate(timeout=timeout)
    return process.returncode, out + errors


def sync(setup: Setup, site: str, *entities: str) -> str:
    code, output = finish(start_sync(setup, site, *entities))
    assert code == 0, output
    return output


def slow_pages(setup: Setup, site: str, ms: int) -> None:
    setup.server.app.state.runtime[site].site.faults.slow_ms = ms


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(_POLL_S)


def backend_running(url: str, pattern: str, *, waiting_on_lock: bool = False) -> int | None:
    """The pid of a backend running a statement LIKE ``pattern`` (and waiting on a lock)."""
    wait = " AND wait_event_type = 'Lock'" if waiting_on_lock else ""
    rows = query(
        url,
        "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
        f"AND pid <> pg_backend_pid() AND datname = current_database(){wait}",
        pattern,
    )
    return rows[0]["pid"] if rows else None


IN_COPY = "COPY %template_stage%"
IN_MERGE = "%template_paintings%"


@contextlib.contextmanager
def merge_blocked(url: str) -> Iterator[None]:
    """Hold a lock that makes the merge's first write to template_paintings wait."""
    with psycopg.connect(db.libpq_conninfo(url)) as holder:
        holder.execute("LOCK TABLE template_paintings IN SHARE MODE")
        yield
        holder.rollback()


def tables_hash(url: str, site: str) -> dict[str, str]:
    return {
        table: query(
            url,
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS h "
            f"FROM {table} AS t WHERE site = %s",
            site,
        )[0]["h"]
        for table in TABLES
    }


def leftovers(url: str, site: str) -> list[str]:
    """Staging tables and the site's advisory lock still on the server."""
    found = []
    if query(url, "SELECT count(*) AS n FROM pg_class WHERE relname = 'template_stage'")[0]["n"]:
        found.append("a staging table")
    with db.connect(url) as conn:
        if lock_holder(conn, "site", site) is not None:
            found.append("the site's lock")
    return found


def assert_nothing_outlives_the_client(url: str, site: str) -> None:
    wait_for(lambda: not leftovers(url, site), _GONE_S, f"leftovers {leftovers(url, site)}")


def change_the_site(setup: Setup, site: str) -> None:
    """Changes for the next sync to write: updates, a deletion and an addition."""
    data = setup.server.data(site)
    valid = [p["id"] for p in data.paintings if p["id"] not in data.invalid_ids["paintings"]]
    for painting_id in valid[:50]:  # an invalid record stays invalid
        data.update_painting(painting_id, name=f"renamed {uuid.uuid4().hex[:6]}")
    data.delete_painting(valid[-1])
    data.add_painting()


def live_paintings(url: str, site: str) -> tuple[int, int]:
    [row] = query(
        url,
        "SELECT count(*) AS n, count(DISTINCT template_id) AS distinct_ids "
        "FROM template_paintings WHERE site = %s AND deleted_at IS NULL",
        site,
    )
    return row["n"], row["distinct_ids"]


def expected_paintings(setup: Setup, site: str) -> int:
    data = setup.server.data(site)
    return len({painting["id"] for painting in data.paintings} - data.invalid_ids["paintings"])


def site_runs(setup: Setup, site: str) -> list[dg.DagsterRun]:
    with dagster_instance(setup) as instance:
        return list(instance.get_runs(filters=dg.RunsFilter(tags={SITE_TAG: site})))


@pytest.fixture(scope="module")
def synced(setup) -> Setup:
    """Every site synced once: the state each test starts from."""
    for site in (KILLED, CUT, STOPPED, TWICE):
        sync(setup, site, "paintings")
    return setup


@contextlib.contextmanager
def at_phase(setup: Setup, site: str, phase: str) -> Iterator[Callable[[], int]]:
    """Make the sync of ``site`` stay in ``phase``; yields a function waiting for its backend."""
    if phase == "copy":
        slow_pages(setup, site, 250)  # 30 pages: the COPY stays open for several seconds
        blocked: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        blocked = merge_blocked(setup.url)
    pattern = IN_COPY if phase == "copy" else IN_MERGE
    try:
        with blocked:
            yield lambda: wait_for(
                lambda: backend_running(setup.url, pattern, waiting_on_lock=phase == "merge"),
                _PHASE_TIMEOUT_S,
                f"the sync's {phase}",
            )
    finally:
        slow_pages(setup, site, 0)


def unfinished(runs: list[dg.DagsterRun]) -> list[dg.DagsterRun]:
    return [run for run in runs if not run.is_finished]


@pytest.mark.parametrize("phase", ["copy", "merge"])
def test_sigkill_leaves_the_tables_as_they_were_and_its_run_is_failed(synced, phase):
    setup, url, site = synced, synced.url, KILLED
    change_the_site(setup, site)
    before = tables_hash(url, site)
    with at_phase(setup, site, phase) as reached:
        process = start_sync(setup, site, "paintings")
        reached()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        # The server ends the dead client's session, its statement waiting on a lock included.
        assert_nothing_outlives_the_client(url, site)
    assert tables_hash(url, site) == before
    [dead] = unfinished(site_runs(setup, site))
    assert dead.status == dg.DagsterRunStatus.STARTED and dead.tags[PID_TAG] == str(process.pid)

    if phase == "copy":  # the next sync fails it before it starts...
        output = sync(setup, site, "paintings")
    else:  # ...and so does the dead-runs sensor of the daemon
        with dagster_instance(setup) as instance:
            result = template_dead_runs_sensor(dg.build_sensor_context(instance=instance))
        assert f"1 dead run(s) failed: {dead.run_id}" in str(result.skip_message)
        output = sync(setup, site, "paintings")
    with dagster_instance(setup) as instance:
        failed = instance.get_run_by_id(dead.run_id)
        assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
        [event] = instance.get_records_for_run(
            dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        assert f"its process {process.pid} on " in event.event_log_entry.message
    assert "all 1 site(s) synced" in output
    assert not unfinished(site_runs(setup, site))
    assert live_paintings(url, site) == (expected_paintings(setup, site),) * 2


@pytest.mark.parametrize("phase", ["copy", "merge"])
def test_a_cut_connection_rolls_back_and_the_site_is_retried(synced, phase):
    setup, url, site = synced, synced.url, CUT
    change_the_site(setup, site)
    before = tables_hash(url, site)
    with at_phase(setup, site, phase) as reached:
        process = start_sync(setup, site, "paintings")
        backend = reached()
        query(url, "SELECT pg_terminate_backend(%s, 5000) AS ok", backend)
    # The batch tries the site again after 5 s: until then nothing of the cut one is left.
    assert tables_hash(url, site) == before
    assert not leftovers(url, site)
    code, output = finish(process)
    assert code == 0, output
    assert live_paintings(url, site) == (expected_paintings(setup, site),) * 2
    assert site_runs(setup, site)[0].status == dg.DagsterRunStatus.SUCCESS


@pytest.mark.parametrize(
    ("phase", "signum", "exit_code"),
    [("copy", signal.SIGTERM, 143), ("merge", signal.SIGINT, 130)],
)
def test_a_signal_stops_the_sync_promptly_without_a_retry(synced, phase, signum, exit_code):
    setup, url, site = synced, synced.url, STOPPED
    change_the_site(setup, site)
    before = tables_hash(url, site)
    with at_phase(setup, site, phase) as reached:
        process = start_sync(setup, site, "paintings")
        reached()
        signalled = time.monotonic()
        process.send_signal(signum)
        code, output = finish(process, timeout=60)
        stopped_in = time.monotonic() - signalled
    assert code == exit_code, output
    assert stopped_in < 15, stopped_in  # not the 5 s retry pause and a second attempt
    assert f"interrupted by {signal.Signals(signum).name}" in output
    assert tables_hash(url, site) == before
    assert_nothing_outlives_the_client(url, site)
    latest = site_runs(setup, site)[0]
    assert latest.status == dg.DagsterRunStatus.CANCELED
    written = query(
        url,
        "SELECT count(*) AS n FROM template_sync_runs WHERE run_id = %s AND status = 'success'",
        latest.run_id,
    )
    assert written[0]["n"] == 0
    assert "all 1 site(s) synced" in sync(setup, site, "paintings")
    assert live_paintings(url, site) == (expected_paintings(setup, site),) * 2


def test_two_syncs_of_one_site_take_turns_and_other_sites_run_beside_them(setup):
    url = setup.url
    for site in (TWICE, OTHER):
        slow_pages(setup, site, 150)
    [began] = query(url, "SELECT now() AS t")
    try:
        processes = [start_sync(setup, site, "paintings") for site in (TWICE, TWICE, OTHER)]
        results = [finish(process) for process in processes]
    finally:
        for site in (TWICE, OTHER):
            slow_pages(setup, site, 0)
    assert all(code == 0 for code, _ in results), results
    for site in (TWICE, OTHER):
        assert live_paintings(url, site) == (expected_paintings(setup, site),) * 2
    windows = {
        site: query(
            url,
            "SELECT run_id, started_at, finished_at FROM template_sync_runs "
            "WHERE site = %s AND entity = 'paintings' AND status = 'success' "
            "AND started_at >= %s ORDER BY started_at",
            site,
            began["t"],
        )
        for site in (TWICE, OTHER)
    }
    first, second = windows[TWICE]
    assert first["finished_at"] <= second["started_at"]  # one after the other: the site's lock
    [other] = windows[OTHER]
    assert any(  # a sync of another site is not held back by them
        other["started_at"] < w["finished_at"] and w["started_at"] < other["finished_at"]
        for w in windows[TWICE]
    ), windows
    assert not unfinished(site_runs(setup, TWICE) + site_runs(setup, OTHER))


# A run executed in the main thread of its process, as Dagster's run worker does it (`dagster api
# execute_run`, launched by the daemon's DefaultRunLauncher): Dagster turns SIGTERM into an
# interrupt of the step.
_RUN_WORKER = """
import sys
import dagster as dg
from template_pipeline.definitions import defs
from template_pipeline.defs.assets import SYNC_JOB_NAME

site = sys.argv[1]
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_job_def(SYNC_JOB_NAME).execute_in_process(
        instance=instance,
        partition_key=site,
        asset_selection=[dg.AssetKey("paintings")],
        tags={"template/site": site},
        raise_on_error=False,
    )
    print("run", result.run_id, instance.get_run_by_id(result.run_id).status.value, flush=True)
"""


def test_sigterm_interrupts_a_run_worker_without_a_step_retry(synced):
    setup, url, site = synced, synced.url, CUT
    change_the_site(setup, site)
    before = tables_hash(url, site)
    with at_phase(setup, site, "copy") as reached:
        process = subprocess.Popen(
            [sys.executable, "-c", _RUN_WORKER, site],
            env={**os.environ, **setup.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        reached()
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, output = finish(process, timeout=60)
        stopped_in = time.monotonic() - signalled
    assert stopped_in < 15, (stopped_in, output)
    [line] = [line for line in output.splitlines() if line.startswith("run ")]
    _, run_id, status = line.split()
    # Not a user's termination: Dagster calls it an unexpected termination (which the
    # instance's run_retries may run again, as after a deploy), never a step retry.
    assert status == "FAILURE", output
    with dagster_instance(setup) as instance:
        retries = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
        ).records
        assert retries == []
    written = query(
        url,
        "SELECT count(*) AS n FROM template_sync_runs WHERE run_id = %s AND status = 'success'",
        run_id,
    )
    assert written[0]["n"] == 0  # nor a second attempt within the batch
    assert tables_hash(url, site) == before
    assert_nothing_outlives_the_client(url, site)
    sync(setup, site, "paintings")
    assert live_paintings(url, site) == (expected_paintings(setup, site),) * 2
