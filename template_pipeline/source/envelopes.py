"""The response envelopes of the export API, read into plain records.

Two envelopes exist in the field and both are read: ``{"success": true, "count": N, "data":
[...]}`` and the named one, ``{"paintings": [...]}`` (settings as ``{"data": [{"key", "value"}]}``
or a plain mapping, stats as ``{"stats": {...}}``, the ``full`` export as ``{"data": {"paintings":
[...], ...}}``). Which keys name an entity's records comes from the entity registry.

Anything else is an error naming what was seen: reading a malformed page as empty would end a
listing early and mark every remaining record as deleted upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from template_pipeline.domain.entities import FULL_EXPORT, by_endpoint
from template_pipeline.source.describe import json_type, shorten
from template_pipeline.source.errors import TemplateError

# (endpoint, message) -> the error to raise; the transport's, which names the site and redacts.
ErrorFactory = Callable[[str, str], TemplateError]

_FULL_KEYS = frozenset(key for entity in FULL_EXPORT for key in entity.envelope_keys)


def _check_success(payload: Any, endpoint: str, error: ErrorFactory) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise error(endpoint, f"unknown envelope: {json_type(payload)} instead of an object")
    if payload.get("success") is False:
        message = payload.get("error") or payload.get("message") or "no error message"
        raise error(endpoint, f"the server reported a failure: {shorten(str(message))}")
    return payload


def _unknown_envelope(
    payload: Mapping[str, Any], endpoint: str, expected: str, error: ErrorFactory
) -> TemplateError:
    keys = ", ".join(sorted(map(str, payload))) or "none"
    return error(endpoint, f"unknown envelope: expected {expected}; keys seen: {keys}")


def record_list(
    records: Any, endpoint: str, where: str, error: ErrorFactory, offset: int | None = None
) -> list[dict[str, Any]]:
    """``records`` when it is a list of objects; an error naming the first thing that is not."""
    at = "" if offset is None else f" at offset {offset}"
    if not isinstance(records, list):
        raise error(endpoint, f"{where}{at} is {json_type(records)}, not an array")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise error(
                endpoint, f"record #{index}{at} in {where} is {json_type(record)}, not an object"
            )
    return records


def records_from(
    payload: Any, endpoint: str, error: ErrorFactory, offset: int | None = None
) -> list[dict[str, Any]]:
    """The records of one page of a list endpoint, in either envelope."""
    payload = _check_success(payload, endpoint, error)
    keys = by_endpoint(endpoint).envelope_keys
    named = [key for key in keys if key in payload]
    if "data" in payload:
        records, where = payload["data"], "'data'"
    elif named:
        records, where = payload[named[0]], repr(named[0])
    else:
        raise _unknown_envelope(
            payload, endpoint, f"'data' or {' / '.join(map(repr, keys))}", error
        )
    return record_list(records, endpoint, where, error, offset)


def settings_list(
    data: Any, endpoint: str, where: str, error: ErrorFactory
) -> list[dict[str, Any]]:
    # Some sites serve settings as a plain mapping; the pipeline reads key/value rows.
    if isinstance(data, Mapping):
        return [{"key": str(key), "value": value} for key, value in data.items()]
    return record_list(data, endpoint, f"settings {where}", error)


def settings_from(payload: Any, endpoint: str, error: ErrorFactory) -> list[dict[str, Any]]:
    payload = _check_success(payload, endpoint, error)
    if "data" in payload:
        data, where = payload["data"], "'data'"
    elif "settings" in payload:
        data, where = payload["settings"], "'settings'"
    else:
        raise _unknown_envelope(payload, endpoint, "'data' or 'settings'", error)
    return settings_list(data, endpoint, where, error)


def stats_from(payload: Any, error: ErrorFactory) -> dict[str, Any]:
    payload = _check_success(payload, "stats", error)
    if "stats" in payload:
        stats, where = payload["stats"], "'stats'"
    elif "data" in payload:
        stats, where = payload["data"], "'data'"
    else:
        raise _unknown_envelope(payload, "stats", "'stats' or 'data'", error)
    if not isinstance(stats, dict):
        raise error("stats", f"{where} is {json_type(stats)}, not an object")
    return stats


def full_from(payload: Any, error: ErrorFactory) -> dict[str, list[dict[str, Any]]]:
    """Every table of the ``full`` document, keyed by entity name."""
    payload = _check_success(payload, "full", error)
    document: Any
    if "data" in payload:
        document = payload["data"]
        if not isinstance(document, Mapping):
            raise error("full", f"'data' is {json_type(document)}, not an object")
    elif any(key in payload for key in _FULL_KEYS):
        document = payload  # the tables at the top level, without 'data'
    else:
        raise _unknown_envelope(payload, "full", "'data' holding the tables", error)
    tables: dict[str, list[dict[str, Any]]] = {}
    missing: list[str] = []
    for entity in FULL_EXPORT:
        present = [key for key in entity.envelope_keys if key in document]
        if not present:
            missing.append(entity.name)
            continue
        value, where = document[present[0]], f"table {present[0]!r}"
        if entity.kind == "settings":
            tables[entity.name] = settings_list(value, "full", where, error)
        else:
            tables[entity.name] = record_list(value, "full", where, error)
    if missing:
        # A missing table read as empty would mark all its rows deleted upstream.
        keys = ", ".join(sorted(map(str, document))) or "none"
        raise error("full", f"the document lacks table(s) {', '.join(missing)}; keys seen: {keys}")
    return tables
