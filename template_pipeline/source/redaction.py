"""Keeping API keys out of messages and logs, in every form a server can echo them.

A server that echoes the key back (a debug page, a proxy, a redirect to a login page) rarely
echoes it as it was sent: it comes back URL-encoded (``%2B`` or ``%2b``, ``+`` for a space),
form-decoded, JSON-escaped (``\\/`` from PHP's ``json_encode``) or HTML-escaped. A
:class:`Redactor` replaces all of those forms; the transport passes every message through it,
and never copies a server-provided URL's query string into a message in the first place.

The HTTP library logs too: with ``-v``, urllib3 prints each request line, a redirect target's
query included. :func:`register_secret` adds a key to the process-wide registry (each client
does it for its key) and :class:`RedactingFilter` rewrites any log record that carries a
registered secret; :func:`install_log_redaction` attaches it to the project's, urllib3's and
requests' loggers and to the root logger's handlers.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, unquote_plus

REDACTED = "[redacted]"
# What ``describe.shorten`` appends where it cut a server's text.
ELLIPSIS = "…"
# Shorter strings are not redacted: replacing "a" everywhere would make messages unreadable
# (a key that short is refused by nobody, but it is not a secret worth the noise either).
MIN_SECRET_CHARS = 4
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f])([0-9A-Fa-f])")
LOGGERS = ("template_pipeline", "urllib3", "requests")


def _forms(secret: str) -> set[str]:
    """The spellings of ``secret`` a server may send back."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret, safe="/"),
        quote_plus(secret, safe=""),
        unquote(secret),
        unquote_plus(secret),
        html.escape(secret),
    }
    for ascii_only in (True, False):
        escaped = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        forms.update({escaped, escaped.replace("/", "\\/")})
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


def _pattern(form: str) -> str:
    # Percent-escapes match in either case (%2B and %2b); the rest literally.
    parts, last = [], 0
    for match in _PERCENT_RE.finditer(form):
        parts.append(re.escape(form[last : match.start()]))
        high, low = match.groups()
        parts.append(f"%[{high.upper()}{high.lower()}][{low.upper()}{low.lower()}]")
        last = match.end()
    parts.append(re.escape(form[last:]))
    return "".join(parts)


class Redactor:
    """Replaces every known form of some secrets by ``[redacted]``; immutable.

    A process may know a thousand keys (a CLI sync of the whole fleet registers each site's),
    and one regular expression alternating between all their forms costs every log record one
    scan per alternative. Each secret has its own expression instead, and a text is first
    narrowed to the secrets that may be in it: those with a form whose first
    :data:`MIN_SECRET_CHARS` characters (lower-cased: percent-escapes match in either case)
    occur in the text. A secret that is not ASCII is always tried (lower-casing may change the
    length of its text). With a handful of secrets one combined expression is cheaper, and used.
    """

    # Up to this many secrets, one expression for all of them.
    COMBINED_UP_TO = 8

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._by_prefix: dict[str, frozenset[str]] = {}
        self._always: frozenset[str] = frozenset()
        self._combined: re.Pattern[str] | None = None
        for secret in secrets:
            self._add(secret)
        self._combine()

    def with_secret(self, secret: str) -> Redactor:
        """This redactor and ``secret``: a new one, so that readers never see it half-built."""
        if not _worth_redacting(secret) or secret in self._patterns:
            return self
        other = Redactor()
        other._patterns = dict(self._patterns)
        other._by_prefix = dict(self._by_prefix)
        other._always = self._always
        other._add(secret)
        other._combine()
        return other

    def _add(self, secret: str) -> None:
        if not _worth_redacting(secret) or secret in self._patterns:
            return
        # Longest first, so that a form containing another is replaced whole.
        ordered = sorted(_forms(secret), key=len, reverse=True)
        self._patterns[secret] = re.compile("|".join(map(_pattern, ordered)))
        if not secret.isascii():
            self._always = self._always | {secret}
            return
        for form in ordered:
            prefix = form[:MIN_SECRET_CHARS].lower()
            self._by_prefix[prefix] = self._by_prefix.get(prefix, frozenset()) | {secret}

    def _combine(self) -> None:
        if not self._patterns or len(self._patterns) > self.COMBINED_UP_TO:
            self._combined = None
            return
        forms = {form for secret in self._patterns for form in _forms(secret)}
        ordered = sorted(forms, key=len, reverse=True)
        self._combined = re.compile("|".join(map(_pattern, ordered)))

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def __repr__(self) -> str:
        return f"Redactor({len(self._patterns)} secret(s))"

    def _candidate_secrets(self, text: str) -> list[str]:
        """The secrets that may occur in ``text``, longest first (see the class)."""
        lowered, width = text.lower(), MIN_SECRET_CHARS
        grams = {lowered[i : i + width] for i in range(len(lowered) - width + 1)}
        found = set(self._always)
        for gram in grams & self._by_prefix.keys():
            found |= self._by_prefix[gram]
        # A longer secret first: one that contains another is replaced whole.
        return sorted(found, key=len, reverse=True)

    def _candidates(self, text: str) -> list[re.Pattern[str]]:
        return [self._patterns[s] for s in self._candidate_secrets(text)]

    def redact(self, text: str) -> str:
        if not self._patterns or not text:
            return text
        if self._combined is not None:
            text = self._combined.sub(REDACTED, text)
        else:
            for pattern in self._candidates(text):
                text = pattern.sub(REDACTED, text)
        return self._cut_forms(text) if ELLIPSIS in text else text

    def contains(self, text: str) -> bool:
        if not self._patterns or not text:
            return False
        if ELLIPSIS in text and self._cut_forms(text) != text:
            return True
        if self._combined is not None:
            return self._combined.search(text) is not None
        return any(pattern.search(text) for pattern in self._candidates(text))

    def _cut_forms(self, text: str) -> str:
        """``text`` without the beginnings of secrets that end in an ellipsis.

        A server's text is shortened before the transport redacts it (``describe.shorten``
        cuts it and appends ``…``): a key echoed across the cut leaves a prefix that no form
        matches. Any prefix of a form, of at least :data:`MIN_SECRET_CHARS` characters, right
        before an ellipsis is replaced as well.
        """
        forms = sorted(
            {form.lower() for secret in self._candidate_secrets(text) for form in _forms(secret)},
            key=len,
            reverse=True,
        )
        pieces = text.split(ELLIPSIS)
        for index, piece in enumerate(pieces[:-1]):
            cut = max((_tail_overlap(piece.lower(), form) for form in forms), default=0)
            if cut >= MIN_SECRET_CHARS:
                pieces[index] = piece[:-cut] + REDACTED
        return ELLIPSIS.join(pieces)


def _tail_overlap(text: str, form: str) -> int:
    """The length of the longest proper prefix of ``form`` that ``text`` ends with."""
    for length in range(min(len(text), len(form) - 1), MIN_SECRET_CHARS - 1, -1):
        if text.endswith(form[:length]):
            return length
    return 0


def _worth_redacting(secret: str) -> bool:
    return bool(secret) and len(secret) >= MIN_SECRET_CHARS


_lock = threading.Lock()
_registry = Redactor()


def register_secret(secret: str) -> None:
    """Add ``secret`` to what every :class:`RedactingFilter` removes from log records."""
    global _registry
    with _lock:
        _registry = _registry.with_secret(secret)


def registry() -> Redactor:
    """The redactor of every secret registered in this process so far."""
    return _registry


class RedactingFilter(logging.Filter):
    """Rewrites a record whose message, arguments or traceback carry a registered secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = _registry
        if not redactor:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not ours
            return True
        if redactor.contains(message):
            record.msg, record.args = redactor.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and redactor.contains(record.exc_text):
            record.exc_text = redactor.redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def _attach(target: logging.Logger | logging.Handler) -> None:
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)


def install_log_redaction(root_handlers: bool = True) -> None:
    """Redact registered secrets from the records of :data:`LOGGERS` and their children.

    A logger's filters see only the records logged on that very logger, so the filter goes on
    every existing logger under those names (urllib3's are created at its import) and, with
    ``root_handlers``, on the root logger's handlers, which see every propagated record.
    Idempotent; loggers created later are covered by the root handlers.
    """
    for name in LOGGERS:
        _attach(logging.getLogger(name))
    for name, candidate in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(candidate, logging.Logger) and name.split(".")[0] in LOGGERS:
            _attach(candidate)
    if root_handlers:
        for handler in logging.getLogger().handlers:
            _attach(handler)
