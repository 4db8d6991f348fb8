"""Webhook intake: ``template-pipeline webhook`` serves ``POST /webhooks/template``.

A Template site announces a change with a small signed JSON document::

    POST /webhooks/template
    Content-Type: application/json
    X-Template-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the site's secret>
    X-Template-Delivery: <optional id of this delivery, stored for tracing>

    {"event": "painting_updated", "site": "atelier-marie", ...}

The secret of site ``atelier-marie`` is read from ``TEMPLATE_WEBHOOK_SECRET_ATELIER_MARIE``
(``TEMPLATE_WEBHOOK_SECRET_`` + the site key in upper case, ``-`` as ``_``), so the sites file
keeps its ``{key, base_url, api_key_env, name}`` contract. A site without that variable cannot
send webhooks. Signatures are compared in constant time.

Valid events are stored in ``template_webhook_events`` and answered ``202``; the webhook
sensor turns pending events into sync runs of that site's entities and marks them consumed.
Nothing else is ever stored:

====================================================  ======
request                                               answer
====================================================  ======
body larger than ``max_body_bytes`` (64 KiB)          413
not JSON, not an object, ``event``/``site`` missing   400
``site`` not in the site registry                     404
the site has no webhook secret configured             403
``X-Template-Signature`` missing or wrong             401
``event`` not one of :data:`EVENT_ENTITIES`           422
registry unreadable, database unavailable or behind   503
====================================================  ======

The event names come from the endpoint spec table: ``<record>_created``, ``<record>_updated``,
``<record>_deleted`` for each list endpoint (``painting_updated``, ``order_created``,
``custom_request_deleted``, ...) and ``settings_updated``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import sqlalchemy as sa
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from template_pipeline.apps.http_server import BackgroundServer
from template_pipeline.domain import config
from template_pipeline.domain.entities import EVENT_ENTITIES, entities_for_events
from template_pipeline.domain.sites import SLUG_RE, SiteConfigError, SiteRegistry, load_registry
from template_pipeline.store import db
from template_pipeline.store.ops_tables import template_webhook_events
from template_pipeline.store.schema_version import require_current

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/template"
SIGNATURE_HEADER = "X-Template-Signature"
DELIVERY_HEADER = "X-Template-Delivery"
SECRET_ENV_PREFIX = config.WEBHOOK_SECRETS.name.rstrip("*")
SIGNATURE_PREFIX = "sha256="
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
# Sites added to the sites file are accepted without a restart after at most this long.
REGISTRY_TTL_S = 10.0
_MAX_TEXT = 200


def secret_env_name(site_key: str) -> str:
    """``atelier-marie`` -> ``TEMPLATE_WEBHOOK_SECRET_ATELIER_MARIE``."""
    return config.webhook_secret_env(site_key)


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Template-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, compared in constant time."""
    if not header:
        return False
    given = header.strip()
    if given[: len(SIGNATURE_PREFIX)].lower() != SIGNATURE_PREFIX:
        return False
    given = SIGNATURE_PREFIX + given[len(SIGNATURE_PREFIX) :].lower()
    return hmac.compare_digest(sign(secret, body).encode("ascii"), given.encode("utf-8"))


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class _Rejected(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


class WebhookIntake:
    """The request handler: checks a delivery and stores it, or answers why not."""

    def __init__(
        self,
        database_url: str,
        *,
        registry_loader: Callable[[], SiteRegistry] = load_registry,
        environ: Mapping[str, str] = os.environ,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        registry_ttl: float = REGISTRY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
        self.database_url = database_url
        self.max_body_bytes = max_body_bytes
        self._registry_loader = registry_loader
        self._environ = environ
        self._registry_ttl = registry_ttl
        self._clock = clock
        self._registry: SiteRegistry | None = None
        self._registry_loaded_at = 0.0
        self._lock = threading.Lock()

    # -- the registry, re-read every few seconds so new sites are accepted without a restart --

    def _site_keys(self) -> frozenset[str]:
        with self._lock:
            now = self._clock()
            if self._registry is None or now - self._registry_loaded_at > self._registry_ttl:
                try:
                    self._registry = self._registry_loader()
                except SiteConfigError as exc:
                    # Keep serving the last good registry, if any: a typo in the sites file
                    # must not stop webhooks of the sites that were fine.
                    if self._registry is None:
                        logger.error("webhook intake: the site registry is unusable: %s", exc)
                        raise _Rejected(
                            HTTPStatus.SERVICE_UNAVAILABLE, "the site registry is unusable"
                        ) from None
                    logger.error("webhook intake: keeping the previous site registry: %s", exc)
                self._registry_loaded_at = now
            return frozenset(self._registry.keys())

    # -- the steps of a delivery --

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > self.max_body_bytes:
                    raise _Rejected(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"body larger than {self.max_body_bytes} bytes",
                    )
            except ValueError:
                raise _Rejected(HTTPStatus.BAD_REQUEST, "invalid Content-Length") from None
        chunks: list[bytes] = []
        size = 0
        # Counted while reading: a sender may lie about Content-Length or stream chunked.
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _Rejected(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"body larger than {self.max_body_bytes} bytes",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse(body: bytes) -> tuple[dict[str, Any], str, str]:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _Rejected(HTTPStatus.BAD_REQUEST, "the body is not valid JSON") from None
        if not isinstance(document, dict):
            raise _Rejected(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        event, site = document.get("event"), document.get("site")
        if not isinstance(event, str) or not event:
            raise _Rejected(HTTPStatus.BAD_REQUEST, "'event' (a string) is required")
        if not isinstance(site, str) or not site:
            raise _Rejected(HTTPStatus.BAD_REQUEST, "'site' (a site key) is required")
        try:
            has_nul = _has_nul(document)
        except RecursionError:
            raise _Rejected(HTTPStatus.BAD_REQUEST, "the body is nested too deeply") from None
        if has_nul:
            # PostgreSQL's jsonb cannot hold it; no Template event needs one.
            raise _Rejected(HTTPStatus.BAD_REQUEST, "the body holds a NUL character")
        return document, event, site

    def _secret(self, site: str) -> str:
        name = secret_env_name(site)
        secret = self._environ.get(name, "").strip()
        if not secret:
            raise _Rejected(
                HTTPStatus.FORBIDDEN, f"webhooks are not enabled for site {site!r} ({name})"
            )
        return secret

    def _store(
        self, site: str, event: str, document: dict[str, Any], delivery_id: str | None
    ) -> int:
        require_current(self.database_url)
        with db.get_engine(self.database_url).begin() as conn:
            return conn.execute(
                sa.insert(template_webhook_events)
                .values(site=site, event=event, payload=document, delivery_id=delivery_id)
                .returning(template_webhook_events.c.id)
            ).scalar_one()

    async def handle(self, request: Request) -> Response:
        site: str | None = None
        try:
            body = await self._read_body(request)
            document, event, site = self._parse(body)
            if not SLUG_RE.match(site) or site not in await run_in_threadpool(self._site_keys):
                raise _Rejected(HTTPStatus.NOT_FOUND, f"unknown site {_short(site)!r}")
            secret = self._secret(site)
            if not verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
                raise _Rejected(HTTPStatus.UNAUTHORIZED, f"missing or invalid {SIGNATURE_HEADER}")
            if event not in EVENT_ENTITIES:
                raise _Rejected(
                    HTTPStatus.UNPROCESSABLE_ENTITY,
                    f"unknown event {_short(event)!r}; known: {', '.join(sorted(EVENT_ENTITIES))}",
                )
            delivery_id = request.headers.get(DELIVERY_HEADER)
            try:
                event_id = await run_in_threadpool(
                    self._store, site, event, document, _short(delivery_id) if delivery_id else None
                )
            except Exception as exc:
                logger.error(
                    "webhook intake: could not store %s of site %s: %s",
                    event,
                    site,
                    type(exc).__name__,
                )
                raise _Rejected(
                    HTTPStatus.SERVICE_UNAVAILABLE, "the event could not be stored, retry later"
                ) from None
        except _Rejected as rejected:
            # The reason only: never the body, the signature or a secret.
            logger.info(
                "webhook refused (%d) for site %s: %s",
                rejected.status,
                _short(site) if site else "?",
                rejected.message,
            )
            return JSONResponse({"error": rejected.message}, status_code=rejected.status)
        except ClientDisconnect:
            return Response(status_code=HTTPStatus.BAD_REQUEST)
        logger.info("webhook %s of site %s stored as event %d", event, site, event_id)
        return JSONResponse({"status": "accepted", "id": event_id}, status_code=HTTPStatus.ACCEPTED)


def build_webhook_app(database_url: str, **intake_options: Any) -> Starlette:
    """The intake application (``intake_options`` go to :class:`WebhookIntake`)."""
    intake = WebhookIntake(database_url, **intake_options)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, intake.handle, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.intake = intake
    return app


class WebhookServer(BackgroundServer):
    """The intake served by uvicorn in a daemon thread (tests, embedding); ``port=0`` picks one.

    ::

        with WebhookServer(database_url) as server:
            requests.post(server.url + WEBHOOK_PATH, data=body, headers=...)
    """

    def __init__(
        self, database_url: str, host: str = DEFAULT_HOST, port: int = 0, **intake_options: Any
    ) -> None:
        super().__init__(
            build_webhook_app(database_url, **intake_options),
            name="webhook server",
            host=host,
            port=port,
        )


def serve(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    database_url: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_level: str = "info",
) -> None:
    """Serve the intake until interrupted (``template-pipeline webhook``)."""
    database_url = database_url or db.dashboard_database_url()
    # Fail now, with the reason, rather than on the first delivery.
    load_registry()
    require_current(database_url)
    app = build_webhook_app(database_url, max_body_bytes=max_body_bytes)
    logger.info("webhook intake listening on http://%s:%d%s", host, port, WEBHOOK_PATH)
    uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off")
    ).run()


__all__ = [
    "DELIVERY_HEADER",
    "EVENT_ENTITIES",
    "SECRET_ENV_PREFIX",
    "SIGNATURE_HEADER",
    "WEBHOOK_PATH",
    "WebhookIntake",
    "WebhookServer",
    "build_webhook_app",
    "entities_for_events",
    "secret_env_name",
    "serve",
    "sign",
    "verify_signature",
]
