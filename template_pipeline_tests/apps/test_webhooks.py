"""Webhook intake over real HTTP: signed events are stored, everything else gets a 4xx.

The intake runs under uvicorn on 127.0.0.1 (a free port) against the session database. Only the
correctly signed event of a known site with a known event name reaches
``template_webhook_events``; bad signatures, unknown sites and events, sites without a secret,
malformed and oversize bodies are refused and never stored.
"""

import json
import uuid
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa

from template_pipeline.apps.cli import build_parser
from template_pipeline.apps.webhooks import (
    DELIVERY_HEADER,
    EVENT_ENTITIES,
    SIGNATURE_HEADER,
    WEBHOOK_PATH,
    WebhookServer,
    entities_for_events,
    secret_env_name,
    sign,
    verify_signature,
)
from template_pipeline.domain.sites import Site, SiteConfigError, SiteRegistry
from template_pipeline.store import db
from template_pipeline.store.ops_tables import template_webhook_events

SECRET = "whsec-test-0123456789"


@pytest.mark.parametrize(
    ("event", "entities"),
    [
        ("painting_updated", ["paintings", "stats"]),
        ("user_created", ["users", "stats"]),
        ("order_created", ["orders", "stats", "order_items"]),
        ("exhibition_deleted", ["exhibitions", "stats"]),
        ("custom_request_created", ["custom_requests", "stats"]),
        ("settings_updated", ["settings", "stats"]),
        ("stats_updated", []),
    ],
)
def test_events_map_to_entities(event, entities):
    assert entities_for_events([event]) == entities


def test_event_names_come_from_the_spec_table():
    assert len(EVENT_ENTITIES) == 5 * 3 + 1
    assert {"painting_created", "painting_updated", "painting_deleted"} <= set(EVENT_ENTITIES)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("atelier-marie", "TEMPLATE_WEBHOOK_SECRET_ATELIER_MARIE"),
        ("a1", "TEMPLATE_WEBHOOK_SECRET_A1"),
    ],
)
def test_secret_variable_name(key, name):
    assert secret_env_name(key) == name


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        (sign(SECRET, b'{"a":1}'), True),
        (sign(SECRET, b'{"a":1}').upper().replace("SHA256=", "sha256="), True),
        ("  " + sign(SECRET, b'{"a":1}') + " ", True),
        (sign("other-secret", b'{"a":1}'), False),
        (sign(SECRET, b'{"a":2}'), False),
        (sign(SECRET, b'{"a":1}').replace("sha256=", ""), False),
        (sign(SECRET, b'{"a":1}').replace("sha256=", "sha1="), False),
        ("", False),
        (None, False),
    ],
)
def test_verify_signature(header, valid):
    assert verify_signature(SECRET, b'{"a":1}', header) is valid


def test_cli_has_a_webhook_command():
    args = build_parser().parse_args(["webhook", "--host", "127.0.0.1", "--port", "9999"])
    assert (args.host, args.port, args.max_body_bytes) == ("127.0.0.1", 9999, 65536)


@pytest.fixture
def intake(database_url) -> Iterator[tuple[WebhookServer, str, str]]:
    site, silent = f"whk-{uuid.uuid4().hex[:6]}", f"whk-{uuid.uuid4().hex[:6]}"
    registry = SiteRegistry(
        sites=tuple(
            Site(key, f"http://127.0.0.1:9/t/{key}/", "K", key, api_key="k")
            for key in (site, silent)
        ),
        source="test",
    )
    server = WebhookServer(
        database_url,
        registry_loader=lambda: registry,
        environ={secret_env_name(site): SECRET},  # ``silent`` has no secret
        max_body_bytes=1024,
    ).start()
    try:
        yield server, site, silent
    finally:
        server.stop()


def _stored(url: str, *sites: str) -> list[sa.Row]:
    with db.get_engine(url).connect() as conn:
        return conn.execute(
            sa.select(template_webhook_events)
            .where(template_webhook_events.c.site.in_(sites))
            .order_by(template_webhook_events.c.id)
        ).all()


def _post(server: WebhookServer, body: bytes, signature: str | None, **headers: str):
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    headers.setdefault("Content-Type", "application/json")
    headers["Connection"] = "close"  # no idle keep-alive connection to delay the server's stop
    return requests.post(server.url + WEBHOOK_PATH, data=body, headers=headers, timeout=5)


def test_a_signed_event_is_stored(intake, database_url):
    server, site, _ = intake
    body = json.dumps({"event": "painting_updated", "site": site, "painting_id": 12}).encode()
    response = _post(server, body, sign(SECRET, body), **{DELIVERY_HEADER: "d-1"})
    assert response.status_code == 202
    event_id = response.json()["id"]
    (row,) = _stored(database_url, site)
    assert (row.id, row.event, row.delivery_id) == (event_id, "painting_updated", "d-1")
    assert row.payload == {"event": "painting_updated", "site": site, "painting_id": 12}
    assert row.consumed_at is None and row.run_key is None
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}


def _refusals(site: str, silent: str) -> list[tuple[str, bytes, str | None, int, str]]:
    def doc(**fields) -> bytes:
        return json.dumps(fields).encode()

    good = doc(event="order_created", site=site)
    return [
        ("wrong secret", good, sign("not-the-secret", good), 401, "Signature"),
        (
            "signature of another body",
            good,
            sign(SECRET, doc(event="order_created", site="x")),
            401,
            "Signature",
        ),
        ("no signature", good, None, 401, "Signature"),
        (
            "unknown site",
            doc(event="order_created", site="nobody"),
            sign(SECRET, doc(event="order_created", site="nobody")),
            404,
            "unknown site",
        ),
        (
            "site without secret",
            doc(event="order_created", site=silent),
            sign(SECRET, doc(event="order_created", site=silent)),
            403,
            "not enabled",
        ),
        (
            "unknown event",
            doc(event="painting_painted", site=site),
            sign(SECRET, doc(event="painting_painted", site=site)),
            422,
            "unknown event",
        ),
        ("not JSON", b"event=order_created", sign(SECRET, b"event=order_created"), 400, "JSON"),
        ("not an object", b"[1, 2]", sign(SECRET, b"[1, 2]"), 400, "object"),
        ("no event", doc(site=site), sign(SECRET, doc(site=site)), 400, "'event'"),
        (
            "site not a string",
            doc(event="order_created", site=3),
            sign(SECRET, doc(event="order_created", site=3)),
            400,
            "'site'",
        ),
        (
            "NUL character",
            doc(event="order_created", site=site, note="a\x00b"),
            sign(SECRET, doc(event="order_created", site=site, note="a\x00b")),
            400,
            "NUL",
        ),
        (
            "oversize",
            doc(event="order_created", site=site, pad="x" * 2000),
            sign(SECRET, doc(event="order_created", site=site, pad="x" * 2000)),
            413,
            "larger",
        ),
    ]


def test_bad_requests_are_refused_and_never_stored(intake, database_url):
    server, site, silent = intake
    for label, body, signature, status, message in _refusals(site, silent):
        response = _post(server, body, signature)
        assert response.status_code == status, label
        assert message in response.json()["error"], label
    assert _stored(database_url, site, silent, "nobody") == []


def test_oversize_body_without_content_length_is_refused(intake, database_url):
    server, site, _ = intake
    body = json.dumps({"event": "order_created", "site": site, "pad": "x" * 4000}).encode()

    def chunks() -> Iterator[bytes]:  # sent chunked: the size is only known while reading
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    response = requests.post(
        server.url + WEBHOOK_PATH,
        data=chunks(),
        headers={SIGNATURE_HEADER: sign(SECRET, body)},
        timeout=5,
    )
    assert response.status_code == 413
    assert _stored(database_url, site) == []


def test_registry_errors_answer_503_and_store_nothing(database_url):
    def broken() -> SiteRegistry:
        raise SiteConfigError("sites file /x.yaml is not valid YAML")

    with WebhookServer(database_url, registry_loader=broken, environ={}) as server:
        body = b'{"event": "order_created", "site": "any"}'
        response = _post(server, body, sign(SECRET, body))
    assert response.status_code == 503
    assert "registry" in response.json()["error"]
