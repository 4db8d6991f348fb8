"""The client of one Template site's export API, and the one way to build it.

:class:`TemplateClient` composes the pieces of this package: the :class:`~.transport.Transport`
(session, timeouts, retries, decoding), the envelopes (:mod:`.envelopes`) and the pagination
(:mod:`.pages`). :func:`client_for` builds a client for a registered site with named
:class:`ClientSettings` (the sync's, the probe's, the changes sensor's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from template_pipeline import __version__
from template_pipeline.domain.entities import LIST_ENTITIES
from template_pipeline.domain.sites import Site
from template_pipeline.source import envelopes
from template_pipeline.source.describe import display_url
from template_pipeline.source.pages import Page, iter_pages, prefetched
from template_pipeline.source.transport import RetryPolicy, Transport

LIST_ENDPOINTS: tuple[str, ...] = tuple(e.endpoint for e in LIST_ENTITIES if e.endpoint)
ENDPOINTS: tuple[str, ...] = ("settings", *LIST_ENDPOINTS, "stats", "full")
DEFAULT_USER_AGENT = f"template-pipeline/{__version__}"


@dataclass(frozen=True)
class ClientSettings:
    """Page size, timeouts and retry budget of a client."""

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


SYNC_SETTINGS = ClientSettings()
# One stats request without retries and with short timeouts: the health probe and the changes
# sensor must answer quickly whatever the sites do.
PROBE_SETTINGS = ClientSettings(max_retries=0, connect_timeout=5.0, read_timeout=15.0)
SENSOR_SETTINGS = ClientSettings(max_retries=0, connect_timeout=3.0, read_timeout=10.0)


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
        _check_arguments(site, base_url, api_key, page_size, max_pages, max_retries)
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
        self.max_pages = max_pages
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.max_retries = max_retries
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self._transport = Transport(
            site=site,
            base_url=self.base_url,
            api_key=api_key.strip(),
            api_key_env=api_key_env,
            timeout=self.timeout,
            retry=RetryPolicy(max_retries, backoff_factor, max_backoff, max_retry_after),
            user_agent=self.user_agent,
            sleep=sleep,
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

    def iter_pages(self, endpoint: str) -> Iterator[Page]:
        """The records of a list endpoint, page by page (one request per ``next()``)."""
        self._check_list_endpoint(endpoint)
        return self._pages(endpoint)

    def iter_pages_prefetched(self, endpoint: str, depth: int = 2) -> Iterator[Page]:
        """:meth:`iter_pages`, fetched up to ``depth`` pages ahead in a background thread."""
        self._check_list_endpoint(endpoint)
        if depth < 1:
            raise ValueError(f"site {self.site!r}: prefetch depth must be at least 1, got {depth}")
        return prefetched(lambda: self._pages(endpoint), depth, site=self.site, endpoint=endpoint)

    def fetch_list(self, endpoint: str) -> list[dict[str, Any]]:
        """Every record of a list endpoint (prefer :meth:`iter_pages` for large sites)."""
        records: list[dict[str, Any]] = []
        for page in self.iter_pages(endpoint):
            records.extend(page)
        return records

    def fetch_settings(self) -> list[dict[str, Any]]:
        """The site's settings as ``[{"key": ..., "value": ...}]`` (secrets arrive masked)."""
        payload = self._transport.get_json("settings")
        return envelopes.settings_from(payload, "settings", self._transport.error)

    def fetch_stats(self) -> dict[str, Any]:
        """The site's statistics mapping."""
        return envelopes.stats_from(self._transport.get_json("stats"), self._transport.error)

    def fetch_full(self) -> dict[str, list[dict[str, Any]]]:
        """Every table in one document, keyed by entity name."""
        return envelopes.full_from(self._transport.get_json("full"), self._transport.error)

    def probe(self) -> float:
        """One ``stats`` request without retries: the latency in seconds, or a typed error."""
        started = time.perf_counter()
        payload = self._transport.get_json("stats", max_retries=0)
        latency = time.perf_counter() - started
        envelopes.stats_from(payload, self._transport.error)
        return latency

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        return self._transport.retry_delay(attempt, retry_after)

    def _check_list_endpoint(self, endpoint: str) -> None:
        if endpoint not in LIST_ENDPOINTS:
            raise ValueError(
                f"site {self.site!r}: {endpoint!r} is not a paginated list endpoint "
                f"(one of {', '.join(LIST_ENDPOINTS)})"
            )

    def _pages(self, endpoint: str) -> Iterator[Page]:
        def fetch_page(offset: int) -> Page:
            payload = self._transport.get_json(
                endpoint, params={"limit": self.page_size, "offset": offset}
            )
            return envelopes.records_from(payload, endpoint, self._transport.error, offset)

        return iter_pages(fetch_page, site=self.site, endpoint=endpoint, max_pages=self.max_pages)


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


def client_for(
    site: Site, settings: ClientSettings = SYNC_SETTINGS, **overrides: Any
) -> TemplateClient:
    """A new client for a registered ``site``; use it as a context manager so it closes."""
    if overrides:
        settings = replace(settings, **overrides)
    return TemplateClient(
        site=site.key,
        base_url=site.base_url,
        api_key=site.api_key,
        api_key_env=site.api_key_env,
        **asdict(settings),
    )
