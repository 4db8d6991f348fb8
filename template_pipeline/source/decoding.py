"""JSON bodies into documents: fast for ordinary pages, careful with the hostile ones.

orjson parses every ordinary page. It refuses what the careful path must decide on: numbers
that overflow a double (``1e400``), ``NaN`` and ``Infinity`` (not JSON, but sent), lone
surrogates, UTF-16 bodies; and it silently turns integers beyond 64 bits into floats, so a
body holding a run of 20 or more digits takes the careful path too (one ``translate`` and one
``find`` over the bytes decide that, about a millisecond per megabyte).

The careful path is the standard ``json`` module with hooks: an integer beyond 64 bits (which
``int()`` refuses beyond 4300 digits) and a non-finite number stay
:class:`~template_pipeline.domain.screening.UnparsedNumber` markers, so that only their record
is quarantined (:mod:`.poison`) and the page stays readable. A document nested deeper than
orjson's 1024 levels, or deep enough to exhaust the stack, is an error saying so, never a bare
``RecursionError``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from template_pipeline.domain.screening import UnparsedNumber

MAX_DEPTH = 1024  # orjson's own limit
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_NUMBER = b"0" * 20
# translate() copies its input: long bodies are scanned in slices (overlapping by the needle).
_SCAN_SLICE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed body: ``careful`` when it may hold :class:`UnparsedNumber` markers."""

    value: Any
    size: int
    careful: bool = False


class JsonProblem(ValueError):
    """A body that is not a usable JSON document; ``truncated`` when it ends early."""

    def __init__(self, reason: str, *, truncated: bool = False, too_deep: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.truncated = truncated
        self.too_deep = too_deep


def _has_long_number(body: bytes) -> bool:
    if len(body) <= _SCAN_SLICE:
        return _LONG_NUMBER in body.translate(_DIGITS)
    step = _SCAN_SLICE - len(_LONG_NUMBER)
    return any(
        _LONG_NUMBER in body[start : start + _SCAN_SLICE].translate(_DIGITS)
        for start in range(0, len(body), step)
    )


def _parse_int(text: str) -> int | UnparsedNumber:
    if len(text) <= 21:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return UnparsedNumber(text)


def _parse_float(text: str) -> float | UnparsedNumber:
    value = float(text)
    return value if math.isfinite(value) else UnparsedNumber(text)


def _too_deep() -> JsonProblem:
    return JsonProblem(f"the document is nested deeper than {MAX_DEPTH} levels", too_deep=True)


# The token a document ends with when cut inside a number or a literal (``nu``, ``tr``, ``1.``,
# ``-``, ``1e``): the parser reports an error at its start, not at the very end.
_LAST_TOKEN = re.compile(r"[-+.\w]*\Z")


def _cut_short(exc: json.JSONDecodeError) -> bool:
    """Whether a document fails to parse because it ends early (a cut body: worth a retry).

    The error is at the very end, or a string runs on to the end, or the parser stopped in the
    number or literal the document ends with (its rest cut off). A document that ends in a
    misspelt literal is taken for a cut one as well: they cannot be told apart.
    """
    doc = exc.doc.rstrip()
    if exc.pos >= len(doc) or exc.msg.startswith("Unterminated string"):
        return True
    if exc.msg.startswith("Extra data"):  # a whole document, then something else
        return False
    last = _LAST_TOKEN.search(doc)
    return last is not None and last.start() < len(doc) and exc.pos >= last.start()


def careful_loads(body: bytes | str) -> Any:
    """``json.loads`` keeping unholdable numbers as markers; :class:`JsonProblem` otherwise."""
    try:
        return json.loads(
            body, parse_int=_parse_int, parse_float=_parse_float, parse_constant=UnparsedNumber
        )
    except RecursionError:
        raise _too_deep() from None
    except json.JSONDecodeError as exc:
        truncated = _cut_short(exc)
        reason = f"{exc.msg} at character {exc.pos}"
        if truncated:
            reason = f"the document ends early ({exc.msg} at character {exc.pos})"
        raise JsonProblem(reason, truncated=truncated) from None
    except UnicodeDecodeError as exc:
        # Cut inside a character of several bytes: the text ends early, it is not a wrong one.
        cut = exc.end >= len(exc.object) and exc.reason == "unexpected end of data"
        what = "the document ends early, inside a character" if cut else "not UTF-8 text"
        raise JsonProblem(f"{what} ({exc.reason} at byte {exc.start})", truncated=cut) from None


def parse(body: bytes) -> Document:
    """The JSON document of ``body`` (see the module's docstring for the two paths)."""
    if not _has_long_number(body):
        try:
            return Document(orjson.loads(body), len(body))
        except orjson.JSONDecodeError as exc:
            if "depth" in str(exc) or "recursion" in str(exc).lower():
                raise _too_deep() from None
            # Everything else orjson refuses, the careful path decides on.
    return Document(careful_loads(body), len(body), careful=True)


def loads_or_none(body: bytes) -> Any:
    """The document of a body read only for a message (an error body), or None."""
    try:
        return parse(body).value
    except ValueError:
        return None
