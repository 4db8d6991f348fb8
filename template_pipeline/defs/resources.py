"""The Dagster resources: the sites' client, the Dashboard database, check thresholds, alerts.

Every resource field left unset falls back to its environment variable
(:mod:`template_pipeline.domain.config`), then to its documented default, when it is used: the
definitions load with no secret and no database.
"""

# No ``from __future__ import annotations``: Dagster reads the resources' field annotations.
import os
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from template_pipeline.defs.alerts.sinks import Alert, AlertLog, Delivery, deliver
from template_pipeline.domain import config
from template_pipeline.domain.sites import SITES_FILE_ENV, SiteRegistry, load_registry
from template_pipeline.domain.vocabulary import Severity
from template_pipeline.source.client import (
    SYNC_SETTINGS,
    ClientSettings,
    TemplateClient,
    client_for,
)
from template_pipeline.source.deadline import Deadline
from template_pipeline.store import db
from template_pipeline.store.schema_version import require_current

_SYNC = asdict(SYNC_SETTINGS)


def _setting(value: float | None, variable: config.Variable, field_name: str) -> float:
    if value is not None:
        return float(value)
    raw = variable.get()
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{variable.name} ({field_name}) must be a number, got {raw!r}") from None


def _limit(description: str, variable: config.Variable) -> Any:
    return Field(
        default=None,
        description=f"{description}; default {variable.name} or {variable.default}.",
    )


class TemplateClientResource(dg.ConfigurableResource):
    """The sites' export API: typed fields, a client per site built at run time.

    The deadlines and size limits left unset come from their environment variables, then from
    their documented defaults (the README's Reliability section).
    """

    page_size: int = _SYNC["page_size"]
    connect_timeout: float = _SYNC["connect_timeout"]
    read_timeout: float = _SYNC["read_timeout"]
    max_retries: int = _SYNC["max_retries"]
    max_retry_after: float = _SYNC["max_retry_after"]
    max_pages: int = _SYNC["max_pages"]
    request_deadline_s: float | None = _limit(
        "Seconds one HTTP attempt may take (connect, headers, whole body)",
        config.REQUEST_DEADLINE_S,
    )
    endpoint_deadline_s: float | None = _limit(
        "Seconds one endpoint may take (every page, retry and wait)", config.ENDPOINT_DEADLINE_S
    )
    site_deadline_s: float | None = _limit(
        "Seconds one client (one site's sync) may take", config.SITE_DEADLINE_S
    )
    max_response_bytes: int | None = _limit(
        "Largest response body, after decompression", config.MAX_RESPONSE_BYTES
    )
    max_record_bytes: int | None = _limit(
        "Largest record, serialised (a larger one is quarantined)", config.MAX_RECORD_BYTES
    )
    probe_retry_pause_s: float | None = _limit(
        "Pause before a health probe tries a transient failure again",
        config.HEALTH_RETRY_PAUSE_S,
    )
    sites_file: str | None = None  # overrides TEMPLATE_SITES_FILE when set

    def registry(self) -> SiteRegistry:
        """The configured sites, read now (API keys come from the environment here only)."""
        if self.sites_file:
            return load_registry({**os.environ, SITES_FILE_ENV: self.sites_file})
        return load_registry()

    def settings(self) -> ClientSettings:
        return ClientSettings(
            page_size=self.page_size,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_retries=self.max_retries,
            max_retry_after=self.max_retry_after,
            max_pages=self.max_pages,
            request_deadline_s=_setting(
                self.request_deadline_s, config.REQUEST_DEADLINE_S, "request_deadline_s"
            ),
            endpoint_deadline_s=_setting(
                self.endpoint_deadline_s, config.ENDPOINT_DEADLINE_S, "endpoint_deadline_s"
            ),
            site_deadline_s=_setting(
                self.site_deadline_s, config.SITE_DEADLINE_S, "site_deadline_s"
            ),
            max_response_bytes=int(
                _setting(self.max_response_bytes, config.MAX_RESPONSE_BYTES, "max_response_bytes")
            ),
            max_record_bytes=int(
                _setting(self.max_record_bytes, config.MAX_RECORD_BYTES, "max_record_bytes")
            ),
        )

    def probe_retry_pause(self) -> float:
        return _setting(
            self.probe_retry_pause_s, config.HEALTH_RETRY_PAUSE_S, "probe_retry_pause_s"
        )

    def get_client(self, site_key: str, site_deadline: Deadline | None = None) -> TemplateClient:
        """A new client for one site; use it as a context manager so its session closes.

        ``site_deadline``: one deadline shared by the clients of one site's sync (without it,
        the client's ``site_deadline_s`` starts now).
        """
        return client_for(
            self.registry().get(site_key), self.settings(), site_deadline=site_deadline
        )


class DashboardDatabase(dg.ConfigurableResource):
    """The Dashboard's PostgreSQL, as read by checks, sensors, alerts and the health job."""

    database_url: str = Field(
        description="SQLAlchemy URL of the Dashboard's PostgreSQL (DASHBOARD_DATABASE_URL)."
    )

    def engine(self) -> sa.Engine:
        """The pooled engine of the database, once its schema is known to be this release's.

        Raises :class:`~template_pipeline.store.schema_version.SchemaBehindError` (run
        ``template-pipeline migrate``) for a database whose schema is behind.
        """
        require_current(self.database_url)
        return db.get_engine(self.database_url)


class TemplateCheckSettings(dg.ConfigurableResource):
    """Thresholds of the checks; unset fields come from the environment, then the defaults."""

    max_reject_rate: float | None = Field(
        default=None,
        description=(
            "Reject rate (0-1) above which reject_rate fails with ERROR and blocks; default "
            f"{config.MAX_REJECT_RATE.name} or {config.MAX_REJECT_RATE.default}."
        ),
    )
    freshness_hours: float | None = Field(
        default=None,
        description=(
            f"Hours after which a site's data is stale; default {config.FRESHNESS_HOURS.name} "
            f"or {config.FRESHNESS_HOURS.default}."
        ),
    )
    min_rejects_for_error: int | None = Field(
        default=None,
        description=(
            "reject_rate fails with ERROR only from this many rejected records on, so one bad "
            f"record in a small site is a warning; default {config.MIN_REJECTS_FOR_ERROR.name} "
            f"or {config.MIN_REJECTS_FOR_ERROR.default}."
        ),
    )
    max_listed: int = Field(default=10, description="How many offending ids a check lists.")

    def reject_rate_threshold(self) -> float:
        value = _setting(self.max_reject_rate, config.MAX_REJECT_RATE, "max_reject_rate")
        if not 0 <= value <= 1:
            raise ValueError(
                f"max_reject_rate ({config.MAX_REJECT_RATE.name}) is a share between 0 and 1 "
                f"(0.05 = 5 %), got {value:g}"
            )
        return value

    def min_rejects(self) -> int:
        variable = config.MIN_REJECTS_FOR_ERROR
        value = _setting(self.min_rejects_for_error, variable, "min_rejects_for_error")
        if value < 1 or value != int(value):
            raise ValueError(
                f"min_rejects_for_error ({variable.name}) must be a whole number >= 1, "
                f"got {value:g}"
            )
        return int(value)

    def freshness_window(self) -> timedelta:
        hours = _setting(self.freshness_hours, config.FRESHNESS_HOURS, "freshness_hours")
        if hours <= 0:
            raise ValueError(
                f"freshness_hours ({config.FRESHNESS_HOURS.name}) must be positive, got {hours:g}"
            )
        return timedelta(hours=hours)


class AlertSinks(dg.ConfigurableResource):
    """Where alerts go besides the Dagster log; unset fields come from the environment."""

    webhook_url: str | None = Field(
        default=None,
        description=f"Slack-compatible incoming webhook; default {config.ALERT_WEBHOOK_URL.name}.",
    )
    min_check_severity: str | None = Field(
        default=None,
        description=(
            "WARN or ERROR: failed checks below it are not alerted; default "
            f"{config.ALERT_MIN_SEVERITY.name} or {config.ALERT_MIN_SEVERITY.default}."
        ),
    )
    health_failures_before_alert: int | None = Field(
        default=None,
        description=(
            "Consecutive failed health probes before a site-down alert; default "
            f"{config.HEALTH_FAILURES_BEFORE_ALERT.name} or "
            f"{config.HEALTH_FAILURES_BEFORE_ALERT.default}."
        ),
    )
    connect_timeout: float = 3.0
    read_timeout: float = 5.0

    def failures_before_alert(self) -> int:
        variable = config.HEALTH_FAILURES_BEFORE_ALERT
        value = _setting(self.health_failures_before_alert, variable, "failures_before_alert")
        if value < 1 or value != int(value):
            raise ValueError(f"{variable.name} must be a whole number >= 1, got {value:g}")
        return int(value)

    def resolved_webhook_url(self) -> str | None:
        url = (self.webhook_url or config.ALERT_WEBHOOK_URL.get() or "").strip()
        return url or None

    def check_severity_floor(self) -> Severity:
        raw = (self.min_check_severity or config.ALERT_MIN_SEVERITY.get() or "").strip()
        value = raw.upper()
        if value not in ("WARN", "ERROR"):
            raise ValueError(f"{config.ALERT_MIN_SEVERITY.name} must be WARN or ERROR, got {raw!r}")
        return value  # type: ignore[return-value]

    def deliver(self, alert: Alert, *, engine: sa.Engine | None, log: AlertLog) -> Delivery:
        return deliver(
            alert,
            engine=engine,
            webhook_url=self.resolved_webhook_url(),
            log=log,
            timeout=(self.connect_timeout, self.read_timeout),
        )


class TemplateSyncSettings(dg.ConfigurableResource):
    """How a run syncs its sites; unset fields come from the environment, then the defaults."""

    sync_workers: int | None = Field(
        default=None,
        description=f"Sites synced side by side in one run (threads: network and database "
        f"bound); default {config.SYNC_WORKERS.name} or {config.SYNC_WORKERS.default}.",
    )
    full_export_records: int | None = Field(
        default=None,
        description="A site serving at most this many records is read through its full export "
        f"(one request); default {config.FULL_EXPORT_MAX_RECORDS.name} or "
        f"{config.FULL_EXPORT_MAX_RECORDS.default}.",
    )
    lock_wait_s: float | None = Field(
        default=None,
        description="How long a run waits for a site another run is writing before failing it; "
        f"default {config.SITE_LOCK_WAIT_S.name} or {config.SITE_LOCK_WAIT_S.default}.",
    )

    @property
    def workers(self) -> int:
        return max(1, int(_setting(self.sync_workers, config.SYNC_WORKERS, "sync_workers")))

    @property
    def full_export_max_records(self) -> int:
        value = _setting(self.full_export_records, config.FULL_EXPORT_MAX_RECORDS, "full_export")
        return int(value)

    @property
    def site_lock_wait_s(self) -> float:
        return _setting(self.lock_wait_s, config.SITE_LOCK_WAIT_S, "lock_wait_s")
