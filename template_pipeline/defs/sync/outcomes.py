"""What became of a site's sync, entity by entity, and why in plain words when it failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg
import psycopg
import sqlalchemy as sa

from template_pipeline.domain.sites import SiteConfigError
from template_pipeline.domain.vocabulary import FailureKind
from template_pipeline.source import errors as source_errors
from template_pipeline.store.locks import SiteBusyError
from template_pipeline.store.results import MassDeleteRefusedError, SyncResult

_MAX_REASON_CHARS = 600


@dataclass
class Failure:
    """Why something could not be synced: a kind, a sentence, and whether trying again helps."""

    kind: FailureKind
    reason: str
    retryable: bool
    # Whether the rest of the site is lost too (a refused key fails every endpoint alike).
    site_wide: bool = False


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` an exception stands for (never its class name alone)."""
    reason = _reason(exc)
    if isinstance(exc, SiteConfigError):
        return Failure("config", reason, retryable=False, site_wide=True)
    if isinstance(exc, source_errors.TemplateAuthenticationError):
        return Failure("auth", reason, retryable=False, site_wide=True)
    if isinstance(exc, source_errors.TemplateConnectionError):
        # The client has retried the connection with backoff already: a site that is down
        # would only hold the batch longer. The next scheduled sync tries again.
        return Failure("unreachable", reason, retryable=False, site_wide=True)
    if isinstance(exc, source_errors.TemplateNotFoundError):
        return Failure("not found", reason, retryable=False)
    if isinstance(exc, source_errors.TemplateDeadlineError):
        # The site's own deadline leaves nothing of the site to read; an endpoint's or a
        # request's fails that entity. Never retried: the time is already spent.
        return Failure("deadline", reason, retryable=False, site_wide=exc.scope == "site")
    if isinstance(exc, source_errors.TemplateError):
        # The client decided (and already retried what heals by itself).
        return Failure("bad response", reason, retryable=exc.retryable)
    if isinstance(exc, MassDeleteRefusedError):
        return Failure("refused", reason, retryable=False)
    if isinstance(exc, SiteBusyError):
        return Failure("busy", reason, retryable=True, site_wide=True)
    if isinstance(exc, (psycopg.Error, sa.exc.DBAPIError, sa.exc.OperationalError)):
        return Failure("database", reason, retryable=True)
    if isinstance(exc, ValueError):
        return Failure("bad data", reason, retryable=False)
    return Failure("internal", reason, retryable=False)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "message", None) if isinstance(exc, source_errors.TemplateError) else None
    if text and isinstance(exc, source_errors.TemplateError):
        text = f"{exc.endpoint}: {text}"
    elif isinstance(exc, (psycopg.Error, sa.exc.DBAPIError)):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        text = f"database error: {first}"
    else:
        text = str(exc).strip() or type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"


@dataclass
class EntityOutcome:
    """One entity of one site: written (``result``), failed (``failure``) or not attempted."""

    entity: str
    result: SyncResult | None = None
    failure: Failure | None = None
    skipped: str | None = None  # why it was not synced (upstream failed, a blocking check)
    blocked_by_check: bool = False  # skipped because a blocking check upstream failed
    refusal: MassDeleteRefusedError | None = None
    stats_row: dict[str, Any] | None = None  # the stats entity's row, for its metadata

    @property
    def succeeded(self) -> bool:
        return self.result is not None and self.result.status == "success"


@dataclass
class CheckOutcome:
    entity: str
    check: str
    result: dg.AssetCheckResult
    blocking: bool

    @property
    def blocks(self) -> bool:
        """A blocking check failed with ERROR: downstream entities of the site stay as they were."""
        return (
            self.blocking
            and not self.result.passed
            and self.result.severity == dg.AssetCheckSeverity.ERROR
        )


@dataclass
class SiteReport:
    """Everything a site's sync did, for the events, the CLI summary and the alerts."""

    site: str
    entities: dict[str, EntityOutcome] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    fetch_mode: str = "endpoints"
    duration_s: float = 0.0
    started_at: datetime | None = None
    attempts: int = 1
    evaluated: set[str] = field(default_factory=set)  # entities whose checks were evaluated

    def outcome(self, entity: str) -> EntityOutcome:
        return self.entities.setdefault(entity, EntityOutcome(entity))

    @property
    def failures(self) -> dict[str, Failure]:
        return {name: o.failure for name, o in self.entities.items() if o.failure is not None}

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def retryable(self) -> bool:
        return self.failed and all(f.retryable for f in self.failures.values())

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [check for check in self.checks if check.blocks]

    def reason(self) -> str:
        """One sentence: the first failure, else the first failed blocking check, else ''."""
        for failure in self.failures.values():
            return failure.reason
        for check in self.failed_checks:
            return check.result.description or f"{check.entity}: {check.check} failed"
        return ""

    def kind(self) -> str | None:
        for failure in self.failures.values():
            return failure.kind
        return "check" if self.failed_checks else None
