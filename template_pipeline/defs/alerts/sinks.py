"""Alerts and their sinks: each alert stored once, logged, and posted to the webhook.

Sinks, in this order, each failure-proof (a failing sink is logged and never stops the others,
nor the sensor):

1. the ``template_alerts`` table: one row per alert, ``dedupe_key`` unique, so an alert whose
   event is read twice (a sensor tick retried after a crash) is neither stored nor sent twice;
2. the Dagster log of the sensor tick or run (``context.log``);
3. when ``ALERT_WEBHOOK_URL`` is set: an HTTP POST of a Slack-compatible JSON message
   (``text`` + one ``attachment`` with the site, asset, check and run as fields). The URL is a
   secret (Slack puts a token in its path): it never appears in logs, errors or the table.

An open alert (``resolved_at`` unset) is what keeps a check that keeps failing from alerting on
every evaluation: :func:`open_alert_severity` and :func:`resolve_alerts` keep that state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from template_pipeline.domain import config
from template_pipeline.domain.vocabulary import ALERT_SEVERITIES, Severity, WebhookStatus
from template_pipeline.domain.vocabulary import AlertSource as Source
from template_pipeline.source.redaction import install_log_redaction, register_secret
from template_pipeline.store.ops_tables import template_alerts

SEVERITY_RANK = {name: rank for rank, name in enumerate(ALERT_SEVERITIES)}


_SLACK_COLORS = {"INFO": "#2eb886", "WARN": "#daa038", "ERROR": "#d00000"}


_MAX_MESSAGE_CHARS = 1500
# The shortest part of the webhook URL worth keeping out of the logs (see protect_webhook_url).
_MIN_PROTECTED_CHARS = 12


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
    webhook_status: WebhookStatus = "disabled"
    errors: list[str] = field(default_factory=list)


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
        protect_webhook_url(webhook_url)
        try:
            response = post(webhook_url, json=slack_message(alert), timeout=timeout)
            response.raise_for_status()
            delivery.webhook_status = "sent"
        except requests.RequestException as exc:
            delivery.webhook_status = "failed"
            delivery.errors.append(f"webhook: {_describe_http_error(exc)}")
            log.warning(
                "alert sink %s failed: %s", config.ALERT_WEBHOOK_URL.name, _describe_http_error(exc)
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


def protect_webhook_url(url: str) -> None:
    """Keep the webhook's URL out of every log: it carries a token (Slack's is in its path).

    With debug logging (``-v``) urllib3 logs each request line, the path and query included:
    both, and the whole URL, are registered with the log redaction the clients use for keys.
    """
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    for secret in (url, target):
        # A bare "/" or "/hook" is no secret, and redacting it would blank unrelated lines.
        if len(secret) >= _MIN_PROTECTED_CHARS:
            register_secret(secret)
    install_log_redaction(root_handlers=False)


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
    return max(severities, key=lambda s: SEVERITY_RANK.get(s, 0))  # type: ignore[return-value]


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


def first_line(text: str | None, limit: int = 300) -> str:
    lines = (text or "").strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def health_alert(
    site: str,
    probe_id: int,
    *,
    up: bool,
    probe: str,
    detail: str,
    since: datetime | None = None,
    failures: int | None = None,
) -> Alert:
    """The alert of a site going down (ERROR) or coming back (INFO, created resolved).

    ``since`` is when the streak of failed probes began, ``failures`` how many it holds.
    """
    streak = ""
    if since is not None:
        count = f", {failures} failed probes in a row" if failures else ""
        streak = f" since {since.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC{count}"
    if up:
        was = f" (it was down{streak})" if streak else ""
        message = f"site {site} answers its export API again{was}"
    else:
        message = f"site {site} is down{streak}: {probe}" + (
            f" ({first_line(detail)})" if detail else ""
        )
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
