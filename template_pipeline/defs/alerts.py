"""Alerts: failed checks, failed runs and site outages, sent once each to the configured sinks.

Dagster open source does not alert on failed asset checks by itself. The alerts sensor
(``template_alerts_sensor`` in ``sensors.py``) calls :func:`scan_for_alerts`, which reads the
instance's event log after a cursor: every asset check evaluation of the template assets, and
every failure of the pipeline's runs. The hourly health job sends its own alerts (a site went
down, a site came back) through :func:`deliver` as well.

Sinks, in this order, each failure-proof (a failing sink is logged and never stops the others,
nor the sensor):

1. the ``template_alerts`` table: one row per alert, ``dedupe_key`` unique, so an alert whose
   event is read twice (a sensor tick retried after a crash) is neither stored nor sent twice;
2. the Dagster log of the sensor tick or run (``context.log``);
3. when ``ALERT_WEBHOOK_URL`` is set: an HTTP POST of a Slack-compatible JSON message
   (``text`` + one ``attachment`` with the site, asset, check and run as fields). The URL is a
   secret (Slack puts a token in its path): it never appears in logs, errors or the table.

What is "new": a failed check alerts when the same check on the same site has no open alert of
that severity or higher; a passing evaluation resolves the open alerts of its check and site
(``resolved_at``). A check that keeps failing night after night therefore alerts once, and again
after it has passed in between. Every failed run alerts once, unless all of its failed steps are
explained by a failed ERROR check of the same run (that check already alerted, or is known to
be failing). ``ALERT_MIN_SEVERITY=ERROR`` keeps WARN check failures out of the sinks.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

import dagster as dg
import requests
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.dialects.postgresql import insert as pg_insert

from template_pipeline.defs.assets import ALL_ENTITIES, SITE_TAG
from template_pipeline.store.ops_tables import ALERT_SEVERITIES, template_alerts

logger = logging.getLogger(__name__)

ALERT_WEBHOOK_URL_ENV = "ALERT_WEBHOOK_URL"
ALERT_MIN_SEVERITY_ENV = "ALERT_MIN_SEVERITY"

Severity = Literal["INFO", "WARN", "ERROR"]
Source = Literal["check", "run", "health"]
_RANK = {name: rank for rank, name in enumerate(ALERT_SEVERITIES)}
_SLACK_COLORS = {"INFO": "#2eb886", "WARN": "#daa038", "ERROR": "#d00000"}
_MAX_MESSAGE_CHARS = 1500
# Events read per tick and kind; a backlog is worked off over the next ticks.
SCAN_BATCH = 500
# How far back a sensor without a cursor (first start, or reset) looks for failures.
FIRST_SCAN_LOOKBACK = timedelta(hours=24)
_TEMPLATE_ASSETS = frozenset(ALL_ENTITIES)


class AlertLog(Protocol):
    """What alerting logs to: a Dagster log manager, or a ``logging.Logger``."""

    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...
    def error(self, msg: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class Alert:
    """One alert. ``dedupe_key`` names the event it is about; it is sent once per key."""

    dedupe_key: str
    source: Source
    severity: Severity
    message: str
    site: str | None = None
    asset: str | None = None
    check_name: str | None = None
    run_id: str | None = None
    # Recoveries (a site back up) are created resolved: nothing is left open by them.
    resolved: bool = False

    @property
    def title(self) -> str:
        where = f" of site {self.site}" if self.site else ""
        if self.source == "check":
            return f"check {self.check_name} failed on {self.asset}{where}"
        if self.source == "run":
            return f"run failed{where}"
        return f"site {self.site} is {'back up' if self.resolved else 'down'}"


@dataclass
class Delivery:
    """What became of one alert: ``stored`` is False for a duplicate or a failed table sink."""

    alert: Alert
    duplicate: bool = False
    stored: bool = False
    webhook_status: str = "disabled"
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# The sinks


class AlertSinks(dg.ConfigurableResource):
    """Where alerts go besides the Dagster log; unset fields come from the environment."""

    webhook_url: str | None = Field(
        default=None,
        description=f"Slack-compatible incoming webhook; default {ALERT_WEBHOOK_URL_ENV}.",
    )
    min_check_severity: str | None = Field(
        default=None,
        description=(
            f"WARN or ERROR: failed checks below it are not alerted; default "
            f"{ALERT_MIN_SEVERITY_ENV} or WARN."
        ),
    )
    connect_timeout: float = 3.0
    read_timeout: float = 5.0

    def resolved_webhook_url(self) -> str | None:
        url = (self.webhook_url or os.environ.get(ALERT_WEBHOOK_URL_ENV, "")).strip()
        return url or None

    def check_severity_floor(self) -> Severity:
        raw = (self.min_check_severity or os.environ.get(ALERT_MIN_SEVERITY_ENV, "")).strip()
        value = raw.upper() or "WARN"
        if value not in ("WARN", "ERROR"):
            raise ValueError(f"{ALERT_MIN_SEVERITY_ENV} must be WARN or ERROR, got {raw!r}")
        return value  # type: ignore[return-value]

    def deliver(self, alert: Alert, *, engine: sa.Engine | None, log: AlertLog) -> Delivery:
        return deliver(
            alert,
            engine=engine,
            webhook_url=self.resolved_webhook_url(),
            log=log,
            timeout=(self.connect_timeout, self.read_timeout),
        )


def slack_message(alert: Alert, now: float | None = None) -> dict[str, Any]:
    """The alert as a Slack-compatible incoming-webhook payload."""
    fields = [
        {"title": name, "value": value, "short": True}
        for name, value in (
            ("site", alert.site),
            ("asset", alert.asset),
            ("check", alert.check_name),
            ("run", alert.run_id),
            ("severity", alert.severity),
        )
        if value
    ]
    return {
        "text": f"[{alert.severity}] template-pipeline: {alert.title}",
        "attachments": [
            {
                "color": _SLACK_COLORS[alert.severity],
                "title": alert.title,
                "text": alert.message,
                "fields": fields,
                "footer": "template-pipeline",
                "ts": int(now if now is not None else time.time()),
            }
        ],
    }


def _describe_http_error(exc: requests.RequestException) -> str:
    # Never str(exc): requests puts the URL, and with it the webhook's secret path, in it.
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    return type(exc).__name__


def _store(engine: sa.Engine, alert: Alert) -> bool:
    """Insert the alert's row; False when its dedupe_key is already there."""
    values = {
        "dedupe_key": alert.dedupe_key,
        "source": alert.source,
        "site": alert.site,
        "asset": alert.asset,
        "check_name": alert.check_name,
        "severity": alert.severity,
        "message": alert.message[:_MAX_MESSAGE_CHARS],
        "run_id": alert.run_id,
    }
    statement = (
        pg_insert(template_alerts)
        .values(**values, resolved_at=sa.func.now() if alert.resolved else None)
        .on_conflict_do_nothing(index_elements=[template_alerts.c.dedupe_key])
        .returning(template_alerts.c.id)
    )
    with engine.begin() as conn:
        return conn.execute(statement).scalar_one_or_none() is not None


def deliver(
    alert: Alert,
    *,
    engine: sa.Engine | None,
    webhook_url: str | None,
    log: AlertLog,
    timeout: tuple[float, float] = (3.0, 5.0),
    post: Callable[..., requests.Response] = requests.post,
) -> Delivery:
    """Send ``alert`` to the table, the log and the webhook, once per ``dedupe_key``.

    When the table cannot be written the alert is still logged and posted (better twice than
    never); when it says the key is known, nothing is sent.
    """
    delivery = Delivery(alert)
    if engine is not None:
        try:
            delivery.stored = _store(engine, alert)
            delivery.duplicate = not delivery.stored
        except Exception as exc:
            delivery.errors.append(f"template_alerts: {type(exc).__name__}")
            log.error(
                "alert sink template_alerts failed (%s); the alert is still logged and posted",
                type(exc).__name__,
            )
    if delivery.duplicate:
        return delivery

    line = f"[template alert] {alert.severity} {alert.title}: {alert.message}"
    {"ERROR": log.error, "WARN": log.warning}.get(alert.severity, log.info)(line)

    if webhook_url:
        try:
            response = post(webhook_url, json=slack_message(alert), timeout=timeout)
            response.raise_for_status()
            delivery.webhook_status = "sent"
        except requests.RequestException as exc:
            delivery.webhook_status = "failed"
            delivery.errors.append(f"webhook: {_describe_http_error(exc)}")
            log.warning(
                "alert sink %s failed: %s", ALERT_WEBHOOK_URL_ENV, _describe_http_error(exc)
            )
    if delivery.stored and engine is not None:
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.update(template_alerts)
                    .where(template_alerts.c.dedupe_key == alert.dedupe_key)
                    .values(webhook_status=delivery.webhook_status)
                )
        except Exception as exc:  # the alert went out; only its bookkeeping is missing
            log.warning("could not record the webhook outcome of an alert: %s", type(exc).__name__)
    return delivery


# --------------------------------------------------------------------------------------------
# Open alerts


def _open_alert_filter(
    source: Source, site: str | None, asset: str | None, check_name: str | None
) -> sa.ColumnElement[bool]:
    alerts = template_alerts
    return sa.and_(
        alerts.c.source == source,
        alerts.c.site.is_not_distinct_from(site),
        alerts.c.asset.is_not_distinct_from(asset),
        alerts.c.check_name.is_not_distinct_from(check_name),
        alerts.c.resolved_at.is_(None),
    )


def open_alert_severity(
    engine: sa.Engine, source: Source, site: str | None, asset: str | None, check_name: str | None
) -> Severity | None:
    """The highest severity among the open alerts of this source, site, asset and check."""
    with engine.connect() as conn:
        severities = (
            conn.execute(
                sa.select(template_alerts.c.severity).where(
                    _open_alert_filter(source, site, asset, check_name)
                )
            )
            .scalars()
            .all()
        )
    if not severities:
        return None
    return max(severities, key=lambda s: _RANK.get(s, 0))  # type: ignore[return-value]


def resolve_alerts(
    engine: sa.Engine, source: Source, site: str | None, asset: str | None, check_name: str | None
) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(template_alerts)
            .where(_open_alert_filter(source, site, asset, check_name))
            .values(resolved_at=sa.func.now())
        )
    return result.rowcount or 0


# --------------------------------------------------------------------------------------------
# Reading the event log


@dataclass(frozen=True)
class AlertCursor:
    """Where the last scan stopped.

    ``checks`` and ``runs`` are the storage ids of the last check evaluation and the last run
    failure read. ``checks_ts`` is the timestamp of the last check evaluation: the default
    SQLite instance (``dagster dev`` without the repo's dagster.yaml) shards its event log per
    run, where storage ids are not global, so there evaluations are read by time instead.
    """

    checks: int | None = None
    runs: int | None = None
    checks_ts: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"checks": self.checks, "runs": self.runs, "checks_ts": self.checks_ts},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | None) -> AlertCursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)

            def number(name: str, kind: type) -> Any:
                return None if data.get(name) is None else kind(data[name])

            return cls(
                checks=number("checks", int),
                runs=number("runs", int),
                checks_ts=number("checks_ts", float),
            )
        except (ValueError, TypeError, AttributeError):
            # An unreadable cursor (a sensor from an older version): start over; the dedupe
            # keys keep what was already sent from being sent again.
            logger.warning("alerts sensor: unreadable cursor, starting over")
            return cls()


@dataclass
class ScanResult:
    cursor: AlertCursor
    deliveries: list[Delivery] = field(default_factory=list)
    evaluations_read: int = 0
    run_failures_read: int = 0
    resolved: int = 0


def _template_entity(asset_key: dg.AssetKey) -> str | None:
    path = asset_key.path
    return path[0] if len(path) == 1 and path[0] in _TEMPLATE_ASSETS else None


def _first_line(text: str | None, limit: int = 300) -> str:
    lines = (text or "").strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _step_error(event: dg.DagsterEvent) -> str:
    data = event.step_failure_data
    user = getattr(data, "user_failure_data", None)
    if user is not None and user.description:
        return _first_line(user.description)
    error = data.error if data is not None else None
    # The innermost cause is the user's exception; the outer ones are Dagster's wrappers.
    while error is not None and error.cause is not None:
        error = error.cause
    return _first_line(error.message if error is not None else "step failed")


def _run_failure_alert(instance: dg.DagsterInstance, record: dg.EventLogRecord) -> Alert | None:
    entry = record.event_log_entry
    run_id = entry.run_id
    run = instance.get_run_by_id(run_id)
    tags = run.tags if run is not None else {}
    site = tags.get(SITE_TAG) or tags.get("dagster/partition")
    failed: dict[str, str] = {}
    explained: set[str] = set()
    for step_record in instance.get_records_for_run(
        run_id,
        of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ASSET_CHECK_EVALUATION},
    ).records:
        event = step_record.event_log_entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            failed[event.step_key] = _step_error(event)
        else:
            evaluation = event.asset_check_evaluation_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                explained.add(event.step_key)
    if failed and set(failed) <= explained:
        return None
    if failed:
        shown = "; ".join(f"{step}: {error}" for step, error in list(failed.items())[:3])
        more = f" (and {len(failed) - 3} more step(s))" if len(failed) > 3 else ""
        reason = shown + more
    else:  # the run failed outside any step (it could not start, or its process died)
        reason = _first_line(entry.dagster_event.message if entry.dagster_event else None)
    job = entry.job_name or (run.job_name if run is not None else "?")
    where = f" for site {site}" if site else ""
    return Alert(
        dedupe_key=f"run:{run_id}",
        source="run",
        severity="ERROR",
        site=site,
        run_id=run_id,
        message=f"run {run_id} of job {job}{where} failed: {reason or 'no detail recorded'}",
    )


def _check_alert(
    record: dg.EventLogRecord, evaluation: dg.AssetCheckEvaluation, entity: str
) -> Alert:
    site = evaluation.partition
    where = f" of site {site!r}" if site else ""
    description = evaluation.description or (
        f"check {evaluation.check_name} did not pass on {entity}{where}"
    )
    entry = record.event_log_entry
    run_id = entry.run_id or None
    return Alert(
        # Storage ids alone are not enough: they are per run where the event log is sharded by
        # run, and start over with a new instance database; run id and time make it unique.
        dedupe_key=f"check:{run_id or 'runless'}:{record.storage_id}:{entry.timestamp:.6f}",
        source="check",
        severity=evaluation.severity.value,  # type: ignore[arg-type]
        site=site,
        asset=entity,
        check_name=evaluation.check_name,
        run_id=run_id,
        message=description,
    )


def scan_for_alerts(
    instance: dg.DagsterInstance,
    cursor: AlertCursor,
    *,
    sinks: AlertSinks,
    engine: sa.Engine | None,
    log: AlertLog,
    job_names: Sequence[str],
    now: datetime | None = None,
) -> ScanResult:
    """Read the events after ``cursor``, send the alerts they call for, return the new cursor.

    ``engine`` is the Dashboard database (``None`` when it cannot be reached: alerts are then
    logged and posted only, and open-alert bookkeeping is skipped).
    """
    now = now or datetime.now(timezone.utc)
    since = (now - FIRST_SCAN_LOOKBACK).timestamp()
    floor = _RANK[sinks.check_severity_floor()]
    result = ScanResult(cursor=cursor)

    records, next_checks = _check_evaluation_records(instance, cursor, since)
    for record in records:
        result.evaluations_read += 1
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        evaluation = event.asset_check_evaluation_data
        entity = _template_entity(evaluation.asset_key)
        if entity is None:
            continue
        site = evaluation.partition
        try:
            if evaluation.passed:
                if engine is not None:
                    result.resolved += resolve_alerts(
                        engine, "check", site, entity, evaluation.check_name
                    )
                continue
            rank = _RANK[evaluation.severity.value]
            if rank < floor:
                continue
            if engine is not None:
                open_severity = open_alert_severity(
                    engine, "check", site, entity, evaluation.check_name
                )
                if open_severity is not None and _RANK[open_severity] >= rank:
                    continue  # still failing: alerted already
        except Exception as exc:  # the table is unreachable: alert rather than stay silent
            log.error("alerts: open-alert lookup failed (%s)", type(exc).__name__)
            if evaluation.passed:
                continue
        result.deliveries.append(
            sinks.deliver(_check_alert(record, evaluation, entity), engine=engine, log=log)
        )

    run_filter = dg.RunStatusChangeRecordsFilter(
        event_type=dg.DagsterEventType.RUN_FAILURE,
        after_storage_id=cursor.runs,
        after_timestamp=since if cursor.runs is None else None,
        # No job_names here: not every storage supports that filter; it is applied below.
    )
    last_run = cursor.runs
    for record in instance.fetch_run_status_changes(
        run_filter, limit=SCAN_BATCH, ascending=True
    ).records:
        last_run = record.storage_id
        if record.event_log_entry.job_name not in job_names:
            continue
        result.run_failures_read += 1
        try:
            alert = _run_failure_alert(instance, record)
        except Exception as exc:  # never lose the failure itself to a detail we could not read
            log.error("alerts: could not read the failed run's steps (%s)", type(exc).__name__)
            run_id = record.event_log_entry.run_id
            alert = Alert(
                dedupe_key=f"run:{run_id}",
                source="run",
                severity="ERROR",
                run_id=run_id,
                message=f"run {run_id} failed",
            )
        if alert is not None:
            result.deliveries.append(sinks.deliver(alert, engine=engine, log=log))

    result.cursor = replace(next_checks, runs=last_run)
    return result


# Where the event log is sharded by run, evaluations are read again from a little before the
# last one seen: events of a second are not ordered across shards. Dedupe keys absorb the overlap.
_SHARDED_OVERLAP_S = 1.0


def _check_evaluation_records(
    instance: dg.DagsterInstance, cursor: AlertCursor, since: float
) -> tuple[list[dg.EventLogRecord], AlertCursor]:
    """The check evaluations after ``cursor`` in event order, and the cursor after them."""
    # The storage's own query: DagsterInstance.get_event_records is deprecated in Dagster 1.13.
    event_type = dg.DagsterEventType.ASSET_CHECK_EVALUATION
    if not instance.event_log_storage.is_run_sharded:
        records = list(
            instance.event_log_storage.get_event_records(
                dg.EventRecordsFilter(
                    event_type=event_type,
                    after_cursor=cursor.checks,
                    after_timestamp=since if cursor.checks is None else None,
                ),
                limit=SCAN_BATCH,
                ascending=True,
            )
        )
        if not records:
            return records, cursor
        last = records[-1]
        return records, replace(
            cursor, checks=last.storage_id, checks_ts=last.event_log_entry.timestamp
        )
    after = (cursor.checks_ts if cursor.checks_ts is not None else since) - _SHARDED_OVERLAP_S
    records = sorted(
        instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(
                event_type=event_type,
                after_cursor=dg.RunShardedEventsCursor(
                    id=0, run_updated_after=datetime.fromtimestamp(after, tz=timezone.utc)
                ),
                after_timestamp=after,
            ),
            ascending=True,
        ),
        key=lambda record: record.event_log_entry.timestamp,
    )
    if not records:
        return records, cursor
    return records, replace(cursor, checks_ts=records[-1].event_log_entry.timestamp)


def health_alert(site: str, probe_id: int, *, up: bool, probe: str, detail: str) -> Alert:
    """The alert of a site going down (ERROR) or coming back (INFO, created resolved)."""
    if up:
        message = f"site {site} answers its export API again"
    else:
        message = f"site {site} is down: {probe}" + (f" ({_first_line(detail)})" if detail else "")
    return Alert(
        dedupe_key=f"health:{site}:{probe_id}",
        source="health",
        severity="INFO" if up else "ERROR",
        site=site,
        message=message,
        resolved=up,
    )


def alerts_summary(deliveries: Iterable[Delivery]) -> Mapping[str, int]:
    counts = {"sent": 0, "webhook_failed": 0, "sink_errors": 0}
    for delivery in deliveries:
        if delivery.duplicate:
            continue
        counts["sent"] += 1
        counts["webhook_failed"] += delivery.webhook_status == "failed"
        counts["sink_errors"] += bool(delivery.errors)
    return counts


__all__ = [
    "ALERT_MIN_SEVERITY_ENV",
    "ALERT_WEBHOOK_URL_ENV",
    "Alert",
    "AlertCursor",
    "AlertLog",
    "AlertSinks",
    "Delivery",
    "ScanResult",
    "deliver",
    "health_alert",
    "open_alert_severity",
    "resolve_alerts",
    "scan_for_alerts",
    "slack_message",
]
