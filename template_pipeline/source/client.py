"""The HTTP client of the Template export API, and the Dagster resource that builds it.

One :class:`TemplateClient` talks to one site: one keep-alive ``requests`` session, explicit
``(connect, read)`` timeouts on every call, retries with exponential backoff and full jitter for
connection failures, timeouts, 429 and 5xx (honouring ``Retry-After``), and typed errors that name
the site and the endpoint. List endpoints are read as a lazy generator of pages
(:meth:`TemplateClient.iter_pages`) that ends only on an empty page and fails loudly when the
server ignores ``offset``; :meth:`TemplateClient.iter_pages_prefetched` reads ahead in a
background thread so the network overlaps with the consumer's validation and database work.

The API key travels only in the ``X-API-Key`` header of requests to the site's own origin. It is
never logged, never part of an error message or a ``repr``, and never sent on a redirect to
another origin.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import dagster as dg
import requests

from template_pipeline import __version__
from template_pipeline.domain.sites import SITES_FILE_ENV, SiteRegistry, load_registry

try:  # orjson parses large pages several times faster; json is the fallback.
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency of the dev environment
    _orjson = None

logger = logging.getLogger(__name__)

LIST_ENDPOINTS: tuple[str, ...] = ("paintings", "users", "orders", "exhibitions", "custom-requests")
ENDPOINTS: tuple[str, ...] = ("settings", *LIST_ENDPOINTS, "stats", "full")

API_KEY_HEADER = "X-API-Key"
DEFAULT_USER_AGENT = f"template-pipeline/{__version__}"

# Keys under which the named envelope (``{"paintings": [...]}``) carries each endpoint's records.
_NAMED_KEYS: dict[str, tuple[str, ...]] = {
    "settings": ("settings",),
    "paintings": ("paintings",),
    "users": ("users",),
    "orders": ("orders",),
    "exhibitions": ("exhibitions",),
    "custom-requests": ("custom_requests", "custom-requests", "customRequests"),
}
# Tables of the ``full`` document, under the underscored names the rest of the pipeline uses.
FULL_TABLES: dict[str, str] = {
    "settings": "settings",
    "paintings": "paintings",
    "users": "users",
    "orders": "orders",
    "exhibitions": "exhibitions",
    "custom_requests": "custom-requests",
}

_FULL_KEYS = frozenset(key for endpoint in FULL_TABLES.values() for key in _NAMED_KEYS[endpoint])
_RETRYABLE_STATUSES = frozenset({408, 429})
# Failures of the network, not of the site's answer: worth another attempt.
_TRANSIENT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)
_MAX_REDIRECTS = 5
_SERVER_MESSAGE_LIMIT = 200
_TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_REDACTED = "[redacted]"


# --------------------------------------------------------------------------------------------
# Errors


class TemplateError(Exception):
    """A failed call to a site's export API; ``str()`` names the site and the endpoint."""

    def __init__(
        self,
        message: str,
        *,
        site: str,
        endpoint: str,
        status: int | None = None,
        attempts: int | None = None,
    ) -> None:
        self.message = message
        self.site = site
        self.endpoint = endpoint
        self.status = status
        self.attempts = attempts
        super().__init__(f"site {site!r}, endpoint {endpoint!r}: {message}")

    def __reduce__(self):  # keyword-only fields: keep the errors picklable across processes
        return (
            _rebuild_error,
            (type(self), self.message, self.site, self.endpoint, self.status, self.attempts),
        )


def _rebuild_error(cls, message, site, endpoint, status, attempts):
    return cls(message, site=site, endpoint=endpoint, status=status, attempts=attempts)


class TemplateConnectionError(TemplateError):
    """The site could not be reached (refused, reset, DNS, timeout), after the retries."""


class TemplateAuthenticationError(TemplateError):
    """The site refused the API key (HTTP 401/403); never retried."""


class TemplateNotFoundError(TemplateError):
    """The export endpoint does not exist at this base URL (HTTP 404); never retried."""


class TemplateResponseError(TemplateError):
    """The site answered, but not with a usable export document."""


class TemplatePaginationError(TemplateResponseError):
    """Pagination cannot be trusted: the server ignores ``offset``, or the page cap was hit."""


# --------------------------------------------------------------------------------------------
# Session and helpers


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _display_url(url: str) -> str:
    """``url`` without user info, for logs and messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class _ExportSession(requests.Session):
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
            or _origin(previous_url) != _origin(prepared_request.url)
        ):
            prepared_request.headers.pop(API_KEY_HEADER, None)


def _loads(body: bytes) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(body)
        except _orjson.JSONDecodeError:
            pass  # json is more lenient (UTF-16 bodies, huge integers); let it decide
    return json.loads(body)


def _fingerprint(records: list[Any]) -> str:
    if _orjson is not None:
        try:
            encoded = _orjson.dumps(records)
        except TypeError:  # integers beyond 64 bits, which only json produced
            encoded = json.dumps(records, default=str).encode()
    else:
        encoded = json.dumps(records, default=str).encode()
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def _page_identity(records: list[Any]) -> tuple[int, str]:
    """What the repeat check compares: a page's length and its first and last records.

    A server that ignores ``offset`` serves the very same page again, and this catches it;
    hashing every record of every page instead cost about a tenth of the client's time on a
    large site. Two consecutive pages of a real listing never start and end with the same
    records (and a page of identical records repeats either way).
    """
    return len(records), _fingerprint([records[0], records[-1]])


def _parse_retry_after(value: str | None) -> float | None:
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


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, with its article, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _describe_cause(exc: BaseException) -> str:
    """A short, key-free description of a requests exception for messages."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.Timeout):
        return "read timeout"
    text = str(exc)
    lowered = text.lower()
    for needle, label in (
        ("connection refused", "connection refused"),
        ("name or service not known", "DNS lookup failed"),
        ("nodename nor servname", "DNS lookup failed"),
        ("failed to resolve", "DNS lookup failed"),
        ("temporary failure in name resolution", "DNS lookup failed"),
        ("connection reset", "connection reset"),
        ("remotedisconnected", "connection closed by the server"),
        ("remote end closed", "connection closed by the server"),
        ("connection aborted", "connection aborted"),
        ("incompleteread", "response body cut short"),
        ("ssl", "TLS error"),
    ):
        if needle in lowered:
            return f"{label} ({type(exc).__name__})"
    return type(exc).__name__


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why one attempt failed, kept until the retries are exhausted."""

    kind: type[TemplateError]
    reason: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None
    cause: BaseException | None = None


class _PrefetchError:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_PREFETCH_DONE = object()
# How often a blocked prefetch thread or consumer looks at the stop flag / the thread's health.
_PREFETCH_POLL = 0.05


# --------------------------------------------------------------------------------------------
# Client


class TemplateClient:
    """Reads one Template site's export API.

    Not thread-safe: use one client per thread (a live :meth:`iter_pages_prefetched` iterator
    owns the client's session from its background thread until it is exhausted or closed).
    """

    def __init__(
        self,
        *,
        site: str,
        base_url: str,
        api_key: str,
        page_size: int = 1000,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 5,
        backoff_factor: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        max_pages: int = 100_000,
        user_agent: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        api_key_env: str | None = None,
    ) -> None:
        if not site:
            raise ValueError("site must be a non-empty site key")
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"site {site!r}: base_url must be an absolute http(s) URL")
        if not api_key or not api_key.strip():
            raise ValueError(f"site {site!r}: the API key is empty")
        for name, value in (("page_size", page_size), ("max_pages", max_pages)):
            if value < 1:
                raise ValueError(f"site {site!r}: {name} must be at least 1, got {value}")
        if max_retries < 0:
            raise ValueError(f"site {site!r}: max_retries must be >= 0, got {max_retries}")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if value <= 0:
                raise ValueError(f"site {site!r}: {name} must be positive, got {value}")
        for name, value in (
            ("backoff_factor", backoff_factor),
            ("max_backoff", max_backoff),
            ("max_retry_after", max_retry_after),
        ):
            if value < 0:
                raise ValueError(f"site {site!r}: {name} must be >= 0, got {value}")

        self.site = site
        # The trailing slash keeps a path prefix (``/t/site-b/``) when joining endpoint paths.
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.api_key_env = api_key_env
        self.page_size = page_size
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.max_retries = max_retries
        self.backoff_factor = backoff_factor
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.max_pages = max_pages
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self._api_key = api_key.strip()
        self._sleep = sleep
        self._random = random.Random()
        self._session = _ExportSession()
        self._session.max_redirects = _MAX_REDIRECTS
        # With trust_env, requests re-reads the proxy variables and ~/.netrc on every request
        # (about a tenth of the client's time on a large site). Every request of this client
        # goes to one origin, so the environment's proxies (NO_PROXY included) and CA bundle are
        # read once, here. netrc is deliberately not consulted: the API key is the credential.
        self._session.trust_env = False
        self._session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            self._session.verify = ca_bundle
        self._session.headers.update({"Accept": "application/json", "User-Agent": self.user_agent})

    def __repr__(self) -> str:
        return f"TemplateClient(site={self.site!r}, base_url={_display_url(self.base_url)!r})"

    def __enter__(self) -> TemplateClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # -- public reads -------------------------------------------------------------------------

    def iter_pages(self, endpoint: str) -> Iterator[list[dict[str, Any]]]:
        """The records of a list endpoint, page by page (one request per ``next()``).

        The offset advances by the number of records received, because servers cap page sizes
        below the ``limit`` asked for; only an empty page ends the listing.
        """
        self._check_list_endpoint(endpoint)
        return self._pages(endpoint)

    def iter_pages_prefetched(
        self, endpoint: str, depth: int = 2
    ) -> Iterator[list[dict[str, Any]]]:
        """:meth:`iter_pages`, fetched up to ``depth`` pages ahead in a background thread.

        Errors reach the consumer at the position where they happened. Closing the iterator
        (or dropping it) stops the thread once its request in flight, if any, returns.
        """
        self._check_list_endpoint(endpoint)
        if depth < 1:
            raise ValueError(f"site {self.site!r}: prefetch depth must be at least 1, got {depth}")
        return self._prefetched(endpoint, depth)

    def fetch_list(self, endpoint: str) -> list[dict[str, Any]]:
        """Every record of a list endpoint (prefer :meth:`iter_pages` for large sites)."""
        records: list[dict[str, Any]] = []
        for page in self.iter_pages(endpoint):
            records.extend(page)
        return records

    def fetch_settings(self) -> list[dict[str, Any]]:
        """The site's settings as ``[{"key": ..., "value": ...}]`` (secrets arrive masked)."""
        payload = self._request_json("settings")
        return self._settings_from(payload, "settings")

    def fetch_stats(self) -> dict[str, Any]:
        """The site's statistics mapping."""
        return self._stats_from(self._request_json("stats"))

    def fetch_full(self) -> dict[str, list[dict[str, Any]]]:
        """Every table in one document, keyed by underscored table name."""
        return self._full_from(self._request_json("full"))

    def probe(self) -> float:
        """One ``stats`` request without retries: the latency in seconds, or a typed error."""
        started = time.perf_counter()
        payload = self._request_json("stats", max_retries=0)
        latency = time.perf_counter() - started
        self._stats_from(payload)
        return latency

    # -- pagination ---------------------------------------------------------------------------

    def _check_list_endpoint(self, endpoint: str) -> None:
        if endpoint not in LIST_ENDPOINTS:
            raise ValueError(
                f"site {self.site!r}: {endpoint!r} is not a paginated list endpoint "
                f"(one of {', '.join(LIST_ENDPOINTS)})"
            )

    def _pages(self, endpoint: str) -> Iterator[list[dict[str, Any]]]:
        offset = 0
        pages = 0
        previous: tuple[int, str] | None = None
        while True:
            payload = self._request_json(
                endpoint, params={"limit": self.page_size, "offset": offset}
            )
            records = self._records_from(payload, endpoint, offset)
            if not records:
                logger.debug(
                    "site %r, endpoint %r: end after %d page(s), %d record(s)",
                    self.site,
                    endpoint,
                    pages,
                    offset,
                )
                return
            pages += 1
            if pages > self.max_pages:
                raise TemplatePaginationError(
                    f"more than {self.max_pages} pages (max_pages) at offset {offset}; "
                    "stopping instead of paging without end (raise max_pages if the site "
                    "really is that large)",
                    site=self.site,
                    endpoint=endpoint,
                )
            fingerprint = _page_identity(records)
            if fingerprint == previous:
                raise TemplatePaginationError(
                    f"the page at offset {offset} repeats the previous page "
                    f"({len(records)} records): the server ignores offset, so reading on "
                    "would loop forever or duplicate records",
                    site=self.site,
                    endpoint=endpoint,
                )
            previous = fingerprint
            yield records
            offset += len(records)

    def _prefetched(self, endpoint: str, depth: int) -> Iterator[list[dict[str, Any]]]:
        # A generator: nothing starts until the first next(), and its ``finally`` runs on
        # close() or garbage collection, which is what stops the thread.
        buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    buffer.put(item, timeout=_PREFETCH_POLL)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            pages = self._pages(endpoint)
            try:
                for page in pages:
                    if not put(page):
                        return
                put(_PREFETCH_DONE)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(_PrefetchError(exc))
            finally:
                pages.close()

        thread = threading.Thread(
            target=produce, name=f"template-prefetch-{self.site}-{endpoint}", daemon=True
        )
        thread.start()
        try:
            while True:
                try:
                    item = buffer.get(timeout=_PREFETCH_POLL)
                except queue.Empty:
                    if not thread.is_alive() and buffer.empty():
                        raise TemplateResponseError(
                            "the prefetch thread ended without a result",
                            site=self.site,
                            endpoint=endpoint,
                        ) from None
                    continue
                if item is _PREFETCH_DONE:
                    return
                if isinstance(item, _PrefetchError):
                    raise item.error
                yield item
        finally:
            stop.set()
            # Free a producer blocked on a full queue, then wait for it; a request in flight
            # is bounded by the read timeout, so do not hold the consumer for that long.
            while True:
                try:
                    buffer.get_nowait()
                except queue.Empty:
                    break
            thread.join(timeout=1.0)
            if thread.is_alive():
                logger.debug(
                    "site %r, endpoint %r: prefetch thread still finishing a request",
                    self.site,
                    endpoint,
                )

    # -- envelopes ----------------------------------------------------------------------------

    def _error(
        self,
        endpoint: str,
        message: str,
        cls: type[TemplateError] = TemplateResponseError,
        status: int | None = None,
    ) -> TemplateError:
        return cls(self._redact(message), site=self.site, endpoint=endpoint, status=status)

    def _check_success(self, payload: Any, endpoint: str) -> Mapping[str, Any]:
        if not isinstance(payload, Mapping):
            raise self._error(
                endpoint,
                f"unknown envelope: {_json_type(payload)} instead of an object",
            )
        if payload.get("success") is False:
            message = payload.get("error") or payload.get("message") or "no error message"
            raise self._error(endpoint, f"the server reported a failure: {_shorten(str(message))}")
        return payload

    def _unknown_envelope(self, payload: Mapping[str, Any], endpoint: str, expected: str):
        keys = ", ".join(sorted(map(str, payload))) or "none"
        return self._error(endpoint, f"unknown envelope: expected {expected}; keys seen: {keys}")

    def _records_from(
        self, payload: Any, endpoint: str, offset: int | None = None
    ) -> list[dict[str, Any]]:
        payload = self._check_success(payload, endpoint)
        named = [key for key in _NAMED_KEYS[endpoint] if key in payload]
        if "data" in payload:
            records, where = payload["data"], "'data'"
        elif named:
            records, where = payload[named[0]], repr(named[0])
        else:
            raise self._unknown_envelope(
                payload, endpoint, f"'data' or {' / '.join(map(repr, _NAMED_KEYS[endpoint]))}"
            )
        return self._record_list(records, endpoint, where, offset)

    def _record_list(
        self, records: Any, endpoint: str, where: str, offset: int | None = None
    ) -> list[dict[str, Any]]:
        # Reading a malformed page as empty would end the listing early and mark every
        # remaining record as deleted upstream, so anything but a list of objects is an error.
        at = "" if offset is None else f" at offset {offset}"
        if not isinstance(records, list):
            raise self._error(endpoint, f"{where}{at} is {_json_type(records)}, not an array")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise self._error(
                    endpoint,
                    f"record #{index}{at} in {where} is {_json_type(record)}, not an object",
                )
        return records

    def _settings_from(self, payload: Any, endpoint: str) -> list[dict[str, Any]]:
        payload = self._check_success(payload, endpoint)
        if "data" in payload:
            data, where = payload["data"], "'data'"
        elif "settings" in payload:
            data, where = payload["settings"], "'settings'"
        else:
            raise self._unknown_envelope(payload, endpoint, "'data' or 'settings'")
        return self._settings_list(data, endpoint, where)

    def _settings_list(self, data: Any, endpoint: str, where: str) -> list[dict[str, Any]]:
        # Some sites serve settings as a plain mapping; the pipeline reads key/value rows.
        if isinstance(data, Mapping):
            return [{"key": str(key), "value": value} for key, value in data.items()]
        return self._record_list(data, endpoint, f"settings {where}")

    def _stats_from(self, payload: Any) -> dict[str, Any]:
        payload = self._check_success(payload, "stats")
        if "stats" in payload:
            stats, where = payload["stats"], "'stats'"
        elif "data" in payload:
            stats, where = payload["data"], "'data'"
        else:
            raise self._unknown_envelope(payload, "stats", "'stats' or 'data'")
        if not isinstance(stats, dict):
            raise self._error("stats", f"{where} is {_json_type(stats)}, not an object")
        return stats

    def _full_from(self, payload: Any) -> dict[str, list[dict[str, Any]]]:
        payload = self._check_success(payload, "full")
        document: Any
        if "data" in payload:
            document = payload["data"]
            if not isinstance(document, Mapping):
                raise self._error("full", f"'data' is {_json_type(document)}, not an object")
        elif any(key in payload for key in _FULL_KEYS):
            document = payload  # the tables at the top level, without 'data'
        else:
            raise self._unknown_envelope(payload, "full", "'data' holding the tables")
        tables: dict[str, list[dict[str, Any]]] = {}
        missing: list[str] = []
        for table, endpoint in FULL_TABLES.items():
            present = [key for key in _NAMED_KEYS[endpoint] if key in document]
            if not present:
                missing.append(table)
                continue
            value, where = document[present[0]], f"table {present[0]!r}"
            if table == "settings":
                tables[table] = self._settings_list(value, "full", where)
            else:
                tables[table] = self._record_list(value, "full", where)
        if missing:
            # A missing table read as empty would mark all its rows deleted upstream.
            keys = ", ".join(sorted(map(str, document))) or "none"
            raise self._error(
                "full", f"the document lacks table(s) {', '.join(missing)}; keys seen: {keys}"
            )
        return tables

    # -- HTTP ---------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, _REDACTED) if self._api_key in text else text

    def _url(self, endpoint: str) -> str:
        return urljoin(self.base_url, f"api/export/{endpoint}")

    def _request_json(
        self,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        *,
        max_retries: int | None = None,
    ) -> Any:
        url = self._url(endpoint)
        retries = self.max_retries if max_retries is None else max_retries
        attempts = retries + 1
        failure: _Failure | None = None
        attempt = 0
        for attempt in range(1, attempts + 1):
            failure = None
            started = time.perf_counter()
            try:
                response = self._session.get(
                    url,
                    params=params,
                    headers={API_KEY_HEADER: self._api_key},
                    timeout=self.timeout,
                )
            except _TRANSIENT_ERRORS as exc:
                failure = _Failure(
                    TemplateConnectionError, _describe_cause(exc), retryable=True, cause=exc
                )
            except requests.TooManyRedirects as exc:
                failure = _Failure(
                    TemplateResponseError,
                    f"more than {_MAX_REDIRECTS} redirects",
                    retryable=False,
                    cause=exc,
                )
            except requests.RequestException as exc:
                failure = _Failure(
                    TemplateConnectionError, _describe_cause(exc), retryable=False, cause=exc
                )
            else:
                latency = time.perf_counter() - started
                logger.debug(
                    "GET %s -> %s in %.3f s (%d bytes)",
                    _display_url(response.url or url),
                    response.status_code,
                    latency,
                    len(response.content),
                )
                status = response.status_code
                if status in _RETRYABLE_STATUSES or status >= 500:
                    failure = _Failure(
                        TemplateResponseError,
                        _status_text(response) + _server_message(response),
                        retryable=True,
                        status=status,
                        retry_after=_parse_retry_after(response.headers.get("Retry-After")),
                    )
                else:
                    return self._decode(endpoint, response)
            if not failure.retryable or attempt == attempts:
                break
            delay = self._retry_delay(attempt, failure.retry_after)
            logger.warning(
                "site %r, endpoint %r: %s; retry %d/%d in %.2f s",
                self.site,
                endpoint,
                self._redact(failure.reason),
                attempt,
                retries,
                delay,
            )
            self._sleep(delay)

        # Raised outside the except blocks so that no exception with the request attached is
        # left as an implicit __context__; the cause is chained only when its text is key-free.
        assert failure is not None
        if failure.kind is TemplateConnectionError:
            what = "could not reach the site"
        else:
            what = "the site kept failing" if failure.retryable else "the request failed"
        tries = f"after {attempt} attempt{'s' if attempt != 1 else ''}"
        error = failure.kind(
            self._redact(f"{what} {tries}: {failure.reason} (GET {_display_url(url)})"),
            site=self.site,
            endpoint=endpoint,
            status=failure.status,
            attempts=attempt,
        )
        cause = failure.cause
        if cause is not None and (self._api_key in str(cause) or self._api_key in repr(cause)):
            cause = None
        raise error from cause

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        # Full jitter: spreads the retries of many sites hitting one overloaded host.
        # The exponent is bounded so that huge retry counts cannot overflow the float.
        ceiling = min(self.max_backoff, self.backoff_factor * 2.0 ** min(attempt - 1, 60))
        return self._random.uniform(0.0, ceiling)

    def _decode(self, endpoint: str, response: requests.Response) -> Any:
        status = response.status_code
        if status in (401, 403):
            hint = f"check {self.api_key_env}" if self.api_key_env else "check the site's API key"
            message = f"{_status_text(response)}: the API key was refused ({hint})"
            message += _server_message(response) + self._redirect_hint(response)
            raise self._error(endpoint, message, TemplateAuthenticationError, status)
        if status == 404:
            raise self._error(
                endpoint,
                f"{_status_text(response)} at GET {_display_url(response.url)}: is base_url "
                "right, and does this Template version serve this export endpoint?"
                + _server_message(response),
                TemplateNotFoundError,
                status,
            )
        if not 200 <= status < 300:
            raise self._error(
                endpoint,
                f"{_status_text(response)} at GET {_display_url(response.url)}"
                + _server_message(response),
                TemplateResponseError,
                status,
            )
        body = response.content
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type.lower() or body.lstrip()[:1] == b"<":
            match = _TITLE_RE.search(body[:4096])
            title = ""
            if match:
                title = " ".join(match.group(1).decode("utf-8", "replace").split())
                title = f", page title {_shorten(title, 80)!r}"
            raise self._error(
                endpoint,
                f"HTTP {status} with HTML instead of JSON{title} (a login page, a proxy error "
                f"or a wrong base_url? final URL {_display_url(response.url)})",
                TemplateResponseError,
                status,
            )
        if not body.strip():
            raise self._error(
                endpoint, f"HTTP {status} with an empty body instead of JSON", status=status
            )
        try:
            return _loads(body)
        except ValueError as exc:  # json and orjson decode errors, UnicodeDecodeError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise self._error(
            endpoint,
            f"invalid or truncated JSON ({len(body)} bytes, {content_type or 'no content type'})"
            f": {_shorten(reason, 120)}",
            TemplateResponseError,
            status,
        )

    def _redirect_hint(self, response: requests.Response) -> str:
        if not response.history:
            return ""
        first = response.history[0].request.url if response.history[0].request else None
        if first and _origin(first) != _origin(response.url):
            return (
                f"; the request was redirected to {_display_url(response.url)}, another origin, "
                "where the API key is not sent: set base_url to the final address"
            )
        return ""


def _status_text(response: requests.Response) -> str:
    reason = response.reason
    if not reason:
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = ""
    return f"HTTP {response.status_code} {reason}".rstrip()


def _shorten(text: str, limit: int = _SERVER_MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _server_message(response: requests.Response) -> str:
    """The server's own error text from a JSON error body, if any."""
    content_type = response.headers.get("Content-Type", "")
    if "json" not in content_type.lower():
        return ""
    try:
        payload = _loads(response.content)
    except ValueError:
        return ""
    if isinstance(payload, Mapping):
        message = payload.get("error") or payload.get("message") or payload.get("detail")
        if isinstance(message, str) and message.strip():
            return f" (server says: {_shorten(message)})"
    return ""


# --------------------------------------------------------------------------------------------
# Dagster resource


class TemplateClientResource(dg.ConfigurableResource):
    """Dagster resource: typed fields, builds a TemplateClient per site at run time."""

    # Each request costs about a millisecond of the client's CPU whatever its size: 1000
    # records a page halve that cost against 500 (a server that caps lower sends short pages).
    page_size: int = 1000
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_retries: int = 5
    max_retry_after: float = 60.0
    max_pages: int = 100_000
    sites_file: str | None = None  # overrides TEMPLATE_SITES_FILE when set

    def registry(self) -> SiteRegistry:
        """The configured sites, read now (API keys come from the environment here only)."""
        if self.sites_file:
            return load_registry({**os.environ, SITES_FILE_ENV: self.sites_file})
        return load_registry()

    def get_client(self, site_key: str) -> TemplateClient:
        """A new client for one site; use it as a context manager so its session closes."""
        site = self.registry().get(site_key)
        return TemplateClient(
            site=site.key,
            base_url=site.base_url,
            api_key=site.api_key,
            api_key_env=site.api_key_env,
            page_size=self.page_size,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_retries=self.max_retries,
            max_retry_after=self.max_retry_after,
            max_pages=self.max_pages,
        )
