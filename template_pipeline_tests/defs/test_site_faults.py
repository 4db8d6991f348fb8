"""One site's sync against hostile servers: bounded, its failures its own, nothing half-written.

Behaviour under test: a listing that never ends is stopped by the count the site's own stats
announce (that entity fails, the site's other data is written); poison records are rejected
alone and the rest of their page is written; a site slower than its deadline fails as a
deadline, site-wide, with every entity either written whole or left as it was; a key revoked
half-way fails the site as refused and leaves what was written before it whole.
"""

from __future__ import annotations

import uuid

import pytest

from template_pipeline.apps.simulator import Faults, SimSite, SimulatorServer
from template_pipeline.defs.resources import TemplateCheckSettings
from template_pipeline.defs.sync.site import SyncSettings, sync_site
from template_pipeline.domain.entities import NAMES
from template_pipeline.domain.sites import load_sites_file, write_sites_file
from template_pipeline.source import ClientSettings
from template_pipeline_tests.fixtures.helpers import query

_SUFFIX = uuid.uuid4().hex[:6]
ENDLESS, POISONED = f"flt-endless-{_SUFFIX}", f"flt-poison-{_SUFFIX}"
SLOW, REVOKED = f"flt-slow-{_SUFFIX}", f"flt-revoked-{_SUFFIX}"
LISTS = ("paintings", "users", "orders", "exhibitions", "custom_requests")
SITES = [
    SimSite(key=ENDLESS, api_key="flt-key-1", seed=61, paintings=30, invalid_ratio=0.0,
            faults=Faults(never_empty=True)),
    SimSite(key=POISONED, api_key="flt-key-2", seed=62, paintings=30, invalid_ratio=0.0,
            faults=Faults(poison={3: "price-nan", 5: "long-id", 8: "price-1e400"})),
    SimSite(key=SLOW, api_key="flt-key-3", seed=63, paintings=40, page_cap=5, invalid_ratio=0.0,
            faults=Faults(slow_ms=150)),
    SimSite(key=REVOKED, api_key="flt-key-4", seed=64, paintings=20, invalid_ratio=0.0,
            faults=Faults(revoke_after=4)),
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with SimulatorServer(SITES) as server, pytest.MonkeyPatch.context() as patch:
        for name, value in server.api_key_env().items():
            patch.setenv(name, value)
        path = write_sites_file(
            tmp_path_factory.mktemp("faults") / "sites.yaml", server.sites_file_entries()
        )
        server.registry = load_sites_file(path)
        yield server


def _sync(server, database_url: str, site: str, **client: object):
    settings = SyncSettings(
        database_url=database_url,
        run_id=f"faults-{uuid.uuid4().hex[:8]}",
        client=ClientSettings(max_retries=0, **client),
        checks=TemplateCheckSettings(),
        entities=frozenset(NAMES),
        check_keys=frozenset(),
        full_max_records=0,  # every endpoint on its own: the faults are in the listings
    )
    return sync_site(server.registry.get(site), settings)


def _live(url: str, entity: str, site: str) -> int:
    [row] = query(
        url,
        f"SELECT count(*) AS n FROM template_{entity} WHERE site = %s AND deleted_at IS NULL",
        site,
    )
    return row["n"]


def test_a_listing_that_never_ends_is_stopped_by_the_sites_own_count(server, database_url):
    report = _sync(server, database_url, ENDLESS)
    failed = {name: outcome.failure for name, outcome in report.entities.items() if outcome.failure}
    assert set(failed) >= {"paintings", "users"}, failed
    assert "announce" in failed["paintings"].reason and "never ends" in failed["paintings"].reason
    assert not failed["paintings"].retryable
    for entity in LISTS:
        assert _live(database_url, entity, ENDLESS) == 0
    # What the site serves honestly is written.
    assert report.entities["settings"].result is not None
    assert report.entities["stats"].result is not None


def test_poison_records_are_rejected_alone(server, database_url):
    report = _sync(server, database_url, POISONED)
    assert not report.failed, report.reason()
    result = report.entities["paintings"].result
    assert result.rejected == 3
    assert _live(database_url, "paintings", POISONED) == 27
    reasons = query(
        database_url,
        "SELECT reason FROM template_rejects WHERE site = %s AND entity = 'paintings'",
        POISONED,
    )
    assert len(reasons) == 3


def test_a_site_slower_than_its_deadline_fails_whole_entities_only(server, database_url):
    report = _sync(server, database_url, SLOW, site_deadline_s=1.5)
    assert report.failed and report.kind() == "deadline"
    assert "deadline" in report.reason()
    data = server.data(SLOW)
    # Each entity is whole or absent: written completely before the deadline, or not at all.
    for entity in LISTS:
        live = _live(database_url, entity, SLOW)
        assert live in (0, len(getattr(data, entity))), (entity, live)
    assert _live(database_url, "paintings", SLOW) == 0  # 8 pages of 150 ms: past 1.5 s


def test_a_key_revoked_half_way_fails_the_site_and_keeps_what_was_whole(server, database_url):
    report = _sync(server, database_url, REVOKED)
    assert report.failed and report.kind() == "auth"
    data = server.data(REVOKED)
    for entity in LISTS:
        live = _live(database_url, entity, REVOKED)
        assert live in (0, len(getattr(data, entity))), (entity, live)
