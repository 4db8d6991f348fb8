"""Following redirects by hand: the key stays on the site's origin, 3xx bodies are never read.

requests would follow redirects itself, but it reads (and inflates) every 3xx body to free the
connection, and knows nothing of the ``X-API-Key`` header. Here each hop is its own request,
bounded by the caller's timeouts and deadlines; the key is sent only while the target keeps the
origin (scheme, host, port) of the previous request, and never again once dropped; the 3xx
response is closed unread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from template_pipeline.source.describe import origin

API_KEY_HEADER = "X-API-Key"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


class RedirectError(Exception):
    """A redirect the client will not follow (too many, or not to an http(s) URL)."""


def get_following(
    session: requests.Session,
    url: str,
    params: Mapping[str, Any] | None,
    *,
    api_key: str,
    timeout: Callable[[], tuple[float, float]],
    before_hop: Callable[[], None],
) -> tuple[requests.Response, list[str]]:
    """The final response of ``GET url`` (its body unread) and the URLs redirected from.

    ``timeout()`` gives each hop's (connect, read) timeouts and ``before_hop()`` runs before
    each request (where the caller checks its deadlines).
    """
    headers = {API_KEY_HEADER: api_key}
    history: list[str] = []
    current, query = url, params
    for _ in range(MAX_REDIRECTS + 1):
        before_hop()
        response = session.get(
            current,
            params=query,
            headers=headers,
            timeout=timeout(),
            stream=True,
            allow_redirects=False,
        )
        location = response.headers.get("Location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            return response, history
        response.close()
        requested = response.url or current
        target = urljoin(requested, location.strip())
        if urlsplit(target).scheme.lower() not in ("http", "https"):
            raise RedirectError("redirected to a URL that is not http(s)")
        if headers and origin(target) != origin(requested):
            headers = {}  # another origin: the key stays behind, for good
        history.append(requested)
        current, query = target, None  # the target carries its own query
    raise RedirectError(f"more than {MAX_REDIRECTS} redirects")
