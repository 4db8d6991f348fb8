"""Hostile answers of a simulated site: what a broken or malicious server sends, on purpose.

Each behaviour is switched on by a :class:`~.config.Faults` field (see there) and is
deterministic: poison records by id, pages that rotate while ``offset`` is ignored, listings
that never end, bodies that trickle, stall or are cut, a gzip body that inflates without limit
(generated as it is sent: a few MB on the wire, never held inflated), the API key echoed in
error bodies and in a redirect's query. None of it runs for a site without faults: the fast
path of the benchmarks is untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, quote_plus

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from template_pipeline.apps.simulator.config import POISON_KINDS, Faults

__all__ = ["POISON_KINDS", "cut_short", "gzip_bomb", "page_of", "poison_page", "streamed"]

_JSON = "application/json"
# Raw JSON tokens no serialiser writes (numbers no double or int64 holds, NaN, a lone
# surrogate), spliced into the serialised page in place of placeholder strings.
_RAW_POISON = {
    "huge-id": ("id", b"9" * 5000),
    "id-1e400": ("id", b"1e400"),
    "huge-int": ("views", b"1" * 30),
    "price-nan": ("price", b"NaN"),
    "price-infinity": ("price", b"Infinity"),
    "price-1e400": ("price", b"1e400"),
    "surrogate": ("name", b'"Bleu \\ud83d nuit"'),
}
_PLAIN_POISON: dict[str, tuple[str, Any]] = {
    "long-id": ("id", "1" * 3000),
    "text-id": ("id", "n/a"),
    "price-text-1e9999": ("price", "1e9999"),
    "price-negative": ("price", -12.5),
    "price-absurd": ("price", 1e300),
    "nul": ("name", "Bleu\x00nuit"),
}
# Every kind of config.POISON_KINDS is made here (a test keeps them equal).
MADE_HERE = frozenset({*_RAW_POISON, *_PLAIN_POISON, "field-name", "deep", "duplicate"})
# The gzip bomb inflates from blocks of this many spaces (each compresses to about 5 KB).
_BOMB_BLOCK = 1024 * 1024


class SimulatedReset(ConnectionResetError):
    """Raised mid-body to make the server cut the connection (and not logged as a crash)."""


class _QuietReset(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedReset))


# uvicorn logs an exception in the application with its traceback: not for a planned reset.
logging.getLogger("uvicorn.error").addFilter(_QuietReset())


def page_of(
    faults: Faults, records: list[dict[str, Any]], offset: int, size: int, request_number: int
) -> list[dict[str, Any]]:
    """The records of one list page under the offset faults (ignored, rotated, never ending)."""
    if faults.ignore_offset:
        offset = 0
    if faults.rotate_ignoring_offset and records:
        start = (request_number * faults.rotate_ignoring_offset) % len(records)
        rotated = records[start:] + records[:start]
        return rotated[:size]
    page = records[offset : offset + size]
    if faults.never_empty and len(page) < size and records:
        # Past the end: copies of the records under new ids, position after position, forever.
        count, last_id = len(records), int(records[-1].get("id", len(records)))
        page = page + [
            {**records[position % count], "id": last_id + position - count + 1}
            for position in range(max(offset, count), offset + size)
        ]
    return page


def poison_page(
    faults: Faults, page: list[dict[str, Any]], first_id: Any
) -> tuple[list[dict[str, Any]], dict[bytes, bytes]]:
    """``page`` with its poisoned records, and the raw splices to apply once it is serialised."""
    splices: dict[bytes, bytes] = {}
    out = []
    for record in page:
        kind = faults.poison.get(record.get("id"))  # type: ignore[arg-type]
        if kind is None:
            out.append(record)
            continue
        record = dict(record)
        if kind in _RAW_POISON:
            field, raw = _RAW_POISON[kind]
            placeholder = f"@@poison-{len(splices)}@@"
            record[field] = placeholder
            splices[json.dumps(placeholder).encode()] = raw
        elif kind in _PLAIN_POISON:
            field, value = _PLAIN_POISON[kind]
            record[field] = value
        elif kind == "field-name":
            record["f" * faults.poison_bytes] = 1
        elif kind == "deep":
            placeholder = f"@@poison-{len(splices)}@@"
            record["nested"] = placeholder
            splices[json.dumps(placeholder).encode()] = (
                b"[" * faults.deep_levels + b"]" * faults.deep_levels
            )
        elif kind == "duplicate":
            record["id"] = first_id
        out.append(record)
    return out, splices


def splice(body: bytes, splices: dict[bytes, bytes]) -> bytes:
    for placeholder, raw in splices.items():
        body = body.replace(placeholder, raw)
    return body


def echoed_key(key: str) -> str:
    """The key as careless servers echo it: raw, URL-encoded, JSON-escaped (PHP style)."""
    php = json.dumps(key)[1:-1].replace("/", "\\/")
    return f"key {key} (as {quote(key, safe='')}, {quote_plus(key)}, {php})"


def redirect_with_key(request: Request, key: str) -> Response | None:
    """A 302 to the same URL with the key in its query, for a request not yet redirected."""
    if request.query_params.get("_r") == "1":
        return None
    query = str(request.url.query)
    target = f"{request.url.path}?{query + '&' if query else ''}_r=1&token={quote_plus(key)}"
    return RedirectResponse(target, status_code=302)


async def _chunks(body: bytes, faults: Faults) -> AsyncIterator[bytes]:
    if faults.trickle_bytes:
        for start in range(0, len(body), faults.trickle_bytes):
            yield body[start : start + faults.trickle_bytes]
            await asyncio.sleep(faults.trickle_interval_ms / 1000)
        return
    cut = faults.stall_after_bytes or faults.reset_after_bytes
    yield body[:cut]
    if faults.reset_after_bytes:
        # The handler dies mid-body: the server drops the connection short of Content-Length.
        raise SimulatedReset("simulated connection reset mid-body")
    await asyncio.sleep(faults.stall_ms / 1000)
    yield body[cut:]


async def _cut(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise SimulatedReset("simulated connection reset mid-body")


def cut_short(body: bytes) -> Response:
    """``body`` announced whole (Content-Length) and cut halfway: a connection reset mid-body."""
    return StreamingResponse(
        _cut(body), media_type=_JSON, headers={"Content-Length": str(len(body))}
    )


def streamed(body: bytes, faults: Faults) -> Response:
    """``body`` as the transfer faults deliver it (trickled, stalled, cut), or whole."""
    if not (faults.trickle_bytes or faults.stall_after_bytes or faults.reset_after_bytes):
        return Response(body, media_type=_JSON)
    return StreamingResponse(
        _chunks(body, faults), media_type=_JSON, headers={"Content-Length": str(len(body))}
    )


async def _bomb(size: int) -> AsyncIterator[bytes]:
    # Level 1: about 200:1 on spaces at 300 MB/s; the client's limit stops the stream early.
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    yield compressor.compress(b'{"success": true, "count": 0, "data": [], "padding": "')
    block = b" " * _BOMB_BLOCK
    for _ in range(max(size // _BOMB_BLOCK, 1)):
        data = compressor.compress(block)
        if data:
            yield data
        await asyncio.sleep(0)  # let the server notice a client that hung up
    yield compressor.compress(b'"}') + compressor.flush()


def gzip_bomb(size: int) -> Response:
    """A valid gzip JSON document that inflates to about ``size`` bytes, made as it is sent."""
    return StreamingResponse(_bomb(size), media_type=_JSON, headers={"Content-Encoding": "gzip"})
