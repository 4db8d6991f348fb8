"""One attempt's failure, kept until the retries are exhausted; the retry policy and limits.

:func:`read_failure` classifies what can go wrong while a body is read after its headers
arrived (a read timeout, a connection cut, a corrupt or cut compressed stream): the network
ones are worth another attempt, a body we cannot decode is not.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import datetime, timezone

import requests
import urllib3.exceptions

from template_pipeline.source.body import BodyUnreadable
from template_pipeline.source.errors import (
    TemplateConnectionError,
    TemplateError,
    TemplateResponseError,
)
from template_pipeline.source.redaction import Redactor


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Limits:
    """What one attempt may cost: its time, and its body's size after decompression."""

    request_deadline_s: float | None = 60.0
    max_response_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one request is retried."""

    max_retries: int = 5
    backoff_factor: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 60.0


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one attempt failed (``reason`` is already redacted and bounded)."""

    kind: type[TemplateError]
    reason: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None
    cause: BaseException | None = None


class Failed(Exception):
    """Carries a :class:`Failure` out of the helpers of one attempt."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def read_failure(exc: BaseException, status: int) -> Failure | None:
    """The failure of an exception raised while a body was read; None if it is not one."""
    if isinstance(exc, BodyUnreadable):
        return Failure(TemplateResponseError, exc.reason, exc.transient, status)
    if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError, requests.Timeout)):
        reason = "read timeout while reading the body"
    elif isinstance(
        exc, urllib3.exceptions.ProtocolError | requests.exceptions.ChunkedEncodingError
    ):
        reason = f"the body was cut short ({type(exc).__name__})"
    elif isinstance(exc, urllib3.exceptions.HTTPError | requests.RequestException | OSError):
        reason = f"the connection failed while the body was read ({type(exc).__name__})"
    else:
        return None
    return Failure(TemplateResponseError, reason, True, status)


def final_error(
    failure: Failure, attempt: int, *, site: str, endpoint: str, where: str, redactor: Redactor
) -> TemplateError:
    """The error of a request whose last attempt failed with ``failure``."""
    # Raised by the caller outside any except block, so that no exception with the request
    # attached is left as an implicit __context__; the cause is chained only when its text
    # is key-free.
    if failure.kind is TemplateConnectionError:
        what = "could not reach the site"
    else:
        what = "the site kept failing" if failure.retryable else "the request failed"
    tries = f"after {attempt} attempt{'s' if attempt != 1 else ''}"
    error = failure.kind(
        redactor.redact(f"{what} {tries}: {failure.reason} ({where})"),
        site=site,
        endpoint=endpoint,
        status=failure.status,
        attempts=attempt,
        retryable=failure.retryable,
    )
    cause = failure.cause
    if cause is not None and redactor.contains(f"{cause} {cause!r}"):
        cause = None
    error.__cause__ = cause
    error.__suppress_context__ = True
    return error
