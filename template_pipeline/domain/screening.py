"""Poison records: the ones that must be quarantined alone before their page is validated.

A poison record is one that, passed on, would fail more than itself: an id too long for the
primary-key index fails the whole table write, an integer beyond 64 bits or ``1e400`` breaks the
serialisers (or becomes ``inf``), a multi-megabyte record or field name floods metadata and
logs. Each is quarantined with a reason naming the field, and the valid records of its page go
on.

Two markers carry what the client found while reading a page (it knows the bytes, validation
does not):

* :class:`UnparsedNumber`, a JSON number kept as its text because no column can hold it (an
  integer beyond 64 bits, or one too long for Python to parse; ``1e400``, ``NaN``,
  ``Infinity``);
* :class:`Quarantined`, which stands in for a whole record (too large, or holding such a
  number): a small, storable preview plus the reason.

:func:`screen` turns the markers into rejects and checks, cheaply, what validation cannot see
in time (an absurdly long id); :func:`poison_parts` is the client's exact walk of a suspicious
record; :func:`bounded_names` bounds the new field names a page reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from template_pipeline.domain.batches import Reject
from template_pipeline.domain.models.reasons import (
    MAX_RECORD_DEPTH,
    bounded,
    clean_text,
    join_reasons,
    jsonable,
    record_id,
    show,
)

# No Template id comes near this; an id beyond about 2,700 bytes breaks the primary-key index.
MAX_ID_CHARS = 255
# What a page may report as new field names: a few, each short.
MAX_NEW_FIELD_CHARS = 100
MAX_NEW_FIELDS = 50
# What a quarantine preview keeps of a record.
_PREVIEW_FIELDS = 20
_MAX_POISON_PARTS = 5


class UnparsedNumber(str):
    """A JSON number kept as its text, because no column (nor Python's ``int``) can hold it."""

    __slots__ = ()

    def describe(self) -> str:
        digits = self.lstrip("-")
        if digits.isdigit():
            return f"an integer of {len(digits)} digits, beyond 64 bits"
        return f"not a finite number (got {show(str(self))})"


class Quarantined(dict):
    """Stands in for a record the client could not pass on; its items are a small preview."""

    __slots__ = ("reason",)

    def __init__(self, preview: Mapping[str, Any], reason: str) -> None:
        super().__init__(preview)
        self.reason = reason

    def __reduce__(self) -> Any:
        return (Quarantined, (dict(self), self.reason))


def quarantine(record: Any, reason: str, id_field: str = "id") -> Quarantined:
    """A :class:`Quarantined` marker for ``record``: its id (if usable) and field names."""
    preview: dict[str, Any] = {}
    if isinstance(record, Mapping):
        value = record.get(id_field)
        if isinstance(value, UnparsedNumber):
            preview[id_field] = bounded(str(value), 40)
        elif isinstance(value, str | int) and not isinstance(value, bool):
            text = str(value) if isinstance(value, str) or abs(value) < 2**64 else "?"
            preview[id_field] = bounded(clean_text(text), 40)
        names = [clean_text(bounded(str(name), 60)) for name in list(record)[:_PREVIEW_FIELDS]]
        preview["fields"] = names
        preview["field_count"] = len(record)
    return Quarantined(preview, reason)


def poison_parts(record: Any) -> list[str]:
    """Where ``record`` holds an :class:`UnparsedNumber` or a non-finite float (exact walk).

    Iterative and bounded in depth, so a record nested 1,000 levels deep is reported instead of
    exhausting the stack.
    """
    parts: list[str] = []
    stack: list[tuple[Any, str, int]] = [(record, "", 0)]
    while stack and len(parts) < _MAX_POISON_PARTS:
        value, where, depth = stack.pop()
        where = bounded(where, 80)
        if isinstance(value, UnparsedNumber):
            parts.append(f"{where or 'record'}: {value.describe()}")
        elif isinstance(value, float) and not math.isfinite(value):
            parts.append(f"{where or 'record'}: not a finite number (got {value})")
        elif isinstance(value, Mapping | list) and depth >= MAX_RECORD_DEPTH:
            parts.append(f"{where or 'record'}: nested deeper than {MAX_RECORD_DEPTH} levels")
        elif isinstance(value, Mapping):
            for key, item in reversed(list(value.items())):
                name = clean_text(bounded(str(key), 40))
                stack.append((item, f"{where}.{name}" if where else name, depth + 1))
        elif isinstance(value, list):
            for index in range(len(value) - 1, -1, -1):
                stack.append((value[index], f"{where}[{index}]", depth + 1))
    return parts


def _id_problem(value: Any, id_field: str) -> str | None:
    cls = value.__class__
    if cls is UnparsedNumber:
        return f"{id_field}: {value.describe()}"
    if cls is str and len(value) > MAX_ID_CHARS:
        return f"{id_field}: {len(value)} characters, longer than any id (at most {MAX_ID_CHARS})"
    if cls is float and not math.isfinite(value):
        return f"{id_field}: not a finite number (got {value})"
    return None


def screen(records: list[Any], id_field: str) -> tuple[list[Any], list[Reject]]:
    """The records validation may see, and the rejects of the poison ones, in page order.

    One pass over the page that looks at each record's class and id only (validation does the
    rest): the list is returned as it was, uncopied, when nothing is poison.
    """
    found: list[tuple[int, Reject]] = []
    for index, record in enumerate(records):
        cls = record.__class__
        if cls is Quarantined:
            reject = Reject(record_id(record, id_field), record.reason, jsonable(dict(record)))
            found.append((index, reject))
        elif cls is dict:
            problem = _id_problem(record.get(id_field), id_field)
            if problem is not None:
                reject = Reject(record_id(record, id_field), problem, jsonable(record))
                found.append((index, reject))
    if not found:
        return records, []
    poisoned = {index for index, _ in found}
    clean = [record for index, record in enumerate(records) if index not in poisoned]
    return clean, [reject for _, reject in found]


def poison_reason(parts: list[str]) -> str:
    return join_reasons(parts[:_MAX_POISON_PARTS])


def bounded_names(names: Iterable[str]) -> set[str]:
    """At most :data:`MAX_NEW_FIELDS` names, each cut to :data:`MAX_NEW_FIELD_CHARS`."""
    out: set[str] = set()
    for name in sorted(names, key=len):
        if len(out) == MAX_NEW_FIELDS:
            break
        out.add(bounded(name, MAX_NEW_FIELD_CHARS))
    return out
