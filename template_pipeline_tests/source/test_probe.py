"""The health probe that does not cry wolf.

Behaviour under test: one transient failure (5xx, 429, timeout, connection refused) is tried
again after the configured pause and a site that answers then is ``ok`` (its detail says it
needed a retry); two failures in a row report the site down with the last cause; a refused key,
a missing endpoint or an HTML page are reported at once, without a pause; the pause comes from
``TEMPLATE_HEALTH_RETRY_PAUSE_S`` and is bounded.
"""

from __future__ import annotations

import pytest
import requests
import responses

from template_pipeline.domain.sites import Site
from template_pipeline.source.client import PROBE_SETTINGS, client_for
from template_pipeline.source.probe import probe_site, retry_pause

BASE = "http://probe.test/"
STATS = f"{BASE}api/export/stats"
SITE = Site(
    key="probed", base_url=BASE, api_key="sk-PROBE-0001", api_key_env="TP_PROBE_KEY", name="P"
)


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


class Pauses(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def probe(**kwargs):
    pauses = Pauses()
    result = probe_site(SITE, lambda s: client_for(s, PROBE_SETTINGS), sleep=pauses, **kwargs)
    return result, pauses


@pytest.mark.parametrize(
    "first",
    [
        {"status": 503},
        {"status": 429, "headers": {"Retry-After": "3600"}},
        {"body": requests.exceptions.ReadTimeout("slow")},
        {"body": requests.exceptions.ConnectionError("Connection refused")},
    ],
    ids=["503", "429", "timeout", "refused"],
)
def test_one_transient_failure_is_tried_again(mock, first):
    mock.get(STATS, **first)
    mock.get(STATS, json={"stats": {"paintings": 2}})
    (outcome, latency, detail), pauses = probe(pause=0.5)
    assert outcome == "ok" and latency is not None
    assert pauses == [0.5] and len(mock.calls) == 2
    assert detail.startswith("answered after a retry; first attempt: site 'probed'")


def test_two_failures_in_a_row_report_the_site_down(mock):
    mock.get(STATS, status=502)
    (outcome, _latency, detail), pauses = probe(pause=0.1)
    assert (outcome, len(mock.calls), pauses) == ("bad response", 2, [0.1])
    assert "HTTP 502" in detail


def test_refused_connection_twice_is_unreachable(mock):
    mock.get(STATS, body=requests.exceptions.ConnectionError("Connection refused"))
    (outcome, latency, detail), _ = probe(pause=0)
    assert (outcome, latency) == ("unreachable", None) and "connection refused" in detail


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"status": 401}, "auth refused"),
        ({"status": 404}, "not found"),
        (
            {"body": "<html><title>Login</title></html>", "content_type": "text/html"},
            "bad response",
        ),
    ],
)
def test_what_waiting_cannot_change_is_reported_at_once(mock, answer, outcome):
    mock.get(STATS, **answer)
    (found, _, _), pauses = probe(pause=5)
    assert found == outcome and pauses == [] and len(mock.calls) == 1


def test_the_pause_comes_from_its_variable(monkeypatch):
    assert retry_pause() == 2.0
    monkeypatch.setenv("TEMPLATE_HEALTH_RETRY_PAUSE_S", "0.25")
    assert retry_pause() == 0.25 and retry_pause(1.0) == 1.0
    monkeypatch.setenv("TEMPLATE_HEALTH_RETRY_PAUSE_S", "600")
    with pytest.raises(ValueError, match="between 0 and 60"):
        retry_pause()
