"""Key-free, bounded descriptions of URLs, responses and failures, for errors and logs.

Whatever a server sends (an error body, a page title, a redirect target) is shortened here and
never copied into a message unbounded; a URL's query string (where a server may echo the key)
and user info are never shown at all. Callers redact the API key from the result as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from template_pipeline.source.decoding import loads_or_none

SERVER_MESSAGE_LIMIT = 200
URL_LIMIT = 200


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``: what "the same site" means for the API key.

    An unparsable URL (a bad port in a redirect target) is an origin of its own, equal to none.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return "invalid", url, None
    return scheme, (parts.hostname or "").lower(), port


def display_url(url: str) -> str:
    """``url`` for logs and messages: no user info, no fragment, its query shown as ``?…``.

    A server-provided URL (a redirect target) may carry anything in its query, the key echoed
    back included; the client's own queries are shown from its parameters instead.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "an unparsable URL"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    shown = urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))
    return shorten(shown, URL_LIMIT)


def json_type(value: Any) -> str:
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


def describe_cause(exc: BaseException) -> str:
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


def status_text(response: requests.Response) -> str:
    reason = response.reason
    if not reason:
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = ""
    return f"HTTP {response.status_code} {reason}".rstrip()


def shorten(text: str, limit: int = SERVER_MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def server_message(response: requests.Response, body: bytes) -> str:
    """The server's own error text from a JSON error ``body``, if any (shortened)."""
    content_type = response.headers.get("Content-Type", "")
    if "json" not in content_type.lower():
        return ""
    payload = loads_or_none(body)
    if isinstance(payload, Mapping):
        message = payload.get("error") or payload.get("message") or payload.get("detail")
        if isinstance(message, str) and message.strip():
            return f" (server says: {shorten(message)})"
    return ""
