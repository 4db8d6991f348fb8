"""The health job's alerting: a site is called down only after consecutive failed probes.

Behaviour under test (``check_site_health`` with a scripted prober, on the real tables): fewer
failed probes in a row than ``TEMPLATE_HEALTH_FAILURES_BEFORE_ALERT`` alert nobody; the probe
that reaches it sends one ERROR alert saying since when (the first failed probe of the streak)
and how many; none while the site stays down; an INFO "back up" alert, resolving the down one,
follows only a down alert; the threshold comes from its variable and must be a whole number.
"""

import logging
import uuid
from datetime import timezone

import pytest
import sqlalchemy as sa

from template_pipeline.defs.health import check_site_health
from template_pipeline.defs.resources import AlertSinks
from template_pipeline.domain.sites import Site
from template_pipeline.store import db
from template_pipeline.store.ops_tables import template_alerts, template_site_health

LOG = logging.getLogger("template_pipeline_tests.health")


def probe_in_turn(engine, site: Site, outcomes: list[str]):
    results = []
    for outcome in outcomes:
        detail = "" if outcome == "ok" else "HTTP 503 Service Unavailable"
        latency = 0.01 if outcome == "ok" else None
        results += check_site_health(
            [site],
            engine=engine,
            sinks=AlertSinks(),
            log=LOG,
            prober=lambda _site, o=outcome, d=detail, lat=latency: (o, lat, d),
        )
    return results


def test_alerts_after_consecutive_failures_and_back_up_after_an_alert(url, monkeypatch):
    monkeypatch.setenv("TEMPLATE_HEALTH_FAILURES_BEFORE_ALERT", "3")
    engine = db.get_engine(url)
    key = f"hc-{uuid.uuid4().hex[:8]}"
    site = Site(key=key, base_url="http://x.test/", api_key="k" * 8, api_key_env="X", name="X")
    down = "bad response"
    outcomes = ["ok", down, "ok", down, down, down, down, "ok", "ok"]
    results = probe_in_turn(engine, site, outcomes)
    assert [(r.status, r.failures, r.delivery is not None) for r in results] == [
        ("up", 0, False),
        ("down", 1, False),
        ("up", 1, False),  # one failed probe: no alert, no "back up"
        ("down", 1, False),
        ("down", 2, False),
        ("down", 3, True),  # the third in a row
        ("down", 4, False),
        ("up", 4, True),
        ("up", 0, False),
    ]
    with engine.connect() as conn:
        checked = (
            conn.execute(
                sa.select(template_site_health.c.checked_at)
                .where(template_site_health.c.site == key)
                .order_by(template_site_health.c.id)
            )
            .scalars()
            .all()
        )
        alerts = conn.execute(
            sa.select(template_alerts)
            .where(template_alerts.c.site == key)
            .order_by(template_alerts.c.id)
        ).all()
    assert [a.severity for a in alerts] == ["ERROR", "INFO"]
    assert results[5].down_since == checked[3]  # the first failed probe of the streak
    assert f"since {checked[3].astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" in alerts[0].message
    assert "is down since" in alerts[0].message and "3 failed probes in a row" in alerts[0].message
    assert "503" in alerts[0].message
    assert (
        "again (it was down since" in alerts[1].message and "4 failed probes" in alerts[1].message
    )
    assert all(a.resolved_at is not None for a in alerts)


@pytest.mark.parametrize("value", ["0", "1.5", "two"])
def test_the_threshold_must_be_a_whole_number(monkeypatch, value):
    monkeypatch.setenv("TEMPLATE_HEALTH_FAILURES_BEFORE_ALERT", value)
    with pytest.raises(ValueError, match="TEMPLATE_HEALTH_FAILURES_BEFORE_ALERT"):
        AlertSinks().failures_before_alert()


def test_the_threshold_defaults_to_two_and_a_field_overrides_it(monkeypatch):
    assert AlertSinks().failures_before_alert() == 2
    assert AlertSinks(health_failures_before_alert=5).failures_before_alert() == 5
