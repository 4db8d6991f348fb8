"""Bounded time per request, endpoint and site.

Behaviour under test: the endpoint deadline bounds all retries and backoff sleeps of an
endpoint, and its error names the site, the endpoint, the time spent and the last failure; a
wait (backoff or ``Retry-After``) that the deadline cannot afford fails at once; a site deadline
shared by clients stops the next call before any request; the endpoint deadline covers the
consumer's time between pages; and, against a real local server, a trickled or stalled body
ends at the request deadline (one request, no retry), a stall shorter than the deadline but
longer than the read timeout is retried, and a connection cut mid-body is retried then named.
Time is a fake clock wherever no real socket is involved.
"""

from __future__ import annotations

import pickle
import time

import pytest
import responses

from template_pipeline.apps.simulator import Faults, SimSite, SimulatorServer
from template_pipeline.source.client import TemplateClient
from template_pipeline.source.deadline import Budget, Deadline
from template_pipeline.source.errors import TemplateDeadlineError, TemplateResponseError

SITE = "atelier-lent"
BASE = "http://lent.test/"
KEY = "sk-DEADLINE-4242"


class FakeClock:
    """A monotonic clock that moves only when the client sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def client(clock: FakeClock, **overrides) -> TemplateClient:
    kwargs = dict(site=SITE, base_url=BASE, api_key=KEY, page_size=2, clock=clock)
    kwargs["sleep"] = clock.sleep
    kwargs.update(overrides)
    return TemplateClient(**kwargs)


def url(endpoint: str) -> str:
    return f"{BASE}api/export/{endpoint}"


# -- the deadline objects ------------------------------------------------------------------------


def test_deadline_and_budget_on_a_fake_clock(clock):
    request = Deadline(10, "request", clock)
    endpoint = Deadline(4, "endpoint", clock)
    budget = Budget((request, endpoint, None, Deadline(None, "site", clock)))
    assert budget.remaining() == 4 and budget.tightest() is endpoint
    assert budget.bound(30) == 4 and budget.bound(1.5) == 1.5
    clock.now += 5
    assert budget.expired() is endpoint and budget.bound(30) == 0.001
    assert endpoint.elapsed() == 5 and not request.expired()
    assert "endpoint deadline (4 s, TEMPLATE_ENDPOINT_DEADLINE_S)" in endpoint.describe()
    with pytest.raises(ValueError, match="must be positive"):
        Deadline(0, "site", clock)


def test_deadline_at_a_wall_clock_time():
    deadline = Deadline.at_epoch(time.time() + 30)
    assert 29 < deadline.remaining() <= 30 and deadline.scope == "site"
    assert Deadline.at_epoch(time.time() - 5).remaining() < 0.01  # already past: no time left


# -- retries within deadlines ------------------------------------------------------------------


def test_endpoint_deadline_bounds_retries_and_sleeps(mock, clock):
    mock.get(url("users"), status=503, json={"error": "maintenance"})
    c = client(clock, max_retries=1000, backoff_factor=2, max_backoff=8, endpoint_deadline_s=30)
    with c, pytest.raises(TemplateDeadlineError) as info:
        c.fetch_list("users")
    error = info.value
    message = str(error)
    assert message.startswith(f"site '{SITE}', endpoint 'users': gave up after ")
    assert "the endpoint deadline (30 s, TEMPLATE_ENDPOINT_DEADLINE_S)" in message
    assert "last failure: HTTP 503 Service Unavailable" in message and "maintenance" in message
    assert (error.scope, error.limit, error.retryable) == ("endpoint", 30, False)
    assert sum(clock.sleeps) < 30 and error.elapsed < 30
    assert len(mock.calls) < 1000
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.scope, copy.elapsed, str(copy)) == (
        TemplateDeadlineError,
        "endpoint",
        error.elapsed,
        message,
    )


def test_retry_after_beyond_what_the_deadline_leaves_fails_at_once(mock, clock):
    mock.get(url("stats"), status=429, headers={"Retry-After": "20"})
    c = client(clock, endpoint_deadline_s=10, max_retry_after=60)
    with c, pytest.raises(TemplateDeadlineError) as info:
        c.fetch_stats()
    assert len(mock.calls) == 1 and clock.sleeps == []
    assert "less than the 20.0 s of the wait the site asks for (Retry-After)" in str(info.value)
    assert "last failure: HTTP 429" in str(info.value)


def test_shared_site_deadline_stops_the_next_call_before_any_request(mock, clock):
    mock.get(url("stats"), json={"stats": {"paintings": 1}})
    site_deadline = Deadline(5, "site", clock)
    with client(clock, site_deadline=site_deadline) as first:
        assert first.fetch_stats() == {"paintings": 1}
    clock.now += 6
    with (
        client(clock, site_deadline=site_deadline) as second,
        pytest.raises(TemplateDeadlineError) as info,
    ):
        second.fetch_stats()
    assert info.value.scope == "site" and len(mock.calls) == 1
    assert "the site deadline (5 s, TEMPLATE_SITE_DEADLINE_S) passed before attempt 1" in str(
        info.value
    )


def test_site_deadline_starts_with_the_client_and_can_restart(mock, clock):
    mock.get(url("stats"), json={"stats": {}})
    with client(clock, site_deadline_s=5) as c:
        clock.now += 6
        with pytest.raises(TemplateDeadlineError, match="site deadline"):
            c.fetch_stats()
        c.start_site_deadline()
        assert c.fetch_stats() == {}


def test_endpoint_deadline_counts_the_time_between_pages(mock, clock):
    mock.get(url("paintings"), json={"data": [{"id": 1}, {"id": 2}]})
    with client(clock, endpoint_deadline_s=60) as c:
        pages = c.iter_pages("paintings")
        assert next(pages) == [{"id": 1}, {"id": 2}]
        clock.now += 61  # the consumer took that long with the first page
        with pytest.raises(TemplateDeadlineError) as info:
            next(pages)
    assert info.value.scope == "endpoint" and len(mock.calls) == 1


# -- real sockets: trickled, stalled and cut bodies -------------------------------------------


@pytest.fixture(scope="module")
def server():
    sites = [
        SimSite(
            key="trickle",
            api_key=KEY,
            paintings=5,
            faults=Faults(trickle_bytes=1, trickle_interval_ms=40),
        ),
        SimSite(
            key="stall",
            api_key=KEY,
            paintings=5,
            faults=Faults(stall_after_bytes=40, stall_ms=4000),
        ),
        SimSite(
            key="pause",
            api_key=KEY,
            paintings=5,
            faults=Faults(stall_after_bytes=40, stall_ms=1500),
        ),
        SimSite(key="reset", api_key=KEY, paintings=5, faults=Faults(reset_after_bytes=40)),
    ]
    with SimulatorServer(sites) as running:
        yield running


def real_client(server, key: str, **overrides) -> TemplateClient:
    kwargs = dict(site=key, base_url=server.base_url(key), api_key=KEY, backoff_factor=0.01)
    kwargs.update(overrides)
    return TemplateClient(**kwargs)


@pytest.mark.parametrize("key", ["trickle", "stall"])
def test_trickled_or_stalled_body_ends_at_the_request_deadline(server, key):
    before = server.request_count(key)
    started = time.monotonic()
    with (
        real_client(server, key, request_deadline_s=0.6, read_timeout=30) as c,
        pytest.raises(TemplateDeadlineError) as info,
    ):
        c.fetch_stats()
    took = time.monotonic() - started
    assert 0.5 < took < 3.0
    message = str(info.value)
    assert f"site '{key}', endpoint 'stats': gave up after 0.6 s" in message
    assert "the request deadline (0.6 s, TEMPLATE_REQUEST_DEADLINE_S)" in message
    assert "while reading the body" in message and "bytes received" in message
    assert server.request_count(key) - before == 1  # a deadline is not retried
    assert info.value.retryable is False


def test_a_stall_longer_than_the_read_timeout_is_retried(server):
    before = server.request_count("pause")
    started = time.monotonic()
    with (
        real_client(server, "pause", read_timeout=0.3, max_retries=1) as c,
        pytest.raises(TemplateResponseError) as info,
    ):
        c.fetch_stats()
    assert time.monotonic() - started < 3.0
    assert server.request_count("pause") - before == 2
    assert "after 2 attempts: read timeout while reading the body" in str(info.value)
    assert info.value.retryable is True


def test_a_connection_cut_mid_body_is_retried_then_named(server):
    before = server.request_count("reset")
    with (
        real_client(server, "reset", max_retries=2) as c,
        pytest.raises(TemplateResponseError) as info,
    ):
        c.fetch_list("paintings")
    assert server.request_count("reset") - before == 3
    assert "the site kept failing after 3 attempts: the body was cut short" in str(info.value)


# -- configuration ------------------------------------------------------------------------------


def test_the_resource_reads_the_limits_from_their_variables(monkeypatch):
    from template_pipeline.defs.resources import TemplateClientResource
    from template_pipeline.domain import config
    from template_pipeline.source.client import SYNC_SETTINGS

    defaults = TemplateClientResource().settings()
    assert defaults == SYNC_SETTINGS  # the variables' defaults are the client's
    for variable in (
        config.REQUEST_DEADLINE_S,
        config.ENDPOINT_DEADLINE_S,
        config.SITE_DEADLINE_S,
        config.MAX_RESPONSE_BYTES,
        config.MAX_RECORD_BYTES,
    ):
        monkeypatch.setenv(variable.name, "7")
    settings = TemplateClientResource(site_deadline_s=99).settings()
    assert (settings.request_deadline_s, settings.endpoint_deadline_s) == (7, 7)
    assert (settings.max_response_bytes, settings.max_record_bytes) == (7, 7)
    assert settings.site_deadline_s == 99  # a field set wins over its variable
    monkeypatch.setenv(config.REQUEST_DEADLINE_S.name, "soon")
    with pytest.raises(ValueError, match="TEMPLATE_REQUEST_DEADLINE_S"):
        TemplateClientResource().settings()
