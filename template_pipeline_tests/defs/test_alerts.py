"""Alerts: each new failed check or failed run reaches each sink exactly once.

The alerts sensor runs on a test instance whose event log holds crafted check evaluations and
real failed runs; the HTTP sink is a small local receiver. Running the sensor again, or replaying
an old cursor, sends nothing twice; a failing sink never stops the sensor.
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from template_pipeline.defs.alerts.scan import AlertCursor
from template_pipeline.defs.alerts.sinks import Alert, deliver, slack_message
from template_pipeline.defs.resources import AlertSinks, DashboardDatabase
from template_pipeline.defs.sensors import template_alerts_sensor
from template_pipeline.defs.tags import SITE_TAG
from template_pipeline.store import db
from template_pipeline.store.ops_tables import template_alerts
from template_pipeline_tests.fixtures.helpers import unique_site


class _Receiver(ThreadingHTTPServer):
    """Records the JSON bodies POSTed to it and answers ``status``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.bodies: list[dict] = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/T000/B000/secret-token"


class _ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.bodies.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def instance() -> dg.DagsterInstance:
    # In memory, with one event log for all runs, as the Postgres storage of dagster.yaml.
    return dg.DagsterInstance.ephemeral()


@pytest.fixture(params=["one event log", "sharded by run"])
def any_instance(request) -> Iterator[dg.DagsterInstance]:
    """Both kinds of event log storage: storage ids are global in one, per run in the other
    (the default SQLite instance of a DAGSTER_HOME without dagster.yaml)."""
    if request.param == "one event log":
        yield dg.DagsterInstance.ephemeral()
    else:
        with dg.instance_for_test() as sharded:
            assert sharded.event_log_storage.is_run_sharded
            yield sharded


def _rows(url: str, site: str) -> list[sa.Row]:
    with db.get_engine(url).connect() as conn:
        return conn.execute(
            sa.select(template_alerts)
            .where(template_alerts.c.site == site)
            .order_by(template_alerts.c.id)
        ).all()


def _evaluation(site: str, *, passed: bool, check: str = "order_totals", severity=None):
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("orders"),
        check_name=check,
        passed=passed,
        severity=severity or dg.AssetCheckSeverity.WARN,
        partition=site,
        description=None if passed else f"2 orders of site {site!r} do not add up",
        metadata={"mismatches": 0 if passed else 2},
    )


def _emit(instance: dg.DagsterInstance, evaluation: dg.AssetCheckEvaluation) -> None:
    """Record ``evaluation`` from a run of its own, as the health job records freshness.

    (Runless reports of one check and partition collide in SQLite instances.)
    """

    @dg.op(out=dg.Out(dg.Nothing))
    def evaluate():
        yield evaluation

    @dg.job(name="evaluate_checks")
    def job() -> None:
        evaluate()

    assert job.execute_in_process(instance=instance).success


def _tick(instance, database_url: str, sinks: AlertSinks, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "dashboard_database": DashboardDatabase(database_url=database_url),
            "alert_sinks": sinks,
        },
    )
    result = template_alerts_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


@pytest.mark.parametrize(
    ("alert", "title"),
    [
        (
            Alert("k1", "check", "WARN", "m", site="s", asset="orders", check_name="c"),
            "check c failed on orders of site s",
        ),
        (Alert("k2", "run", "ERROR", "m", site="s", run_id="r"), "run failed of site s"),
        (Alert("k3", "health", "ERROR", "m", site="s"), "site s is down"),
        (Alert("k4", "health", "INFO", "m", site="s", resolved=True), "site s is back up"),
    ],
)
def test_slack_message(alert, title):
    message = slack_message(alert, now=1_700_000_000)
    assert message["text"] == f"[{alert.severity}] template-pipeline: {title}"
    (attachment,) = message["attachments"]
    assert attachment["title"] == title and attachment["text"] == "m"
    assert attachment["ts"] == 1_700_000_000
    assert {"title": "site", "value": "s", "short": True} in attachment["fields"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, AlertCursor()),
        ('{"checks": 12, "runs": null}', AlertCursor(checks=12)),
        ("not json", AlertCursor()),
        ('{"checks": "x"}', AlertCursor()),
    ],
)
def test_alert_cursor_reads_what_it_wrote_and_survives_garbage(raw, expected):
    cursor = AlertCursor.from_json(raw)
    assert cursor == expected
    assert AlertCursor.from_json(cursor.to_json()) == cursor


def test_a_failed_check_alerts_exactly_once(any_instance, database_url, receiver):
    instance = any_instance
    site = unique_site("alr")
    instance.report_runless_asset_event(_evaluation(site, passed=False))
    sinks = AlertSinks(webhook_url=receiver.url)

    first = _tick(instance, database_url, sinks, None)
    second = _tick(instance, database_url, sinks, first.cursor)
    replay = _tick(instance, database_url, sinks, None)  # a lost cursor: the table dedupes

    rows = _rows(database_url, site)
    assert len(rows) == 1
    (row,) = rows
    assert (row.source, row.asset, row.check_name, row.severity) == (
        "check",
        "orders",
        "order_totals",
        "WARN",
    )
    assert "do not add up" in row.message and row.webhook_status == "sent"
    assert row.resolved_at is None
    posted = [b for b in receiver.bodies if site in json.dumps(b)]
    assert len(posted) == 1
    assert posted[0]["attachments"][0]["fields"][0] == {
        "title": "site",
        "value": site,
        "short": True,
    }
    assert AlertCursor.from_json(second.cursor).checks == AlertCursor.from_json(first.cursor).checks
    assert "0 alert(s) sent" in second.skip_reason.skip_message
    assert "0 alert(s) sent" in replay.skip_reason.skip_message


def test_a_check_that_keeps_failing_alerts_again_only_after_passing(
    instance, database_url, receiver
):
    site = unique_site("alr")
    sinks = AlertSinks(webhook_url=receiver.url)
    cursor = _tick(instance, database_url, sinks, None).cursor  # start after older events

    _emit(instance, _evaluation(site, passed=False))
    cursor = _tick(instance, database_url, sinks, cursor).cursor
    _emit(instance, _evaluation(site, passed=False))  # still failing
    cursor = _tick(instance, database_url, sinks, cursor).cursor
    assert len(_rows(database_url, site)) == 1

    # Escalation from WARN to ERROR is news.
    _emit(instance, _evaluation(site, passed=False, severity=dg.AssetCheckSeverity.ERROR))
    cursor = _tick(instance, database_url, sinks, cursor).cursor
    assert [r.severity for r in _rows(database_url, site)] == ["WARN", "ERROR"]

    _emit(instance, _evaluation(site, passed=True))
    cursor = _tick(instance, database_url, sinks, cursor).cursor
    assert all(r.resolved_at is not None for r in _rows(database_url, site))

    _emit(instance, _evaluation(site, passed=False))
    _tick(instance, database_url, sinks, cursor)
    assert len(_rows(database_url, site)) == 3
    assert len([b for b in receiver.bodies if site in json.dumps(b)]) == 3


def test_min_severity_keeps_warnings_out(instance, database_url, receiver, monkeypatch):
    monkeypatch.setenv("ALERT_MIN_SEVERITY", "ERROR")
    site = unique_site("alr")
    sinks = AlertSinks(webhook_url=receiver.url)
    cursor = _tick(instance, database_url, sinks, None).cursor
    instance.report_runless_asset_event(_evaluation(site, passed=False))
    _tick(instance, database_url, sinks, cursor)
    assert _rows(database_url, site) == []


def _failing_job(name: str) -> dg.JobDefinition:
    @dg.op
    def fetch_paintings() -> None:
        raise dg.Failure(description="site 'x', endpoint 'paintings': connection refused")

    @dg.job(name=name)
    def job() -> None:
        fetch_paintings()

    return job


def _blocking_check_job(name: str) -> dg.JobDefinition:
    @dg.asset(name="orders")
    def orders() -> int:
        return 1

    @dg.asset_check(asset=orders, blocking=True, name="reject_rate")
    def reject_rate() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, description="40 % of the orders rejected")

    defs = dg.Definitions(
        assets=[orders],
        asset_checks=[reject_rate],
        jobs=[dg.define_asset_job(name)],
        resources={"io_manager": dg.mem_io_manager},
    )
    return defs.resolve_job_def(name)


def test_run_failures_alert_once_unless_a_failed_check_explains_them(
    instance, database_url, receiver
):
    site, checked_site = unique_site("alr"), unique_site("alr")
    sinks = AlertSinks(webhook_url=receiver.url)
    cursor = _tick(instance, database_url, sinks, None).cursor

    failed = _failing_job("template_site_sync").execute_in_process(
        instance=instance, tags={SITE_TAG: site}, raise_on_error=False
    )
    blocked = _blocking_check_job("template_site_sync").execute_in_process(
        instance=instance, tags={SITE_TAG: checked_site}, raise_on_error=False
    )
    other = _failing_job("someone_elses_job").execute_in_process(
        instance=instance, tags={SITE_TAG: site}, raise_on_error=False
    )
    assert not (failed.success or blocked.success or other.success)

    cursor = _tick(instance, database_url, sinks, cursor).cursor
    _tick(instance, database_url, sinks, cursor)

    (row,) = _rows(database_url, site)
    assert (row.source, row.severity, row.run_id) == ("run", "ERROR", failed.run_id)
    assert row.dedupe_key == f"run:{failed.run_id}"
    assert "fetch_paintings: site 'x', endpoint 'paintings': connection refused" in row.message
    # The run stopped by a blocking check: the check's alert says it all (the evaluation is not
    # partitioned here, so its alert has no site).
    assert _rows(database_url, checked_site) == []
    with db.get_engine(database_url).connect() as conn:
        keys = (
            conn.execute(
                sa.select(template_alerts.c.dedupe_key).where(
                    template_alerts.c.run_id.in_([blocked.run_id, other.run_id])
                )
            )
            .scalars()
            .all()
        )
    assert len(keys) == 1 and keys[0].startswith("check:")


def test_a_failing_sink_never_stops_the_others(database_url, receiver):
    receiver.status = 500
    logged: list[str] = []

    class _Log:
        def info(self, msg, *args):
            logged.append(msg % args if args else msg)

        warning = error = info

    site = unique_site("alr")
    alert = Alert(f"health:{site}:1", "health", "ERROR", "down", site=site)
    delivery = deliver(
        alert, engine=db.get_engine(database_url), webhook_url=receiver.url, log=_Log()
    )
    assert delivery.stored and delivery.webhook_status == "failed"
    assert _rows(database_url, site)[0].webhook_status == "failed"
    assert any("HTTP 500" in line for line in logged)
    assert not any("secret-token" in line for line in logged)

    # No database at all: still logged and posted.
    receiver.status = 200
    broken = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    delivery = deliver(
        Alert(f"health:{site}:2", "health", "ERROR", "down again", site=site),
        engine=broken,
        webhook_url=receiver.url,
        log=_Log(),
    )
    assert not delivery.stored and delivery.webhook_status == "sent"
    assert any("template_alerts failed" in line for line in logged)
    assert any("down again" in line for line in logged)

    # An unreachable webhook: the alert is stored and logged, the URL is not.
    delivery = deliver(
        Alert(f"health:{site}:3", "health", "ERROR", "down", site=site),
        engine=db.get_engine(database_url),
        webhook_url=receiver.url,
        log=_Log(),
        post=_refusing_post,
    )
    assert delivery.stored and delivery.webhook_status == "failed"
    assert any("ConnectionError" in line for line in logged)
    assert not any("secret-token" in line for line in logged)


def _refusing_post(*args, **kwargs):
    raise requests.ConnectionError("connection refused to http://host/services/secret-token")


def test_debug_logging_of_the_webhook_post_never_shows_its_token(database_url, receiver, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    site = unique_site("alr")
    token = f"T0{site}/B0/hook-token-{site}"
    url = f"http://127.0.0.1:{receiver.server_address[1]}/services/{token}"
    delivery = deliver(
        Alert(f"health:{site}:debug", "health", "ERROR", "down", site=site),
        engine=db.get_engine(database_url),
        webhook_url=url,
        log=logging.getLogger("template_pipeline.tests.alerts"),
    )
    assert delivery.webhook_status == "sent"
    # urllib3 logged its request line (with -v an operator sees it), without the path.
    assert any(r.name.startswith("urllib3") and "POST" in r.getMessage() for r in caplog.records)
    assert token not in caplog.text and "hook-token" not in caplog.text
