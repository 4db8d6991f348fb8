"""Hostile input, each case against a simulated server of the test's own, over real HTTP.

Behaviour under test, for every case: it ends in quarantined records or in a clear error that
says what was wrong; what cannot heal is not retried (the server counts the requests); time
and memory stay bounded; the other sites of the same server are untouched. Cases: a poison
record of each kind (ids that are huge integers, ``1e400``, too long or duplicated; NaN,
Infinity, ``1e400``, ``"1e9999"``, negative and absurd prices; an integer beyond 64 bits; NUL
and lone surrogates; a 2 MB field name) quarantined alone while the rest of its page is stored;
a server that ignores ``offset`` (repeating or rotating its records); one that never sends an
empty page (stopped by the site's own count, or by the page cap); HTML with status 200; a
truncated body; a site whose key is revoked, or that fails, half-way through.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from template_pipeline.apps.simulator import Faults, SimSite, SimulatorServer
from template_pipeline.domain.validation import validate_records
from template_pipeline.source.client import TemplateClient
from template_pipeline.source.errors import (
    TemplateAuthenticationError,
    TemplatePaginationError,
    TemplateResponseError,
)

KEY = "sk-HOSTILE-1234"
POISON = {
    2: "huge-id",
    3: "long-id",
    4: "price-nan",
    5: "price-infinity",
    6: "price-1e400",
    7: "price-text-1e9999",
    8: "price-negative",
    9: "price-absurd",
    10: "huge-int",
    11: "nul",
    12: "surrogate",
    13: "field-name",
    14: "id-1e400",
}
EXPECTED_REASONS = {
    2: "id: an integer of 5000 digits, beyond 64 bits",
    3: "id: 3000 characters, longer than any id",
    4: "price: not a finite number (got 'NaN')",
    5: "price: not a finite number (got 'Infinity')",
    6: "price: not a finite number (got '1e400')",
    7: "price: must be <= 9999999999.99",
    8: "price: must be >= 0",
    9: "price: must be <= 9999999999.99",
    10: "views: an integer of 30 digits, beyond 64 bits",
    11: "name: contains a NUL character",
    12: "name: contains invalid Unicode (a lone surrogate)",
    13: "record: 2000",
    14: "id: not a finite number (got '1e400')",
}
SITES = [
    SimSite(
        key="poison",
        api_key=KEY,
        paintings=20,
        page_cap=7,
        invalid_ratio=0.0,
        faults=Faults(poison=POISON),
    ),
    SimSite(
        key="dupes",
        api_key=KEY,
        paintings=12,
        page_cap=5,
        invalid_ratio=0.0,
        faults=Faults(poison={3: "duplicate", 8: "duplicate"}),
    ),
    SimSite(
        key="repeat", api_key=KEY, paintings=30, page_cap=10, faults=Faults(ignore_offset=True)
    ),
    SimSite(
        key="rotate",
        api_key=KEY,
        paintings=30,
        page_cap=10,
        faults=Faults(rotate_ignoring_offset=3),
    ),
    SimSite(key="endless", api_key=KEY, paintings=30, page_cap=10, faults=Faults(never_empty=True)),
    SimSite(key="html", api_key=KEY, paintings=5, faults=Faults(html_every=1)),
    SimSite(key="cut", api_key=KEY, paintings=5, faults=Faults(truncate_every=1)),
    SimSite(key="revoked", api_key=KEY, paintings=30, page_cap=10, faults=Faults(revoke_after=2)),
    SimSite(key="halfway", api_key=KEY, paintings=30, page_cap=10, faults=Faults(fail_after=2)),
    SimSite(key="healthy", api_key=KEY, paintings=25, page_cap=10, invalid_ratio=0.0),
]


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(SITES) as running:
        yield running


def client(server, key: str, **overrides) -> TemplateClient:
    kwargs = dict(
        site=key, base_url=server.base_url(key), api_key=KEY, max_retries=2, backoff_factor=0.01
    )
    kwargs.update(overrides)
    return TemplateClient(**kwargs)


def requests_made(server, key: str, before: int) -> int:
    return server.request_count(key) - before


def test_each_poison_record_is_quarantined_alone(server):
    before = server.request_count("poison")
    tracemalloc.start()
    try:
        with client(server, "poison") as c:
            batches = [validate_records("paintings", page) for page in c.iter_pages("paintings")]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rows = {row["template_id"] for batch in batches for row in batch.rows}
    rejects = [reject for batch in batches for reject in batch.rejects]
    by_id = {reject.template_id: reject.reason for reject in rejects}
    assert len(rejects) == len(POISON)
    assert rows == {i for i in range(1, 21) if i not in POISON}
    for record_id, expected in EXPECTED_REASONS.items():
        # The huge and the long id are shown cut: 99999... and 11111...
        prefix = {2: "9999999999", 3: "1111111111", 14: "1e400"}.get(record_id)
        (reason,) = [
            reason
            for key, reason in by_id.items()
            if (key.startswith(prefix) if prefix else key == str(record_id))
        ]
        assert expected in reason, (record_id, reason)
    for reject in rejects:
        assert len(reject.reason) < 300
        assert reject.template_id is None or len(reject.template_id) < 100
    # 20 records in pages of 7: three pages and the empty one, nothing retried.
    assert requests_made(server, "poison", before) == 4
    assert peak < 64 << 20  # a 2 MB field name and a 5000-digit id among them


def test_duplicate_ids_within_and_across_pages_are_passed_on(server):
    with client(server, "dupes") as c:
        records = c.fetch_list("paintings")
    ids = [record["id"] for record in records]
    assert len(ids) == 12 and ids.count(1) == 3  # left to the IO manager and unique_ids


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("repeat", "repeats the previous page"),
        ("rotate", "was already received: the server ignores offset and rotates its records"),
    ],
)
def test_a_server_that_ignores_offset_is_stopped(server, key, message):
    before = server.request_count(key)
    started = time.monotonic()
    with client(server, key) as c, pytest.raises(TemplatePaginationError, match=message) as info:
        c.fetch_list("paintings")
    assert time.monotonic() - started < 5
    assert requests_made(server, key, before) <= 12 and info.value.retryable is False


def test_a_listing_that_never_ends_is_stopped_by_the_sites_own_count(server):
    before = server.request_count("endless")
    with client(server, "endless") as c, pytest.raises(TemplatePaginationError) as info:
        c.fetch_list("paintings", expected_total=30)
    assert "far more than its own stats announce (at most 1030 expected)" in str(info.value)
    assert requests_made(server, "endless", before) == 104


def test_a_listing_that_never_ends_is_stopped_by_the_page_cap(server):
    with (
        client(server, "endless", max_pages=15) as c,
        pytest.raises(TemplatePaginationError, match="more than 15 pages"),
    ):
        c.fetch_list("paintings")


def test_html_with_status_200_is_not_retried(server):
    before = server.request_count("html")
    with client(server, "html") as c, pytest.raises(TemplateResponseError) as info:
        c.fetch_list("paintings")
    assert "HTML instead of JSON, page title '502 Bad Gateway'" in str(info.value)
    assert requests_made(server, "html", before) == 1 and info.value.retryable is False


def test_a_truncated_body_is_retried_then_named(server):
    before = server.request_count("cut")
    with client(server, "cut") as c, pytest.raises(TemplateResponseError) as info:
        c.fetch_list("paintings")
    assert "the site kept failing after 3 attempts: truncated JSON" in str(info.value)
    assert requests_made(server, "cut", before) == 3


def test_a_key_revoked_half_way_fails_at_once(server):
    before = server.request_count("revoked")
    with client(server, "revoked") as c, pytest.raises(TemplateAuthenticationError) as info:
        c.fetch_list("paintings")
    assert "HTTP 401" in str(info.value) and requests_made(server, "revoked", before) == 3


def test_a_site_failing_half_way_fails_after_its_retries(server):
    before = server.request_count("halfway")
    with client(server, "halfway") as c, pytest.raises(TemplateResponseError) as info:
        c.fetch_list("paintings")
    assert "the site kept failing after 3 attempts: HTTP 500" in str(info.value)
    assert requests_made(server, "halfway", before) == 5
    assert info.value.retryable is True


def test_the_other_sites_are_untouched(server):
    with client(server, "healthy") as c:
        batches = [validate_records("paintings", page) for page in c.iter_pages("paintings")]
    assert sum(len(b.rows) for b in batches) == 25 and not any(b.rejects for b in batches)
