"""What a site's final answer means: a JSON document, or a typed error saying what was wrong.

Retryable statuses (408, 429, 5xx) are the transport's business; everything else lands here.
Errors are built through the transport's factory, which names the site and redacts the key;
the texts quoted from the server (its error message, an HTML page's title) are shortened, and
URLs are shown without their query.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import requests

from template_pipeline.source.decoding import Document, JsonProblem, parse
from template_pipeline.source.describe import (
    display_url,
    origin,
    server_message,
    shorten,
    status_text,
)
from template_pipeline.source.errors import (
    TemplateAuthenticationError,
    TemplateError,
    TemplateNotFoundError,
    TemplateResponseError,
    TemplateTooLargeError,
)

_TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)

# (endpoint, message, class, status, retryable) -> the error to raise.
ErrorFactory = Callable[..., TemplateError]


def document_of(
    response: requests.Response,
    body: bytes,
    *,
    endpoint: str,
    history: list[str],
    error: ErrorFactory,
    api_key_env: str | None,
) -> Document:
    """The JSON document of a final (non-retryable-status) answer, or its typed error."""
    status = response.status_code
    where = display_url(response.url or "")
    if status in (401, 403):
        hint = f"check {api_key_env}" if api_key_env else "check the site's API key"
        message = f"{status_text(response)}: the API key was refused ({hint})"
        message += server_message(response, body) + _redirect_hint(response, history)
        raise error(endpoint, message, TemplateAuthenticationError, status)
    if status == 404:
        raise error(
            endpoint,
            f"{status_text(response)} at GET {where}: is base_url right, and does this Template "
            "version serve this export endpoint?" + server_message(response, body),
            TemplateNotFoundError,
            status,
        )
    if not 200 <= status < 300:
        raise error(
            endpoint,
            f"{status_text(response)} at GET {where}" + server_message(response, body),
            TemplateResponseError,
            status,
        )
    return _json_body(response, body, endpoint=endpoint, error=error)


def looks_like_html(response: requests.Response, head: bytes) -> bool:
    content_type = response.headers.get("Content-Type", "")
    return "html" in content_type.lower() or head.lstrip()[:1] == b"<"


def html_error(
    response: requests.Response, head: bytes, *, endpoint: str, error: ErrorFactory
) -> TemplateError:
    """The error of an HTML page served instead of JSON (``head``: its first bytes)."""
    match = _TITLE_RE.search(head[:4096])
    title = ""
    if match:
        title = " ".join(match.group(1).decode("utf-8", "replace").split())
        title = f", page title {shorten(title, 80)!r}"
    return error(
        endpoint,
        f"HTTP {response.status_code} with HTML instead of JSON{title} (a login page, a proxy "
        f"error or a wrong base_url? final URL {display_url(response.url or '')})",
        TemplateResponseError,
        response.status_code,
    )


def _json_body(
    response: requests.Response, body: bytes, *, endpoint: str, error: ErrorFactory
) -> Document:
    status = response.status_code
    content_type = response.headers.get("Content-Type", "")
    if looks_like_html(response, body[:64]):
        raise html_error(response, body, endpoint=endpoint, error=error)
    if not body.strip():
        raise error(endpoint, f"HTTP {status} with an empty body instead of JSON", status=status)
    try:
        return parse(body)
    except JsonProblem as problem:
        if problem.too_deep:
            raise error(endpoint, problem.reason, TemplateTooLargeError, status) from None
        what = "truncated JSON" if problem.truncated else "invalid JSON"
        # A body cut short (a worker killed mid-answer, a proxy timeout) may come whole next
        # time; a body that is not JSON at all will not.
        raise error(
            endpoint,
            f"{what} ({len(body)} bytes, {shorten(content_type, 60) or 'no content type'}): "
            f"{shorten(problem.reason, 120)}",
            TemplateResponseError,
            status,
            retryable=problem.truncated,
        ) from None


def _redirect_hint(response: requests.Response, history: list[str]) -> str:
    if not history:
        return ""
    if origin(history[0]) != origin(response.url or ""):
        return (
            f"; the request was redirected to {display_url(response.url or '')}, another "
            "origin, where the API key is not sent: set base_url to the final address"
        )
    return ""
