"""No secret is ever written anywhere: sentinel secrets, a full sync, a search of everything.

Every secret of the setup is a sentinel, a unique random string spelled differently by every
encoding (``/``, ``+``, ``=``, ``&``): each site's API key, each site's webhook secret
(``TEMPLATE_WEBHOOK_SECRET_<KEY>``), and the alert webhook's URL (Slack puts a token in its
path). One site is clean, one echoes its key in error bodies and HTML pages and first redirects
every request to itself with the key in the query, one does the same and then revokes the key.

Written by the system, then searched: a full ``template-pipeline -v sync`` (its stdout and
stderr), runs of the echoing and the revoked site launched through the deployment (code server,
webserver, daemon, run queue) as the UI's Materialize does, signed and badly signed webhook
deliveries to the intake (its log lines), the alerts of every failed run and check posted to the
alert webhook (the payloads received) and stored; then every row of every table of the Dagster
instance's database (event log, run storage, schedules) and of the Dashboard's, every event of
every run (``instance.all_logs``), and every file under the deployment's folder (the processes'
output, ``DAGSTER_HOME``, the compute logs). Each sentinel is looked for raw, URL-quoted (either
case), form-decoded, JSON-escaped (PHP's ``\\/`` too), HTML-escaped, by its first ten characters
(what a text cut short keeps) and by every ten characters of its random parts, which every
spelling keeps: none may appear.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote_plus

import psycopg
import pytest
import requests
from psycopg import sql

from template_pipeline.apps.simulator import Faults, SimSite
from template_pipeline.apps.webhooks import WEBHOOK_PATH, WebhookServer, secret_env_name, sign
from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.domain.sites import load_registry
from template_pipeline.source.redaction import REDACTED
from template_pipeline.store import db
from template_pipeline_tests.fixtures import deployment as harness

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOB = template_site_sync_job.name
RUN_TIMEOUT_S = 240.0
SYNC_TIMEOUT_S = 300.0


def _sentinel(label: str) -> str:
    return f"{label}-{secrets.token_hex(8)}/{secrets.token_hex(6)}+{secrets.token_hex(6)}=&x"


CLEAN, ECHO, REVOKED = "sec-clean", "sec-echo", "sec-revoked"
KEYS = {site: _sentinel("sk") for site in (CLEAN, ECHO, REVOKED)}
WEBHOOK_SECRETS = {site: _sentinel("whsec") for site in (CLEAN, ECHO, REVOKED)}
ALERT_HOOK_TOKEN = _sentinel("hook")
SENTINELS = [*KEYS.values(), *WEBHOOK_SECRETS.values(), ALERT_HOOK_TOKEN]

SITES = [
    SimSite(key=CLEAN, api_key=KEYS[CLEAN], seed=31, paintings=12, users=5, orders=6),
    SimSite(
        key=ECHO,
        api_key=KEYS[ECHO],
        seed=32,
        paintings=12,
        users=5,
        orders=6,
        page_cap=5,
        faults=Faults(echo_key=True, redirect_with_key=True, script=[500, 200, 503], html_every=7),
    ),
    SimSite(
        key=REVOKED,
        api_key=KEYS[REVOKED],
        seed=33,
        paintings=12,
        faults=Faults(echo_key=True, redirect_with_key=True, revoke_after=1),
    ),
]


def forms(secret: str) -> list[str]:
    """The spellings a secret can take in text, and pieces of it: its beginning (what a text
    cut short keeps) and every run of ten characters of its random parts (kept by every
    spelling)."""
    quoted = quote(secret, safe="")
    spelled = [
        secret,
        quoted,
        re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quoted),
        quote_plus(secret),
        unquote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        html.escape(secret),
    ]
    pieces = [
        part[start : start + 10]
        for part in re.findall(r"[0-9a-f]{12,}", secret)
        for start in range(len(part) - 9)
    ]
    return list(dict.fromkeys([*spelled, secret[:10], *pieces]))


FORMS = [(secret, form) for secret in SENTINELS for form in forms(secret)]

# Where the system writes, each a list of (what, text).
WHERE = (
    "sync command output",
    "webhook intake logs",
    "alert sinks",
    "instance database",
    "instance event log",
    "dashboard database",
    "files",
)


# --- capturing the alert webhook ----------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append(self.rfile.read(length).decode("utf-8", "replace"))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:  # the path holds the token
        return


@contextlib.contextmanager
def alert_hook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((harness.LOOPBACK, 0), _Hook)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# --- what the system does -------------------------------------------------------------------------


def _command(env: dict[str, str], name: str) -> list[tuple[str, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "template_pipeline.cli", "-v", name],
        env=env,
        cwd=harness.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SYNC_TIMEOUT_S,
    )
    # 1: a site failed or is down (the revoked one); anything else is a crash.
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    return [(f"{name} stdout", done.stdout), (f"{name} stderr", done.stderr)]


def _sync_command(env: dict[str, str]) -> list[tuple[str, str]]:
    """``sync``, then the commands an operator runs after it: ``health`` probes every site
    (the echoing one too) and ``status`` prints the fleet, failures and their errors included."""
    return [pair for name in ("sync", "health", "status") for pair in _command(env, name)]


def _daemon_runs(live: harness.SimulatedDeployment) -> list[str]:
    """The echoing and the revoked site materialised through the run queue and the daemon."""
    ui = live.ui
    assets = sorted(ui.asset_nodes())
    for site in (ECHO, REVOKED):
        ui.add_dynamic_partition(sites_partitions.name, site)
    run_ids = [ui.launch_partition_run(JOB, site, assets) for site in (ECHO, REVOKED)]
    for run_id in run_ids:
        harness.wait_for(
            lambda run_id=run_id: ui.run(run_id)["status"] in harness.FINISHED_RUN_STATUSES,
            what=f"run {run_id} to finish",
            timeout=RUN_TIMEOUT_S,
            interval=1.0,
            alive=live.deployment.check_alive,
        )
    return run_ids


@contextlib.contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every log record of this process while inside, formatted with its traceback."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logging.Formatter().format(record))

    handler, root = Collect(logging.DEBUG), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def _webhooks(live: harness.SimulatedDeployment, env: dict[str, str]) -> list[tuple[str, str]]:
    """A signed delivery per site, a badly signed one and one for a site without a secret."""
    answers = []
    with captured_logs() as lines:
        server = WebhookServer(
            live.dashboard_url, registry_loader=lambda: load_registry(env), environ=env
        )
        with server:
            for site, secret in [*WEBHOOK_SECRETS.items(), (CLEAN, "not-the-secret")]:
                body = json.dumps({"event": "painting_updated", "site": site, "id": 1}).encode()
                response = requests.post(
                    server.url + WEBHOOK_PATH,
                    data=body,
                    headers={"Content-Type": "application/json", **_signature(secret, body)},
                    timeout=10,
                )
                answers.append(f"{response.status_code} {response.text}")
    assert answers[0].startswith("202") and answers[-1].startswith("401"), answers
    return [("intake answers", "\n".join(answers)), ("intake log", "\n".join(lines))]


def _signature(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Template-Signature": sign(secret, body)}


def _alerts(live: harness.SimulatedDeployment, env: dict[str, str]) -> list[tuple[str, str]]:
    """What the alerts sensor does on its tick, in this process: every failed run and check
    alerted to the table, the log and the webhook."""
    import dagster as dg
    import sqlalchemy as sa

    from template_pipeline.defs.alerts.scan import AlertCursor, scan_for_alerts
    from template_pipeline.defs.resources import AlertSinks
    from template_pipeline.defs.sensors.alerts import ALERT_JOB_NAMES

    engine = sa.create_engine(live.dashboard_url)
    with pytest.MonkeyPatch.context() as patch, captured_logs() as lines:
        for name, value in env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            result = scan_for_alerts(
                instance,
                AlertCursor(),
                sinks=AlertSinks(),
                engine=engine,
                log=logging.getLogger("template_pipeline.tests.alerts"),
                job_names=ALERT_JOB_NAMES,
            )
    engine.dispose()
    assert result.deliveries, "no alert at all: the revoked site's failure must alert"
    messages = [f"{d.alert.message} {d}" for d in result.deliveries]
    return [("deliveries", "\n".join(messages)), ("alert log", "\n".join(lines))]


# --- reading back everything written ------------------------------------------------------------


def dump_database(url: str) -> list[tuple[str, str]]:
    """Every row of every table, as text; binary columns decoded as UTF-8 besides."""
    dumped = []
    with psycopg.connect(db.libpq_conninfo(url)) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            name = sql.Identifier(schema, table)
            rows = conn.execute(sql.SQL("SELECT t::text FROM {} AS t").format(name)).fetchall()
            dumped.append((f"{schema}.{table}", "\n".join(row[0] for row in rows)))
        binary = conn.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'bytea' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table, column in binary:
            query = sql.SQL("SELECT {} FROM {}").format(
                sql.Identifier(column), sql.Identifier(schema, table)
            )
            values = [bytes(v).decode("utf-8", "replace") for (v,) in conn.execute(query) if v]
            dumped.append((f"{schema}.{table}.{column}", "\n".join(values)))
    assert dumped, f"no table in {url}"
    return dumped


def event_logs(env: dict[str, str]) -> list[tuple[str, str]]:
    """Every event of every run, through the instance's own API."""
    import dagster as dg
    from dagster._serdes import serialize_value

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            found = [
                (f"run {run.run_id}", serialize_value(run) + "\n" + "\n".join(
                    serialize_value(entry) for entry in instance.all_logs(run.run_id)
                ))
                for run in runs
            ]  # fmt: skip
    assert len(runs) >= 3, "the sync command's runs and the two daemon-launched ones"
    return found


def files_under(folder: Path) -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(folder)), path.read_bytes().decode("utf-8", "replace"))
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]


# --- the run, once for the module ----------------------------------------------------------------


@pytest.fixture(scope="module")
def written(postgres_server_url, tmp_path_factory, request) -> dict[str, list[tuple[str, str]]]:
    work = tmp_path_factory.mktemp("secrets")
    found: dict[str, list[tuple[str, str]]] = {where: [] for where in WHERE}
    with alert_hook() as hook:
        hook_url = f"http://{harness.LOOPBACK}:{hook.server_address[1]}/services/{ALERT_HOOK_TOKEN}"
        extra = {secret_env_name(site): secret for site, secret in WEBHOOK_SECRETS.items()}
        extra["ALERT_WEBHOOK_URL"] = hook_url
        with harness.simulated_deployment(
            postgres_server_url, work, SITES, extra_env=extra
        ) as live:
            reporter = harness.FailureReporter(live.deployment, "written", "secrets")
            with reporter.installed(request.config):
                instance_url = live.deployment.env["DAGSTER_POSTGRES_URL"]
                # What deploy/start.sh hands the processes: the psycopg2 driver named.
                env = harness.isolated_env(
                    {
                        **live.deployment.env,
                        "DAGSTER_POSTGRES_URL": db.dagster_storage_url(instance_url),
                    }
                )
                found["sync command output"] = _sync_command(env)
                run_ids = _daemon_runs(live)
                found["webhook intake logs"] = _webhooks(live, env)
                found["alert sinks"] = _alerts(live, env)
                found["instance database"] = dump_database(instance_url)
                found["instance event log"] = event_logs(env)
                found["dashboard database"] = dump_database(live.dashboard_url)
                echoed = live.simulator.request_count(ECHO)
        found["alert sinks"] += [("webhook payload", body) for body in hook.bodies]  # type: ignore[attr-defined]
    # Read once every process has stopped: their logs are complete.
    found["files"] = files_under(work)
    found["_facts"] = [("daemon runs", " ".join(run_ids)), ("echo requests", str(echoed))]
    return found


def test_the_sync_ran_and_the_servers_echoed_the_keys(written):
    facts = dict(written["_facts"])
    assert int(facts["echo requests"]) > 3
    tables = dict(written["dashboard database"])
    assert re.search(rf"^\({CLEAN},", tables["public.template_paintings"], re.M)
    assert "sec-revoked" in tables["public.template_alerts"]
    assert any(label == "webhook payload" for label, _ in written["alert sinks"])
    # Redaction did happen: the echoed keys were there to be removed, and with -v urllib3
    # logged the redirects' request lines, whose query carried the key.
    output = dict(written["sync command output"])
    assert REDACTED in output["sync stdout"]
    assert f"token={REDACTED}" in output["sync stderr"]
    assert "sec-revoked" in output["health stdout"] and "sec-revoked" in output["status stdout"]
    # The daemon-launched runs' compute logs were among the files searched.
    assert any("compute_logs" in name and name.endswith(".err") for name, _ in written["files"])


@pytest.mark.parametrize("where", WHERE)
def test_no_sentinel_appears_in(written, where):
    texts = written[where]
    assert texts, f"nothing was read from {where}"
    leaks = sorted(
        {
            (label, f"{secret[:8]}... as {form!r}")
            for label, text in texts
            for secret, form in FORMS
            if form in text
        }
    )
    assert leaks == []
