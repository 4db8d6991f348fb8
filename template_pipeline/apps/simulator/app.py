"""The Starlette application serving the Template export API of simulated sites.

``GET /t/{key}/api/export/{endpoint}`` serves site ``key``; the first site is also served at
``/api/export/{endpoint}`` (the single-site setup). Each request does no more than check the
key, slice a list and serialise the slice with orjson, so benchmark sites of a few hundred
thousand records serve large pages quickly (no per-record cache: orjson dumps a
1000-record page in well under a millisecond, and a cache would go stale when tests edit
records in place).

Pagination: list endpoints serve ``records[offset : offset + min(limit, page_cap)]`` in id
order (``limit`` defaults to 100); ``settings`` honours ``limit``/``offset`` too but has no
cap and, without ``limit``, serves every setting, so clients that page through it and
clients that read it in one request both get all of it. ``stats`` and ``full`` ignore both.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from template_pipeline.apps.simulator import hostile
from template_pipeline.apps.simulator.config import RANDOM_FAULT_KINDS, Faults, SimSite
from template_pipeline.apps.simulator.data import TABLES, SiteData, generate_site_data

logger = logging.getLogger(__name__)

# endpoint -> entity (list in SiteData, and key of the "named" envelope)
LIST_ENDPOINTS: dict[str, str] = {
    "paintings": "paintings",
    "users": "users",
    "orders": "orders",
    "exhibitions": "exhibitions",
    "custom-requests": "custom_requests",
}
ENDPOINTS: tuple[str, ...] = ("settings", *LIST_ENDPOINTS, "stats", "full")
DEFAULT_LIMIT = 100
# What was injected so far, per site (``fault_counts``): not part of the Template API.
FAULTS_PATH = "/_simulator/faults"

_JSON = "application/json"
_HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)
_RANDOM_ERROR_STATUSES = (500, 502, 503)


def _default(value: Any) -> Any:
    # Tests may store Decimals through the mutators; Template sends such numbers as text.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, default=_default)


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(document), status_code=status, media_type=_JSON, headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"success": False, "error": message}, status, headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status a script may use but http.HTTPStatus does not name
        return f"HTTP {status}"


def format_retry_after(seconds: float) -> str:
    # Whole seconds as HTTP says; a fraction is kept (non-standard) so tests can retry fast.
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


@dataclass(frozen=True)
class _Fault:
    status: int = 200  # answer this status with a JSON error body (when not 200)
    html: bool = False  # answer 200 with an HTML page
    truncate: bool = False  # answer 200 with the JSON body cut in the middle
    slow_s: float = 0.0  # hold the answer this long before it starts
    reset: bool = False  # cut the connection halfway through the body
    kind: str = ""  # what is counted in SiteRuntime.injected

    @property
    def served(self) -> bool:
        return not self.kind


_SERVE = _Fault()


def _random_fault(kind: str, faults: Faults, status_draw: float) -> _Fault:
    """A fault of ``config.RANDOM_FAULT_KINDS``."""
    if kind == "5xx":
        statuses = _RANDOM_ERROR_STATUSES
        return _Fault(status=statuses[int(status_draw * len(statuses))], kind=kind)
    if kind == "429":
        return _Fault(status=429, kind=kind)
    if kind == "slow":
        return _Fault(slow_s=faults.slow_fault_ms / 1000, kind=kind)
    if kind == "reset":
        return _Fault(reset=True, kind=kind)
    return _Fault(truncate=True, kind="truncated")


@dataclass
class SiteRuntime:
    """A served site: its definition, its data, and its per-site request counter."""

    site: SimSite
    data: SiteData
    requests: int = 0
    faulted: int = 0  # how many faulted answers, for tests and benchmarks
    # Faulted answers by kind (5xx, 429, slow, reset, truncated, html, revoked, failing, ...).
    injected: Counter[str] = field(default_factory=Counter)
    _consecutive_faults: int = 0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"template-simulator:{self.site.seed}:{self.site.key}:faults")

    def next_fault(self) -> _Fault:
        """Count one request and decide how to answer it (see :class:`Faults`)."""
        self.requests += 1
        faults = self.site.faults
        if not faults.active:
            return _SERVE
        decision = self._decide(faults, self.requests)
        if decision.served:
            self._consecutive_faults = 0
        else:
            self._consecutive_faults += 1
            self.faulted += 1
            self.injected[decision.kind] += 1
        return decision

    def _decide(self, faults: Faults, n: int) -> _Fault:
        # Always draw, so the decision for request n does not depend on the other rules.
        draw = self._rng.random()
        status_draw = self._rng.random()
        # A third draw only for sites with random faults: other sites keep their sequences.
        chaos = self._rng.random() if faults.fault_rates else 1.0
        if faults.revoke_after and n > faults.revoke_after:
            return _Fault(status=401, kind="revoked")
        if faults.fail_after and n > faults.fail_after:
            return _Fault(status=500, kind="failing")
        if n <= len(faults.script):
            status = faults.script[n - 1]
            return _SERVE if status == 200 else _Fault(status=status, kind=f"script-{status}")
        if 0 < faults.max_consecutive_faults <= self._consecutive_faults:
            return _SERVE
        if faults.rate_limit_every and n % faults.rate_limit_every == 0:
            return _Fault(status=429, kind="429")
        if draw < faults.error_rate:
            statuses = _RANDOM_ERROR_STATUSES
            return _Fault(status=statuses[int(status_draw * len(statuses))], kind="5xx")
        if faults.html_every and n % faults.html_every == 0:
            return _Fault(html=True, kind="html")
        if faults.truncate_every and n % faults.truncate_every == 0:
            return _Fault(truncate=True, kind="truncated")
        for kind in RANDOM_FAULT_KINDS:
            chaos -= faults.fault_rates.get(kind, 0.0)
            if chaos < 0:
                return _random_fault(kind, faults, status_draw)
        return _SERVE


class _BadRequest(Exception):
    pass


def _int_param(request: Request, name: str, default: int | None, minimum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise _BadRequest(f"{name} must be >= {minimum}, got {value}")
    return value


def _render(runtime: SiteRuntime, endpoint: str, limit: int | None, offset: int) -> bytes:
    site, data = runtime.site, runtime.data
    named = site.envelope == "named"
    with data.lock:
        if endpoint == "stats":
            return dumps({"stats": data.stats()})
        if endpoint == "full":
            tables = {table: data.records(table) for table in TABLES}
            return dumps(
                {
                    "success": True,
                    "data": tables,
                    "tables_count": len(tables),
                    "total_records": sum(len(records) for records in tables.values()),
                }
            )
        faults = site.faults
        entity = "settings" if endpoint == "settings" else LIST_ENDPOINTS[endpoint]
        records = data.records(entity)
        splices: dict[bytes, bytes] = {}
        if entity == "settings":
            # Settings are a short table a client may read in one request or page through:
            # no cap, and no limit unless one is asked for.
            size = len(records) if limit is None else limit
            offset = 0 if faults.ignore_offset else offset
            page = records[offset : offset + size]
        else:
            size = min(DEFAULT_LIMIT if limit is None else limit, site.page_cap)
            if faults.active:
                page = hostile.page_of(faults, records, offset, size, runtime.requests)
                if faults.poison:
                    first_id = records[0].get("id") if records else None
                    page, splices = hostile.poison_page(faults, page, first_id)
            else:
                page = records[offset : offset + size]
        if entity == "settings":
            if named:
                document = {"data": page}
            else:
                document = {"success": True, "count": len(page), "data": page}
        elif named:
            document = {entity: page}
        else:
            document = {"success": True, "count": len(page), "total": len(records), "data": page}
        return hostile.splice(dumps(document), splices) if splices else dumps(document)


class _Export:
    """The ``GET .../api/export/{endpoint}`` handler of every simulated site."""

    def __init__(self, runtimes: dict[str, SiteRuntime], root_key: str) -> None:
        self.runtimes = runtimes
        self.root_key = root_key

    async def handle(self, request: Request) -> Response:
        checked = self._check(request)
        if isinstance(checked, Response):
            return checked
        runtime, endpoint, limit, offset = checked
        faults = runtime.site.faults
        if faults.redirect_with_key:
            redirect = hostile.redirect_with_key(request, runtime.site.api_key)
            if redirect is not None:
                return redirect
        fault = runtime.next_fault()
        if faults.slow_ms or fault.slow_s:
            await asyncio.sleep(faults.slow_ms / 1000 + fault.slow_s)
        if not fault.served:
            echo = runtime.site.api_key if faults.echo_key else None
            faulted = _faulted_response(fault, faults.retry_after, echo)
            if faulted is not None:
                return faulted
        if faults.gzip_bomb_bytes and endpoint != "settings":
            return hostile.gzip_bomb(faults.gzip_bomb_bytes)
        body = _render(runtime, endpoint, limit, offset)
        if fault.truncate:
            # A proper prefix of a JSON document is never valid JSON.
            body = body[: len(body) // 2]
        if fault.reset:
            return hostile.cut_short(body)
        if faults.shapes_body:
            return hostile.streamed(body, faults)
        return Response(body, media_type=_JSON)

    def _check(self, request: Request) -> Response | tuple[SiteRuntime, str, int | None, int]:
        """The site, endpoint and page of a well-formed, authenticated request, or its error."""
        key = request.path_params.get("key", self.root_key)
        endpoint = request.path_params["endpoint"]
        runtime = self.runtimes.get(key)
        if runtime is None:
            return _error(404, f"Unknown site {key!r}")
        if endpoint not in ENDPOINTS:
            return _error(
                404, f"Unknown export endpoint {endpoint!r} (known: {', '.join(ENDPOINTS)})"
            )
        given = request.headers.get("x-api-key", "")
        expected = runtime.site.api_key
        if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            echo = f": {hostile.echoed_key(given)}" if runtime.site.faults.echo_key else ""
            return _error(401, f"Invalid API key{echo}")
        try:
            limit = _int_param(request, "limit", None, minimum=1)
            offset = _int_param(request, "offset", 0, minimum=0) or 0
        except _BadRequest as exc:
            return _error(400, f"{endpoint}: {exc}")
        return runtime, endpoint, limit, offset


def _faulted_response(fault: _Fault, retry_after: float, echo: str | None) -> Response | None:
    """The answer a fault stands for; None when the body is served (and cut) after all.

    ``echo``: the API key, quoted back in the error's text (a careless server).
    """
    said = f": {hostile.echoed_key(echo)}" if echo else ""
    if fault.status == 429:
        return _error(
            429,
            f"Too many requests{said}",
            headers={"Retry-After": format_retry_after(retry_after)},
        )
    if fault.status != 200:
        return _error(fault.status, _phrase(fault.status) + said)
    if fault.html:
        page = _HTML_ERROR_PAGE
        if echo:
            title = f"<title>Access denied for {hostile.echoed_key(echo)}</title>".encode()
            page = page.replace(b"<title>502 Bad Gateway</title>", title)
        return Response(page, media_type="text/html; charset=utf-8")
    return None


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = getattr(exc, "headers", None)
    return _error(status, _phrase(status), headers=headers)


def fault_counts(runtimes: dict[str, SiteRuntime]) -> dict[str, dict[str, Any]]:
    """Per site: requests counted, faulted answers, and those by kind (what was injected)."""
    return {
        key: {
            "requests": runtime.requests,
            "faulted": runtime.faulted,
            "injected": dict(runtime.injected),
        }
        for key, runtime in runtimes.items()
    }


def build_app(sites: list[SimSite]) -> Starlette:
    """The simulator application; ``app.state.data`` maps each site key to its ``SiteData``.

    ``app.state.runtime`` maps each key to its :class:`SiteRuntime` (request counters);
    ``GET /_simulator/faults`` answers :func:`fault_counts`.
    """
    if not sites:
        raise ValueError("the simulator needs at least one site")
    runtimes: dict[str, SiteRuntime] = {}
    for site in sites:
        if site.key in runtimes:
            raise ValueError(f"simulated site {site.key!r} is listed twice")
        runtimes[site.key] = SiteRuntime(site=site, data=generate_site_data(site))
    export = _Export(runtimes, sites[0].key)

    async def faults_endpoint(request: Request) -> Response:
        # The simulator's own bookkeeping, for benchmarks in another process: no key, no secret.
        return _json(fault_counts(runtimes))

    app = Starlette(
        routes=[
            Route(FAULTS_PATH, faults_endpoint, methods=["GET"]),
            Route("/t/{key}/api/export/{endpoint}", export.handle, methods=["GET"]),
            Route("/api/export/{endpoint}", export.handle, methods=["GET"]),
        ],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.state.data = {key: runtime.data for key, runtime in runtimes.items()}
    app.state.runtime = runtimes
    for runtime in runtimes.values():
        logger.debug("simulator: %r", runtime.data)  # the repr holds sizes, never the key
    return app
