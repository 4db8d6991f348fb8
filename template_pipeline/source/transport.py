"""HTTP for one site: a keep-alive session, retries within deadlines, bodies within limits.

One :class:`Transport` talks to one site. Every attempt is bounded: connect and read timeouts,
each shortened to what the tightest deadline leaves (request, endpoint, site: :mod:`.deadline`),
redirects followed by hand (:mod:`.redirects`), the body read in chunks within its size limit
(:mod:`.body`) and parsed (:mod:`.decoding`). Connection failures, timeouts, 408, 429, 5xx and
bodies cut short are retried with exponential backoff and full jitter, honouring
``Retry-After``, as long as the deadlines allow; a ``Retry-After`` beyond ``max_retry_after``,
or beyond what the deadlines leave, fails at once, saying what the server asked.

The API key travels only in the ``X-API-Key`` header of requests to the site's own origin. It is
never logged and never part of an error, in any form a server may echo it (:mod:`.redaction`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin

import requests

from template_pipeline.domain import config
from template_pipeline.source import redaction
from template_pipeline.source.answers import document_of, html_error, looks_like_html
from template_pipeline.source.attempts import (
    Failed,
    Failure,
    Limits,
    RetryPolicy,
    final_error,
    parse_retry_after,
    read_failure,
)
from template_pipeline.source.body import ACCEPT_ENCODING, BodyDeadline, BodyTooLarge, read_body
from template_pipeline.source.deadline import Budget, Clock, Deadline
from template_pipeline.source.decoding import Document
from template_pipeline.source.describe import (
    describe_cause,
    display_url,
    server_message,
    status_text,
)
from template_pipeline.source.errors import (
    TemplateConnectionError,
    TemplateDeadlineError,
    TemplateError,
    TemplateResponseError,
    TemplateTooLargeError,
)
from template_pipeline.source.redirects import API_KEY_HEADER, RedirectError, get_following

logger = logging.getLogger(__name__)

__all__ = ["API_KEY_HEADER", "Limits", "RetryPolicy", "Transport", "parse_retry_after"]

_RETRYABLE_STATUSES = frozenset({408, 429})
# Failures of the network, not of the site's answer: worth another attempt.
_TRANSIENT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)
# An error answer is read only for its message.
ERROR_BODY_BYTES = 64 * 1024


class _Expired(Exception):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__(deadline.scope)
        self.deadline = deadline


class Transport:
    """GET requests to one site's export API, decoded into documents or typed errors."""

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
        limits: Limits | None = None,
        site_deadline: Deadline | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.site = site
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retry = retry
        self.limits = limits or Limits()
        self.site_deadline = site_deadline
        self.clock = clock
        self._api_key = api_key
        self._redactor = redaction.Redactor([api_key])
        redaction.register_secret(api_key)
        redaction.install_log_redaction(root_handlers=False)
        self._sleep = sleep
        self._random = random.Random()
        self._session = requests.Session()
        # With trust_env, requests re-reads the proxy variables and ~/.netrc on every request
        # (about a tenth of the client's time on a large site). Every request of this client
        # goes to one origin, so the environment's proxies (NO_PROXY included) and CA bundle are
        # read once, here. netrc is deliberately not consulted: the API key is the credential.
        self._session.trust_env = False
        self._session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        ca_bundle = config.value(config.REQUESTS_CA_BUNDLE) or config.value(config.CURL_CA_BUNDLE)
        if ca_bundle:
            self._session.verify = ca_bundle
        self._session.headers.update(
            {
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
                "User-Agent": user_agent,
            }
        )

    def close(self) -> None:
        self._session.close()

    def redact(self, text: str) -> str:
        return self._redactor.redact(text)

    def error(
        self,
        endpoint: str,
        message: str,
        cls: type[TemplateError] = TemplateResponseError,
        status: int | None = None,
        retryable: bool | None = None,
    ) -> TemplateError:
        return cls(
            self.redact(message),
            site=self.site,
            endpoint=endpoint,
            status=status,
            retryable=retryable,
        )

    def url(self, endpoint: str) -> str:
        return urljoin(self.base_url, f"api/export/{endpoint}")

    def get_json(
        self, endpoint: str, params: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """The decoded JSON of ``GET api/export/<endpoint>`` (see :meth:`get_document`)."""
        return self.get_document(endpoint, params, **kwargs).value

    def get_document(
        self,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        *,
        max_retries: int | None = None,
        deadline: Deadline | None = None,
    ) -> Document:
        """The document of ``GET api/export/<endpoint>``, after the retries ``deadline`` allows.

        ``deadline`` is the endpoint's (the caller's); the site deadline applies too.
        """
        url = self.url(endpoint)
        retries = self.retry.max_retries if max_retries is None else max_retries
        attempts = retries + 1
        outer = Budget((deadline, self.site_deadline))
        failure: Failure | None = None
        attempt = 0
        for attempt in range(1, attempts + 1):
            expired = outer.expired()
            if expired is not None:
                raise self.deadline_error(endpoint, expired, f"before attempt {attempt}", failure)
            request = Deadline(self.limits.request_deadline_s, "request", self.clock)
            outcome = self._attempt(endpoint, url, params, outer + request)
            if not isinstance(outcome, Failure):
                return outcome
            failure = outcome
            if not failure.retryable or attempt == attempts:
                break
            delay = self._delay(endpoint, attempt, failure, outer)
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
        raise final_error(
            failure,
            attempt,
            site=self.site,
            endpoint=endpoint,
            where=f"GET {display_url(url)}",
            redactor=self._redactor,
        )

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry.max_retry_after)
        # Full jitter: spreads the retries of many sites hitting one overloaded host.
        # The exponent is bounded so that huge retry counts cannot overflow the float.
        ceiling = min(
            self.retry.max_backoff, self.retry.backoff_factor * 2.0 ** min(attempt - 1, 60)
        )
        return self._random.uniform(0.0, ceiling)

    def _delay(self, endpoint: str, attempt: int, failure: Failure, outer: Budget) -> float:
        """The wait before the next attempt; an error now when the wait cannot be afforded."""
        asked = failure.retry_after
        if asked is not None and asked > self.retry.max_retry_after:
            raise self.error(
                endpoint,
                f"{failure.reason}: the site asks to wait {asked:g} s before another attempt "
                f"(Retry-After), more than max_retry_after ({self.retry.max_retry_after:g} s): "
                "not retrying",
                failure.kind,
                failure.status,
                retryable=False,
            )
        delay = self.retry_delay(attempt, asked)
        if delay >= outer.remaining():
            deadline = outer.tightest()
            assert deadline is not None
            what = "the wait the site asks for (Retry-After)" if asked is not None else "backoff"
            raise self.deadline_error(
                endpoint,
                deadline,
                f"too soon for retry {attempt}: {max(outer.remaining(), 0):.1f} s were left, "
                f"less than the {delay:.1f} s of {what}",
                failure,
            )
        return delay

    def deadline_error(
        self, endpoint: str, deadline: Deadline, doing: str, failure: Failure | None = None
    ) -> TemplateDeadlineError:
        elapsed = deadline.elapsed()
        message = f"gave up after {elapsed:.1f} s: {deadline.describe()} passed {doing}"
        if deadline.remaining() > 0:
            message = f"gave up after {elapsed:.1f} s, within {deadline.describe()}: {doing}"
        if failure is not None:
            message += f"; last failure: {failure.reason}"
        error = TemplateDeadlineError(
            self.redact(message),
            site=self.site,
            endpoint=endpoint,
            status=failure.status if failure else None,
        )
        error.scope, error.elapsed, error.limit = deadline.scope, elapsed, deadline.seconds or 0.0
        return error

    def _attempt(
        self, endpoint: str, url: str, params: Mapping[str, Any] | None, budget: Budget
    ) -> Document | Failure:
        """One request: the document, or the :class:`Failure` to retry or raise."""
        started = self.clock()

        def before_hop() -> None:
            expired = budget.expired()
            if expired is not None:
                raise _Expired(expired)

        connect, read = self.timeout
        try:
            response, history = get_following(
                self._session,
                url,
                params,
                api_key=self._api_key,
                timeout=lambda: (budget.bound(connect), budget.bound(read)),
                before_hop=before_hop,
            )
        except _Expired as exc:
            raise self.deadline_error(endpoint, exc.deadline, "before the request") from None
        except RedirectError as exc:
            return Failure(TemplateResponseError, str(exc), retryable=False)
        except _TRANSIENT_ERRORS as exc:
            expired = budget.expired()
            if expired is not None:
                raise self.deadline_error(endpoint, expired, "waiting for the answer") from None
            return Failure(TemplateConnectionError, describe_cause(exc), retryable=True, cause=exc)
        except requests.RequestException as exc:
            return Failure(TemplateConnectionError, describe_cause(exc), retryable=False, cause=exc)
        try:
            return self._answer(endpoint, response, history, budget, started, params)
        except Failed as exc:
            return exc.failure
        finally:
            response.close()

    def _answer(
        self,
        endpoint: str,
        response: requests.Response,
        history: list[str],
        budget: Budget,
        started: float,
        params: Mapping[str, Any] | None,
    ) -> Document:
        status = response.status_code
        retryable = status in _RETRYABLE_STATUSES or status >= 500
        if retryable or not 200 <= status < 300 or looks_like_html(response, b""):
            body = self._read(endpoint, response, budget, ERROR_BODY_BYTES)
        else:
            body = self._read(endpoint, response, budget, self.limits.max_response_bytes)
        logger.debug(
            "GET %s%s -> %s in %.3f s (%d bytes)",
            display_url(response.url or ""),
            f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "",
            status,
            self.clock() - started,
            len(body),
        )
        if retryable:
            raise Failed(
                Failure(
                    TemplateResponseError,
                    self.redact(status_text(response) + server_message(response, body)),
                    retryable=True,
                    status=status,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            )
        if 200 <= status < 300 and looks_like_html(response, b""):
            raise html_error(response, body, endpoint=endpoint, error=self.error)
        try:
            return document_of(
                response,
                body,
                endpoint=endpoint,
                history=history,
                error=self.error,
                api_key_env=self.api_key_env,
            )
        except TemplateError as exc:
            if not exc.retryable:
                raise
            raise Failed(Failure(type(exc), exc.message, True, status)) from None

    def _read(
        self, endpoint: str, response: requests.Response, budget: Budget, limit: int
    ) -> bytes:
        truncate = limit == ERROR_BODY_BYTES
        try:
            return read_body(
                response,
                limit=limit,
                budget=budget,
                read_timeout=self.timeout[1],
                truncate=truncate,
            )
        except BodyDeadline as exc:
            raise self.deadline_error(
                endpoint, exc.deadline, f"while reading the body ({exc.received} bytes received)"
            ) from None
        except BodyTooLarge as exc:
            declared = f" (its Content-Length says {exc.declared})" if exc.declared else ""
            raise self.error(
                endpoint,
                f"the response is larger than {exc.limit} bytes after decompression{declared}: "
                "max_response_bytes (TEMPLATE_MAX_RESPONSE_BYTES)",
                TemplateTooLargeError,
                response.status_code,
            ) from None
        except Exception as exc:
            failure = read_failure(exc, response.status_code)
            expired = budget.expired()
            if failure is None:
                raise
            if failure.retryable and expired is not None:
                raise self.deadline_error(endpoint, expired, "while reading the body") from None
            raise Failed(failure) from None
