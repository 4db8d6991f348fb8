"""Reject reasons: short, storable descriptions of what is wrong with a record, naming the field.

Also what keeps a rejected record itself storable: text PostgreSQL refuses (NUL characters,
lone UTF-16 surrogates) is found here and shown as U+FFFD in the quarantined payload.

Everything here is bounded in size whatever a site sends: reasons (field names included),
payloads (long strings and keys cut, large containers and deep nesting elided) and ids, so that
a 5 MB field name or a 10,000-level document never reaches a table, metadata or a log whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# Messages of the rules the field types apply themselves (``{got}``: the offending value).
ID_NOT_AN_INTEGER = "not an integer (got {got})"
ID_OUT_OF_RANGE = "out of range for a 64-bit integer (got {got})"
REQUIRED_NOT_A_ZERO_DATE = "required (got the zero date {got})"

_NUL = "\x00"
_UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")
_MAX_REASON_PARTS = 5
_MAX_SHOWN_CHARS = 40
# A reason is one line an operator reads; a field name in it is cut like a value.
MAX_REASON_CHARS = 1000
# Reject payloads: generous enough to keep every real record whole, bounded for hostile ones.
MAX_PAYLOAD_STRING_CHARS = 65536
MAX_PAYLOAD_KEY_CHARS = 256
MAX_PAYLOAD_ITEMS = 10000
MAX_PAYLOAD_DEPTH = 64
# Deeper than this, serialisers refuse a value (orjson at 255 levels, pydantic-core at 256):
# the storability walk stops there and reports it instead of recursing on.
MAX_RECORD_DEPTH = 200
# A reject's template_id: an id beyond this is shown cut.
MAX_SHOWN_ID_CHARS = 64


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS] + "..."


def show(value: Any) -> str:
    """A short, storable rendering of an offending value for a reject reason."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return _shorten(str(value))
    if isinstance(value, str):
        # repr() escapes NUL and surrogates: the reason stays storable.
        return repr(_shorten(value))
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _where(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = _shorten(str(part))
            out += f".{name}" if out else name
    return out or "record"


_TYPE_MESSAGES: dict[str, str] = {
    "missing": "required (missing)",
    "string_too_short": "required (empty)",
    "string_type": "must be a string (got {got})",
    "int_parsing": "not an integer (got {got})",
    "int_type": "not an integer (got {got})",
    "int_from_float": "not an integer (got {got})",
    "int_parsing_size": "not an integer (got {got})",
    "decimal_parsing": "not a number (got {got})",
    "decimal_type": "not a number (got {got})",
    "finite_number": "must be a finite number (got {got})",
    "greater_than_equal": "must be >= {ge} (got {got})",
    "less_than_equal": "must be <= {le} (got {got})",
    "datetime_parsing": "not a valid date and time (got {got})",
    "datetime_from_date_parsing": "not a valid date and time (got {got})",
    "datetime_type": "not a valid date and time (got {got})",
    "datetime_object_invalid": "not a valid date and time (got {got})",
    "date_parsing": "not a valid date (got {got})",
    "date_from_datetime_parsing": "not a valid date (got {got})",
    "date_from_datetime_inexact": "not a valid date (got {got})",
    "date_type": "not a valid date (got {got})",
    "list_type": "must be a list (got {got})",
    # pydantic's own check of str fields; the same words as _text_problem's, so they merge.
    "string_unicode": "contains invalid Unicode (a lone surrogate)",
    "model_type": "must be a JSON object (got {got})",
    "model_attributes_type": "must be a JSON object (got {got})",
    "dict_type": "must be a JSON object (got {got})",
}


# Errors about the shape of a value, whose own message is clearer than "required".
_SHAPE_ERRORS = frozenset(
    {"missing", "model_type", "model_attributes_type", "dict_type", "list_type"}
)


def error_parts(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    parts: list[str] = []
    for err in errors:
        where = _where(err["loc"])
        value = err.get("input")
        kind = err["type"]
        if kind not in _SHAPE_ERRORS and (
            value is None or (isinstance(value, str) and not value.strip())
        ):
            # A required field sent as null or "" (optional ones become None before this).
            message = "required (null)" if value is None else "required (empty)"
        elif kind in _TYPE_MESSAGES:
            ctx = err.get("ctx") or {}
            message = _TYPE_MESSAGES[kind].format(got=show(value), **ctx)
        else:
            # Our own PydanticCustomErrors carry a finished message.
            message = err["msg"]
        part = f"{where}: {message}"
        if part not in parts:
            parts.append(part)
    return parts


def join_reasons(parts: list[str]) -> str:
    if len(parts) > _MAX_REASON_PARTS:
        more = len(parts) - _MAX_REASON_PARTS
        parts = [*parts[:_MAX_REASON_PARTS], f"... and {more} more"]
    return bounded("; ".join(parts), MAX_REASON_CHARS)


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    note = f"... [{len(text)} characters]"
    return text[: max(limit - len(note), 0)] + note


def clean_text(text: str) -> str:
    """``text`` with what PostgreSQL cannot store replaced by U+FFFD."""
    return _UNSTORABLE_RE.sub("\ufffd", text)


def _text_problem(text: str) -> str | None:
    if _UNSTORABLE_RE.search(text) is None:
        return None
    if _NUL in text:
        return "contains a NUL character"
    return "contains invalid Unicode (a lone surrogate)"


def unstorable_parts(value: Any, where: str = "", depth: int = 0) -> Iterator[str]:
    """Where text PostgreSQL cannot store occurs, in keys or string values, at any depth.

    Nesting deeper than :data:`MAX_RECORD_DEPTH` is reported as such (no serialiser downstream
    takes it) instead of being walked: the walk stays far from Python's recursion limit.
    """
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            yield f"{where or 'record'}: {problem}"
    elif isinstance(value, (Mapping, list, tuple)) and depth >= MAX_RECORD_DEPTH:
        yield f"{_shorten(where or 'record')}: nested deeper than {MAX_RECORD_DEPTH} levels"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            problem = _text_problem(name)
            if problem:
                yield f"field {show(name)}: name {problem}"
                name = clean_text(name)
            name = _shorten(name)
            yield from unstorable_parts(item, f"{where}.{name}" if where else name, depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from unstorable_parts(item, f"{where}[{index}]", depth + 1)


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-compatible, storable, bounded copy of a raw record for ``Reject.payload``.

    Strings over :data:`MAX_PAYLOAD_STRING_CHARS`, keys over :data:`MAX_PAYLOAD_KEY_CHARS`,
    containers over :data:`MAX_PAYLOAD_ITEMS` items and nesting deeper than
    :data:`MAX_PAYLOAD_DEPTH` are cut, each saying so.
    """
    if isinstance(value, str):
        return clean_text(bounded(value, MAX_PAYLOAD_STRING_CHARS))
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # Beyond 64 bits no JSON column keeps it exactly (and str() refuses 4300+ digits).
        return value if -(2**63) <= value < 2**64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        # NaN and infinities are not JSON.
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, (Mapping, list, tuple, set, frozenset)) and depth >= MAX_PAYLOAD_DEPTH:
        return f"... [nested deeper than {MAX_PAYLOAD_DEPTH} levels]"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index == MAX_PAYLOAD_ITEMS:
                out["..."] = f"{len(value) - index} more fields"
                break
            out[clean_text(bounded(str(key), MAX_PAYLOAD_KEY_CHARS))] = jsonable(item, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v, depth + 1) for v in list(value)[:MAX_PAYLOAD_ITEMS]]
        if len(value) > MAX_PAYLOAD_ITEMS:
            items.append(f"... [{len(value) - MAX_PAYLOAD_ITEMS} more items]")
        return items
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return clean_text(bounded(str(value), MAX_PAYLOAD_STRING_CHARS))


def record_id(raw: Mapping[str, Any], id_field: str) -> str | None:
    """The id of a raw record as a reject's ``template_id`` (cut when absurdly long)."""
    value = raw.get(id_field)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return None
    text = clean_text(bounded(str(value).strip(), MAX_SHOWN_ID_CHARS))
    return text or None
