"""Bounded memory per response and per record.

Behaviour under test: gzip and deflate bodies (zlib-wrapped and raw) are inflated by the client
itself; a body over ``max_response_bytes`` after decompression fails while it is read (a
Content-Length beyond the limit before reading at all), without a retry, and a real gzip bomb
(a few hundred MB inflated) ends within the limit's memory and in well under a second; corrupt
or unrequested encodings are clear errors; an error body is read only in part; a document
nested 10,000 levels deep is an error saying so, on both parsing paths, never a
``RecursionError``; a record over ``max_record_bytes`` (a 5 MB field name) is quarantined alone,
with a bounded reject, while the rest of its page is validated.
"""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
import zlib

import orjson
import pytest
import responses

from template_pipeline.apps.simulator import Faults, SimSite, SimulatorServer
from template_pipeline.domain.screening import Quarantined
from template_pipeline.domain.validation import validate_records
from template_pipeline.source.client import TemplateClient
from template_pipeline.source.errors import TemplateResponseError, TemplateTooLargeError

SITE = "atelier-lourd"
BASE = "http://lourd.test/"
KEY = "sk-LIMITS-7777"
PAGE = {"data": [{"id": 1, "name": "Nympheas", "price": "12.00"}]}


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def make(**overrides) -> TemplateClient:
    kwargs = dict(site=SITE, base_url=BASE, api_key=KEY, max_retries=2, sleep=lambda s: None)
    kwargs.update(overrides)
    return TemplateClient(**kwargs)


def url(endpoint: str) -> str:
    return f"{BASE}api/export/{endpoint}"


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("identity", lambda data: data),
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw", "identity"],
)
def test_compressed_bodies_are_inflated(mock, encoding, encode):
    body = json.dumps({"stats": {"paintings": 3}}).encode()
    mock.get(
        url("stats"),
        body=encode(body),
        headers={"Content-Encoding": encoding},
        content_type="application/json",
    )
    with make() as client:
        assert client.fetch_stats() == {"paintings": 3}
    assert mock.calls[0].request.headers["Accept-Encoding"] == "gzip, deflate"


def test_a_body_over_the_limit_fails_while_read_not_retried(mock):
    big = {"data": [{"id": i, "name": "x" * 100} for i in range(100)]}
    mock.get(
        url("users"),
        body=gzip.compress(orjson.dumps(big)),
        headers={"Content-Encoding": "gzip"},
        content_type="application/json",
    )
    with make(max_response_bytes=4096) as client, pytest.raises(TemplateTooLargeError) as info:
        client.fetch_list("users")
    assert "the response is larger than 4096 bytes after decompression" in str(info.value)
    assert "TEMPLATE_MAX_RESPONSE_BYTES" in str(info.value)
    assert len(mock.calls) == 1 and info.value.retryable is False


def test_a_content_length_over_the_limit_fails_before_reading(mock):
    body = b"[" + b" " * 5000 + b"]"
    mock.get(
        url("users"),
        body=body,
        content_type="application/json",
        headers={"Content-Length": str(len(body))},
    )
    with make(max_response_bytes=1000) as client, pytest.raises(TemplateTooLargeError) as info:
        client.fetch_list("users")
    assert "its Content-Length says 5002" in str(info.value)


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({"Content-Encoding": "gzip"}, b"\x1f\x8b not really gzip", "corrupt gzip body"),
        ({"Content-Encoding": "br"}, b"\x0b\x02\x80{}\x03", "encoded as 'br', which was not"),
    ],
    ids=["corrupt-gzip", "brotli"],
)
def test_unreadable_encodings_are_clear_errors(mock, headers, body, message):
    mock.get(url("stats"), body=body, headers=headers, content_type="application/json")
    with make() as client, pytest.raises(TemplateResponseError, match=message):
        client.fetch_stats()
    assert len(mock.calls) == 1


def test_an_error_body_is_read_only_in_part(mock):
    mock.get(
        url("stats"),
        status=400,
        body=b'{"error": "' + b"x" * 5_000_000 + b'"}',
        content_type="application/json",
    )
    with make(max_response_bytes=1 << 20) as client, pytest.raises(TemplateResponseError) as info:
        client.fetch_stats()
    assert info.value.status == 400 and len(str(info.value)) < 600


@pytest.mark.parametrize("careful", [False, True], ids=["orjson", "json-fallback"])
def test_a_document_nested_10000_levels_is_an_error_not_a_recursion_error(mock, careful):
    deep = "[" * 10_000 + "]" * 10_000
    # A NaN makes orjson refuse the page before it sees the depth: the json path must say it too.
    extra = ', "price": NaN' if careful else ""
    body = f'{{"data": [{{"id": 1{extra}, "nested": {deep}}}]}}'
    mock.get(url("paintings"), body=body, content_type="application/json")
    with make() as client, pytest.raises(TemplateTooLargeError) as info:
        client.fetch_list("paintings")
    assert "nested deeper than 1024 levels" in str(info.value)
    assert len(mock.calls) == 1 and info.value.retryable is False


def test_a_record_nested_900_levels_is_quarantined_alone(mock):
    deep = "[" * 900 + "]" * 900
    body = (
        '{"data": [{"id": 1, "name": "Iris", "price": "1", "category": "c", "image": "i", '
        f'"nested": {deep}}}, {{"id": 2, "name": "Lys", "price": "1", "category": "c", '
        '"image": "j"}]}'
    )
    mock.get(url("paintings"), body=body, content_type="application/json")
    with make(page_size=10) as client:
        page = next(client.iter_pages("paintings"))
    batch = validate_records("paintings", page)
    assert [row["template_id"] for row in batch.rows] == [2]
    (reject,) = batch.rejects
    assert "nested deeper than 200 levels" in reject.reason and len(reject.reason) < 120
    assert len(orjson.dumps(reject.payload)) < 1000


def test_a_record_over_the_record_limit_is_quarantined_alone(mock):
    records = [
        {"id": 1, "name": "Iris", "price": "10.00", "category": "Huile", "image": "a.jpg"},
        {"id": 2, "name": "Lys", "price": "10.00", "notes": "n" * 5000},
        {"id": 3, "name": "Rose", "price": "10.00", "category": "Huile", "image": "c.jpg"},
    ]
    mock.get(url("paintings"), json={"data": records})
    mock.get(url("paintings"), json={"data": []})
    with make(max_record_bytes=1000, page_size=10) as client:
        page = next(client.iter_pages("paintings"))
    assert [type(r) for r in page] == [dict, Quarantined, dict]
    batch = validate_records("paintings", page)
    assert sorted(row["template_id"] for row in batch.rows) == [1, 3]
    (reject,) = batch.rejects
    assert reject.template_id == "2"
    assert "more than the 1000 allowed (TEMPLATE_MAX_RECORD_BYTES)" in reject.reason
    assert reject.payload["fields"] == ["id", "name", "price", "notes"]


def test_a_5_mb_field_name_is_quarantined_and_bounded_everywhere(mock):
    huge = "f" * 5_000_000
    records = [
        {"id": 1, "name": "Iris", "price": "10.00", "category": "Huile", "image": "a.jpg"},
        {"id": 2, "name": "Lys", "price": "10.00", huge: 1},
        {
            "id": 3,
            "name": "Rose",
            "price": "10.00",
            "category": "Huile",
            "image": "c.jpg",
            "g" * 3000: 2,
        },
    ]
    mock.get(
        url("paintings"), body=orjson.dumps({"data": records}), content_type="application/json"
    )
    with make(page_size=10) as client:
        page = next(client.iter_pages("paintings"))
    batch = validate_records("paintings", page)
    assert len(batch.rows) == 2 and len(batch.rejects) == 1
    reject = batch.rejects[0]
    assert len(reject.reason) < 300 and len(orjson.dumps(reject.payload)) < 2000
    # A merely long (3 KB) name is kept with its record, but reported cut.
    assert all(len(name) <= 100 for name in batch.new_fields) and batch.new_fields


@pytest.fixture(scope="module")
def bomb_server():
    sites = [
        SimSite(key="bomb", api_key=KEY, paintings=3, faults=Faults(gzip_bomb_bytes=300 << 20)),
        SimSite(key="healthy", api_key=KEY, paintings=30, page_cap=10),
    ]
    with SimulatorServer(sites) as server:
        yield server


def test_a_gzip_bomb_ends_within_the_limit_and_the_next_site_syncs(bomb_server):
    server = bomb_server
    tracemalloc.start()
    started = time.monotonic()
    try:
        with (
            TemplateClient(
                site="bomb",
                base_url=server.base_url("bomb"),
                api_key=KEY,
                max_response_bytes=4 << 20,
            ) as client,
            pytest.raises(TemplateTooLargeError, match="larger than 4194304 bytes"),
        ):
            client.fetch_list("paintings")
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert server.request_count("bomb") == 1
    assert took < 5 and peak < 32 << 20  # 300 MB inflated, 4 MB allowed
    with TemplateClient(site="healthy", base_url=server.base_url("healthy"), api_key=KEY) as c:
        assert len(c.fetch_list("paintings")) == 30
