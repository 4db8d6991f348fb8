"""HTTP for one site: a keep-alive session, retries with backoff, decoding into JSON or an error.

One :class:`Transport` talks to one site: explicit ``(connect, read)`` timeouts on every call,
retries with exponential backoff and full jitter for connection failures, timeouts, 429 and 5xx
(honouring ``Retry-After``), and typed errors that name the site and the endpoint.

The API key travels only in the ``X-API-Key`` header of requests to the site's own origin. It is
never logged, never part of an error message or a ``repr``, and never sent on a redirect to
another origin.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin

import requests

from template_pipeline.domain import config
from template_pipeline.source.describe import (
    describe_cause,
    display_url,
    loads,
    origin,
    server_message,
    shorten,
    status_text,
)
from template_pipeline.source.errors import (
    TemplateAuthenticationError,
    TemplateConnectionError,
    TemplateError,
    TemplateNotFoundError,
    TemplateResponseError,
)

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
_RETRYABLE_STATUSES = frozenset({408, 429})
# Failures of the network, not of the site's answer: worth another attempt.
_TRANSIENT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)
MAX_REDIRECTS = 5
_TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_REDACTED = "[redacted]"


class ExportSession(requests.Session):
    """A session that never carries the API key to another origin on a redirect.

    requests strips ``Authorization`` on cross-host redirects but knows nothing of custom
    headers, so a site redirecting to a CDN or a login service would otherwise receive the key.
    The comparison is by origin (scheme, host, port): even an http -> https upgrade drops it.
    """

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        super().rebuild_auth(prepared_request, response)
        previous_url = response.request.url if response.request is not None else None
        if (
            previous_url is None
            or prepared_request.url is None
            or origin(previous_url) != origin(prepared_request.url)
        ):
            prepared_request.headers.pop(API_KEY_HEADER, None)


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


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why one attempt failed, kept until the retries are exhausted."""

    kind: type[TemplateError]
    reason: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None
    cause: BaseException | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one request is retried."""

    max_retries: int = 5
    backoff_factor: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 60.0


class Transport:
    """GET requests to one site's export API, decoded into JSON or raised as a typed error."""

    def __init__(
        self,
        *,
        site: str,
        base_url: str,
        api_key: str,
        api_key_env: str | None,
        timeout: tuple[float, float],
        retry: RetryPolicy,
        user_agent: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.site = site
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retry = retry
        self._api_key = api_key
        self._sleep = sleep
        self._random = random.Random()
        self._session = ExportSession()
        self._session.max_redirects = MAX_REDIRECTS
        # With trust_env, requests re-reads the proxy variables and ~/.netrc on every request
        # (about a tenth of the client's time on a large site). Every request of this client
        # goes to one origin, so the environment's proxies (NO_PROXY included) and CA bundle are
        # read once, here. netrc is deliberately not consulted: the API key is the credential.
        self._session.trust_env = False
        self._session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        ca_bundle = config.value(config.REQUESTS_CA_BUNDLE) or config.value(config.CURL_CA_BUNDLE)
        if ca_bundle:
            self._session.verify = ca_bundle
        self._session.headers.update({"Accept": "application/json", "User-Agent": user_agent})

    def close(self) -> None:
        self._session.close()

    def redact(self, text: str) -> str:
        return text.replace(self._api_key, _REDACTED) if self._api_key in text else text

    def error(
        self,
        endpoint: str,
        message: str,
        cls: type[TemplateError] = TemplateResponseError,
        status: int | None = None,
    ) -> TemplateError:
        return cls(self.redact(message), site=self.site, endpoint=endpoint, status=status)

    def url(self, endpoint: str) -> str:
        return urljoin(self.base_url, f"api/export/{endpoint}")

    def get_json(
        self,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        *,
        max_retries: int | None = None,
    ) -> Any:
        """The decoded JSON document of ``GET api/export/<endpoint>``, after the retries."""
        url = self.url(endpoint)
        retries = self.retry.max_retries if max_retries is None else max_retries
        attempts = retries + 1
        failure: _Failure | None = None
        attempt = 0
        for attempt in range(1, attempts + 1):
            outcome = self._attempt(endpoint, url, params)
            if not isinstance(outcome, _Failure):
                return outcome
            failure = outcome
            if not failure.retryable or attempt == attempts:
                break
            delay = self.retry_delay(attempt, failure.retry_after)
            logger.warning(
                "site %r, endpoint %r: %s; retry %d/%d in %.2f s",
                self.site,
                endpoint,
                self.redact(failure.reason),
                attempt,
                retries,
                delay,
            )
            self._sleep(delay)
        assert failure is not None
        raise self._final_error(endpoint, url, failure, attempt)

    def _attempt(self, endpoint: str, url: str, params: Mapping[str, Any] | None) -> Any:
        """One request: the decoded document, or the :class:`_Failure` to retry or raise."""
        started = time.perf_counter()
        try:
            response = self._session.get(
                url, params=params, headers={API_KEY_HEADER: self._api_key}, timeout=self.timeout
            )
        except _TRANSIENT_ERRORS as exc:
            return _Failure(TemplateConnectionError, describe_cause(exc), retryable=True, cause=exc)
        except requests.TooManyRedirects as exc:
            return _Failure(
                TemplateResponseError,
                f"more than {MAX_REDIRECTS} redirects",
                retryable=False,
                cause=exc,
            )
        except requests.RequestException as exc:
            return _Failure(
                TemplateConnectionError, describe_cause(exc), retryable=False, cause=exc
            )
        logger.debug(
            "GET %s -> %s in %.3f s (%d bytes)",
            display_url(response.url or url),
            response.status_code,
            time.perf_counter() - started,
            len(response.content),
        )
        status = response.status_code
        if status in _RETRYABLE_STATUSES or status >= 500:
            return _Failure(
                TemplateResponseError,
                status_text(response) + server_message(response),
                retryable=True,
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        return self._decode(endpoint, response)

    def _final_error(
        self, endpoint: str, url: str, failure: _Failure, attempt: int
    ) -> TemplateError:
        # Raised by the caller outside any except block, so that no exception with the request
        # attached is left as an implicit __context__; the cause is chained only when its text
        # is key-free.
        if failure.kind is TemplateConnectionError:
            what = "could not reach the site"
        else:
            what = "the site kept failing" if failure.retryable else "the request failed"
        tries = f"after {attempt} attempt{'s' if attempt != 1 else ''}"
        error = failure.kind(
            self.redact(f"{what} {tries}: {failure.reason} (GET {display_url(url)})"),
            site=self.site,
            endpoint=endpoint,
            status=failure.status,
            attempts=attempt,
        )
        cause = failure.cause
        if cause is not None and (self._api_key in str(cause) or self._api_key in repr(cause)):
            cause = None
        error.__cause__ = cause
        error.__suppress_context__ = True
        return error

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry.max_retry_after)
        # Full jitter: spreads the retries of many sites hitting one overloaded host.
        # The exponent is bounded so that huge retry counts cannot overflow the float.
        ceiling = min(
            self.retry.max_backoff, self.retry.backoff_factor * 2.0 ** min(attempt - 1, 60)
        )
        return self._random.uniform(0.0, ceiling)

    def _decode(self, endpoint: str, response: requests.Response) -> Any:
        status = response.status_code
        if status in (401, 403):
            hint = f"check {self.api_key_env}" if self.api_key_env else "check the site's API key"
            message = f"{status_text(response)}: the API key was refused ({hint})"
            message += server_message(response) + self._redirect_hint(response)
            raise self.error(endpoint, message, TemplateAuthenticationError, status)
        if status == 404:
            raise self.error(
                endpoint,
                f"{status_text(response)} at GET {display_url(response.url)}: is base_url "
                "right, and does this Template version serve this export endpoint?"
                + server_message(response),
                TemplateNotFoundError,
                status,
            )
        if not 200 <= status < 300:
            raise self.error(
                endpoint,
                f"{status_text(response)} at GET {display_url(response.url)}"
                + server_message(response),
                TemplateResponseError,
                status,
            )
        return self._json_body(endpoint, response)

    def _json_body(self, endpoint: str, response: requests.Response) -> Any:
        status = response.status_code
        body = response.content
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type.lower() or body.lstrip()[:1] == b"<":
            match = _TITLE_RE.search(body[:4096])
            title = ""
            if match:
                title = " ".join(match.group(1).decode("utf-8", "replace").split())
                title = f", page title {shorten(title, 80)!r}"
            raise self.error(
                endpoint,
                f"HTTP {status} with HTML instead of JSON{title} (a login page, a proxy error "
                f"or a wrong base_url? final URL {display_url(response.url)})",
                TemplateResponseError,
                status,
            )
        if not body.strip():
            raise self.error(
                endpoint, f"HTTP {status} with an empty body instead of JSON", status=status
            )
        try:
            return loads(body)
        except ValueError as exc:  # json and orjson decode errors, UnicodeDecodeError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise self.error(
            endpoint,
            f"invalid or truncated JSON ({len(body)} bytes, {content_type or 'no content type'})"
            f": {shorten(reason, 120)}",
            TemplateResponseError,
            status,
        )

    def _redirect_hint(self, response: requests.Response) -> str:
        if not response.history:
            return ""
        first = response.history[0].request.url if response.history[0].request else None
        if first and origin(first) != origin(response.url):
            return (
                f"; the request was redirected to {display_url(response.url)}, another origin, "
                "where the API key is not sent: set base_url to the final address"
            )
        return ""
