"""The Dagster resources: the sites' client, the Dashboard database, check thresholds, alerts.

Every resource field left unset falls back to its environment variable
(:mod:`template_pipeline.domain.config`), then to its documented default, when it is used: the
definitions load with no secret and no database.
"""

# No ``from __future__ import annotations``: Dagster reads the resources' field annotations.
import os
from dataclasses import asdict
from datetime import timedelta

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
from template_pipeline.store import db
from template_pipeline.store.schema_version import require_current

_SYNC = asdict(SYNC_SETTINGS)


class TemplateClientResource(dg.ConfigurableResource):
    """The sites' export API: typed fields, a client per site built at run time."""

    page_size: int = _SYNC["page_size"]
    connect_timeout: float = _SYNC["connect_timeout"]
    read_timeout: float = _SYNC["read_timeout"]
    max_retries: int = _SYNC["max_retries"]
    max_retry_after: float = _SYNC["max_retry_after"]
    max_pages: int = _SYNC["max_pages"]
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
        )

    def get_client(self, site_key: str) -> TemplateClient:
        """A new client for one site; use it as a context manager so its session closes."""
        return client_for(self.registry().get(site_key), self.settings())


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


def _setting(value: float | None, variable: config.Variable, field_name: str) -> float:
    if value is not None:
        return float(value)
    raw = variable.get()
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{variable.name} ({field_name}) must be a number, got {raw!r}") from None


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
    connect_timeout: float = 3.0
    read_timeout: float = 5.0

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
