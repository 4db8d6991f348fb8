"""The client of one Template site's export API, and the one way to build it.

:class:`TemplateClient` composes the pieces of this package: the :class:`~.transport.Transport`
(session, timeouts, retries, deadlines, size limits, decoding), the envelopes
(:mod:`.envelopes`), the poison-record marking (:mod:`.poison`) and the pagination
(:mod:`.pages`). :func:`client_for` builds a client for a registered site with named
:class:`ClientSettings` (the sync's, the probe's, the changes sensor's).

Time is bounded three ways (:mod:`.deadline`): each HTTP attempt by ``request_deadline_s``,
each endpoint (all its pages, retries and waits) by ``endpoint_deadline_s``, and everything the
client does by its site deadline: ``site_deadline_s`` from the client's creation, or a
:class:`~.deadline.Deadline` passed as ``site_deadline`` and shared by the clients of one site.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from template_pipeline import __version__
from template_pipeline.domain.entities import FULL_EXPORT, LIST_ENTITIES, by_endpoint
from template_pipeline.domain.sites import Site
from template_pipeline.source import envelopes
from template_pipeline.source.deadline import Clock, Deadline
from template_pipeline.source.decoding import Document
from template_pipeline.source.describe import display_url
from template_pipeline.source.pages import Page, iter_pages, prefetched
from template_pipeline.source.poison import screened
from template_pipeline.source.transport import Limits, RetryPolicy, Transport

LIST_ENDPOINTS: tuple[str, ...] = tuple(e.endpoint for e in LIST_ENTITIES if e.endpoint)
ENDPOINTS: tuple[str, ...] = ("settings", *LIST_ENDPOINTS, "stats", "full")
DEFAULT_USER_AGENT = f"template-pipeline/{__version__}"


MIB = 1024 * 1024


@dataclass(frozen=True)
class ClientSettings:
    """Page size, timeouts, retry budget, deadlines and size limits of a client."""

    # Each request costs about a millisecond of the client's CPU whatever its size: 1000
    # records a page halve that cost against 500 (a server that caps lower sends short pages).
    page_size: int = 1000
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 60.0
    max_pages: int = 100_000
    # One HTTP attempt (connect, headers, whole body); all of one endpoint; all of one site.
    # The 1M-painting benchmark site syncs in about a minute: these bound hostile sites only.
    request_deadline_s: float = 60.0
    endpoint_deadline_s: float = 600.0
    site_deadline_s: float = 1200.0
    # After decompression. A 1000-record page is about 0.25-0.4 MB; 64 MiB is far beyond any
    # honest page, and small enough for a worker to hold a few of them.
    max_response_bytes: int = 64 * MIB
    # One record, serialised: beyond it the record is quarantined, its page goes on.
    max_record_bytes: int = 1 * MIB


SYNC_SETTINGS = ClientSettings()
# One stats request without retries and with short timeouts: the health probe and the changes
# sensor must answer quickly whatever the sites do (the probe retries once itself, see probe).
PROBE_SETTINGS = ClientSettings(
    max_retries=0,
    connect_timeout=5.0,
    read_timeout=15.0,
    request_deadline_s=20.0,
    endpoint_deadline_s=20.0,
    site_deadline_s=60.0,
)
SENSOR_SETTINGS = ClientSettings(
    max_retries=0,
    connect_timeout=3.0,
    read_timeout=10.0,
    request_deadline_s=15.0,
    endpoint_deadline_s=15.0,
    site_deadline_s=30.0,
)


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
        request_deadline_s: float = SYNC_SETTINGS.request_deadline_s,
        endpoint_deadline_s: float = SYNC_SETTINGS.endpoint_deadline_s,
        site_deadline_s: float = SYNC_SETTINGS.site_deadline_s,
        max_response_bytes: int = SYNC_SETTINGS.max_response_bytes,
        max_record_bytes: int = SYNC_SETTINGS.max_record_bytes,
        site_deadline: Deadline | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        _check_arguments(site, base_url, api_key, page_size, max_pages, max_retries)
        _check_ranges(site, locals())
        self.site = site
        # The trailing slash keeps a path prefix (``/t/site-b/``) when joining endpoint paths.
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.api_key_env = api_key_env
        self.page_size = page_size
        self.max_pages = max_pages
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.max_retries = max_retries
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self.endpoint_deadline_s = float(endpoint_deadline_s)
        self.max_record_bytes = int(max_record_bytes)
        self._clock = clock
        # The site deadline starts now unless the caller shares one between clients of a site.
        self.site_deadline = site_deadline or Deadline(float(site_deadline_s), "site", clock)
        self._transport = Transport(
            site=site,
            base_url=self.base_url,
            api_key=api_key.strip(),
            api_key_env=api_key_env,
            timeout=self.timeout,
            retry=RetryPolicy(max_retries, backoff_factor, max_backoff, max_retry_after),
            user_agent=self.user_agent,
            sleep=sleep,
            limits=Limits(float(request_deadline_s), int(max_response_bytes)),
            site_deadline=self.site_deadline,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"TemplateClient(site={self.site!r}, base_url={display_url(self.base_url)!r})"

    def __enter__(self) -> TemplateClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    # -- reads --------------------------------------------------------------------------------

    def iter_pages(self, endpoint: str, expected_total: int | None = None) -> Iterator[Page]:
        """The records of a list endpoint, page by page (one request per ``next()``).

        ``expected_total``, the count the site's own ``stats`` announce, bounds how many records
        the listing may serve (see :func:`~.pages.expected_bound`). Poison records arrive as
        :class:`~template_pipeline.domain.screening.Quarantined` markers in their place.
        """
        self._check_list_endpoint(endpoint)
        return self._pages(endpoint, expected_total)

    def iter_pages_prefetched(
        self, endpoint: str, depth: int = 2, expected_total: int | None = None
    ) -> Iterator[Page]:
        """:meth:`iter_pages`, fetched up to ``depth`` pages ahead in a background thread."""
        self._check_list_endpoint(endpoint)
        if depth < 1:
            raise ValueError(f"site {self.site!r}: prefetch depth must be at least 1, got {depth}")
        return prefetched(
            lambda: self._pages(endpoint, expected_total), depth, site=self.site, endpoint=endpoint
        )

    def fetch_list(self, endpoint: str, expected_total: int | None = None) -> list[dict[str, Any]]:
        """Every record of a list endpoint (prefer :meth:`iter_pages` for large sites)."""
        records: list[dict[str, Any]] = []
        for page in self.iter_pages(endpoint, expected_total):
            records.extend(page)
        return records

    def fetch_settings(self) -> list[dict[str, Any]]:
        """The site's settings as ``[{"key": ..., "value": ...}]`` (secrets arrive masked)."""
        document = self._get("settings")
        records = envelopes.settings_from(document.value, "settings", self._transport.error)
        return self._screened(records, document, "key")

    def fetch_stats(self) -> dict[str, Any]:
        """The site's statistics mapping."""
        return envelopes.stats_from(self._get("stats").value, self._transport.error)

    def fetch_full(self) -> dict[str, list[dict[str, Any]]]:
        """Every table in one document, keyed by entity name."""
        document = self._get("full")
        tables = envelopes.full_from(document.value, self._transport.error)
        fields = {entity.name: entity.id_field for entity in FULL_EXPORT}
        return {
            name: self._screened(records, document, fields.get(name, "id"))
            for name, records in tables.items()
        }

    def probe(self) -> float:
        """One ``stats`` request without retries: the latency in seconds, or a typed error."""
        started = time.perf_counter()
        payload = self._get("stats", max_retries=0).value
        latency = time.perf_counter() - started
        envelopes.stats_from(payload, self._transport.error)
        return latency

    def start_site_deadline(self, seconds: float | None = None) -> Deadline:
        """Restart the site deadline now (``seconds``: a new length); returns it."""
        length = self.site_deadline.seconds if seconds is None else float(seconds)
        self.site_deadline = Deadline(length, "site", self._clock)
        self._transport.site_deadline = self.site_deadline
        return self.site_deadline

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        return self._transport.retry_delay(attempt, retry_after)

    def _check_list_endpoint(self, endpoint: str) -> None:
        if endpoint not in LIST_ENDPOINTS:
            raise ValueError(
                f"site {self.site!r}: {endpoint!r} is not a paginated list endpoint "
                f"(one of {', '.join(LIST_ENDPOINTS)})"
            )

    def _get(self, endpoint: str, max_retries: int | None = None) -> Document:
        deadline = Deadline(self.endpoint_deadline_s, "endpoint", self._clock)
        return self._transport.get_document(endpoint, max_retries=max_retries, deadline=deadline)

    def _screened(self, records: list[Any], document: Document, id_field: str) -> list[Any]:
        return screened(
            records, document, max_record_bytes=self.max_record_bytes, id_field=id_field
        )

    def _pages(self, endpoint: str, expected_total: int | None) -> Iterator[Page]:
        # A generator: the endpoint deadline starts with the first page, not at the call.
        deadline = Deadline(self.endpoint_deadline_s, "endpoint", self._clock)
        id_field = by_endpoint(endpoint).id_field

        def fetch_page(offset: int) -> Page:
            document = self._transport.get_document(
                endpoint, params={"limit": self.page_size, "offset": offset}, deadline=deadline
            )
            records = envelopes.records_from(
                document.value, endpoint, self._transport.error, offset
            )
            return self._screened(records, document, id_field)

        yield from iter_pages(
            fetch_page,
            site=self.site,
            endpoint=endpoint,
            max_pages=self.max_pages,
            expected_total=expected_total,
            id_field=id_field,
        )


def _check_arguments(
    site: str, base_url: str, api_key: str, page_size: int, max_pages: int, max_retries: int
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


_POSITIVE = (
    "connect_timeout",
    "read_timeout",
    "request_deadline_s",
    "endpoint_deadline_s",
    "site_deadline_s",
    "max_response_bytes",
    "max_record_bytes",
)
_NON_NEGATIVE = ("backoff_factor", "max_backoff", "max_retry_after")


def _check_ranges(site: str, arguments: dict[str, Any]) -> None:
    for name in _POSITIVE:
        if not arguments[name] > 0:
            raise ValueError(f"site {site!r}: {name} must be positive, got {arguments[name]}")
    for name in _NON_NEGATIVE:
        if arguments[name] < 0:
            raise ValueError(f"site {site!r}: {name} must be >= 0, got {arguments[name]}")


def client_for(
    site: Site,
    settings: ClientSettings = SYNC_SETTINGS,
    *,
    site_deadline: Deadline | None = None,
    **overrides: Any,
) -> TemplateClient:
    """A new client for a registered ``site``; use it as a context manager so it closes.

    ``site_deadline``: a deadline shared by the clients of one site (one sync of it); without
    it the client's own ``site_deadline_s`` starts now.
    """
    if overrides:
        settings = replace(settings, **overrides)
    return TemplateClient(
        site=site.key,
        base_url=site.base_url,
        api_key=site.api_key,
        api_key_env=site.api_key_env,
        site_deadline=site_deadline,
        **asdict(settings),
    )
