"""Finding a page's poison records while its bytes are at hand, and marking them.

Two kinds are found here, each replaced in its page by a
:class:`~template_pipeline.domain.screening.Quarantined` marker that validation turns into a
reject (the page keeps its length, so pagination offsets stay right):

* a record holding a number no column can hold (only a document parsed on the careful path
  can: :mod:`.decoding`);
* a record larger than ``max_record_bytes`` once serialised. A page no larger than that cannot
  hold one, so ordinary pages cost nothing; a larger page is serialised in halves until each
  part fits (about two serialisations of the page, and one more per large record).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson

from template_pipeline.domain.screening import (
    poison_parts,
    poison_reason,
    quarantine,
)
from template_pipeline.source.decoding import Document

MAX_RECORD_BYTES_VARIABLE = "TEMPLATE_MAX_RECORD_BYTES"


def _size(value: Any) -> int | None:
    """Serialised size in bytes; None when nothing serialises it (nested too deep)."""
    try:
        return len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        pass  # lone surrogates (validation rejects them) or more than 254 levels
    try:
        return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "replace"))
    except RecursionError:
        return None
    except ValueError:  # integers past str()'s digit limit: not from a parsed page
        return None


def _oversized(records: list[Any], start: int, limit: int) -> Iterator[tuple[int, int | None]]:
    """``(index, size)`` of each record of ``records`` larger than ``limit`` bytes."""
    size = _size(records)
    if size is not None and size <= limit:
        return
    if len(records) == 1:
        yield start, size
        return
    half = len(records) // 2
    yield from _oversized(records[:half], start, limit)
    yield from _oversized(records[half:], start + half, limit)


def screened(
    records: list[Any], document: Document, *, max_record_bytes: int, id_field: str = "id"
) -> list[Any]:
    """``records`` with each poison record replaced by its quarantine marker (a new list)."""
    if not document.careful and document.size <= max_record_bytes:
        return records
    out = list(records)
    if document.careful:
        for index, record in enumerate(records):
            parts = poison_parts(record)
            if parts:
                out[index] = quarantine(record, poison_reason(parts), id_field)
    if document.size > max_record_bytes:
        for index, size in _oversized(records, 0, max_record_bytes):
            if size is None:
                reason = "record: nested too deep to serialise"
            else:
                reason = (
                    f"record: {size} bytes, more than the {max_record_bytes} allowed "
                    f"({MAX_RECORD_BYTES_VARIABLE})"
                )
            out[index] = quarantine(records[index], reason, id_field)
    return out
