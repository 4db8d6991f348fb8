"""Sensors on a test instance: new and removed sites, changed stats, webhook events.

Each sensor is evaluated with ``build_sensor_context``: the sites sensor against a sites file
that changes between ticks, the changes sensor against the Template simulator whose data the
test edits, the webhook sensor against events stored in PostgreSQL. Nothing changed gives a
``SkipReason``, and the cursor moves on.
"""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from template_pipeline.apps.simulator import Faults, SimSite, SimulatorServer
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import DashboardDatabase, TemplateClientResource
from template_pipeline.defs.run_requests import RANGE_END_TAG, RANGE_START_TAG
from template_pipeline.defs.sensors import (
    template_changes_sensor,
    template_sites_sensor,
    template_webhook_sensor,
)
from template_pipeline.defs.sensors.changes import (
    entities_to_sync,
    read_site_numbers,
    stats_numbers,
)
from template_pipeline.defs.sensors.sites import SitesCursor
from template_pipeline.defs.tags import SITE_TAG, TRIGGER_TAG
from template_pipeline.domain.entities import NAMES as ALL_ENTITIES
from template_pipeline.domain.sites import Site, write_sites_file
from template_pipeline.store import db
from template_pipeline.store.ops_tables import template_webhook_events


@pytest.fixture
def instance() -> dg.DagsterInstance:
    # In memory: these sensors use the instance for its partitions only.
    return dg.DagsterInstance.ephemeral()


def _tick(sensor, instance, cursor=None, **resources):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor(context)


def _apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """What the daemon does with the partition requests of a tick."""
    for request in result.dynamic_partitions_requests or ():
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


# --- template_sites_sensor ---------------------------------------------------------------------


def _sites_file(path: Path, monkeypatch, keys: list[str]) -> str:
    entries = []
    for key in keys:
        env = "SENSOR_KEY_" + key.upper().replace("-", "_")
        monkeypatch.setenv(env, "secret-" + key)
        entries.append({"key": key, "base_url": f"http://127.0.0.1:9/t/{key}/", "api_key_env": env})
    return str(write_sites_file(path, entries))


def test_sites_sensor_adds_and_removes_partitions(instance, tmp_path, monkeypatch):
    path = tmp_path / "sites.yaml"
    client = TemplateClientResource(sites_file=str(path))
    _sites_file(path, monkeypatch, ["site-a", "site-b"])

    first = _tick(template_sites_sensor, instance, template_client=client)
    assert isinstance(first, dg.SensorResult)
    (add,) = first.dynamic_partitions_requests
    assert isinstance(add, dg.AddDynamicPartitionsRequest)
    assert add.partitions_def_name == "template_sites"
    assert add.partition_keys == ["site-a", "site-b"]
    # The new sites are one range of the partitions (appended in this order): one run.
    (request,) = first.run_requests
    assert request.run_key == "first-sync:site-a..site-b:1"
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("site-a", "site-b")
    assert request.tags[TRIGGER_TAG] == "new-site"
    assert request.asset_selection is None  # a full first sync
    _apply(instance, first)

    unchanged = _tick(template_sites_sensor, instance, first.cursor, template_client=client)
    assert unchanged.skip_reason is not None and not unchanged.run_requests
    assert "partitions up to date" in unchanged.skip_reason.skip_message
    assert SitesCursor.from_json(unchanged.cursor) == SitesCursor(("site-a", "site-b"), 1)

    _sites_file(path, monkeypatch, ["site-a", "site-c"])
    changed = _tick(template_sites_sensor, instance, unchanged.cursor, template_client=client)
    add, delete = changed.dynamic_partitions_requests
    assert add.partition_keys == ["site-c"]
    assert isinstance(delete, dg.DeleteDynamicPartitionsRequest)
    assert delete.partition_keys == ["site-b"]
    assert [r.run_key for r in changed.run_requests] == ["first-sync:site-c..site-c:2"]
    # A single new site: a single-partition run, tagged with its site.
    assert changed.run_requests[0].partition_key == "site-c"
    assert changed.run_requests[0].tags[SITE_TAG] == "site-c"
    assert SitesCursor.from_json(changed.cursor) == SitesCursor(("site-a", "site-c"), 2)
    _apply(instance, changed)
    assert sorted(instance.get_dynamic_partitions(sites_partitions.name)) == ["site-a", "site-c"]

    # Added back later: a first sync again, under a new run key.
    _sites_file(path, monkeypatch, ["site-a", "site-b", "site-c"])
    again = _tick(template_sites_sensor, instance, changed.cursor, template_client=client)
    assert [r.run_key for r in again.run_requests] == ["first-sync:site-b..site-b:3"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sites: [", "not valid YAML"),
        ("sites:\n  - key: Bad_Key\n    base_url: http://x/\n    api_key_env: K\n", "slug"),
        (
            "sites:\n  - key: ok\n    base_url: http://x/\n    api_key_env: UNSET_VAR_X\n",
            "UNSET_VAR_X",
        ),
    ],
)
def test_sites_sensor_skips_on_an_unusable_registry(instance, tmp_path, content, message):
    instance.add_dynamic_partitions(sites_partitions.name, ["kept"])
    path = tmp_path / "sites.yaml"
    path.write_text(content, encoding="utf-8")
    result = _tick(
        template_sites_sensor,
        instance,
        template_client=TemplateClientResource(sites_file=str(path)),
    )
    assert isinstance(result, dg.SkipReason)
    assert "site registry unusable" in result.skip_message and message in result.skip_message
    assert instance.get_dynamic_partitions(sites_partitions.name) == ["kept"]


# --- template_changes_sensor ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"paintings": 3}, {"paintings": 3}, []),
        ({"paintings": 3}, {"paintings": 4}, ["paintings", "stats"]),
        ({"sold_paintings": 1}, {"sold_paintings": 2}, ["paintings", "stats"]),
        (
            {"orders": 1, "revenue": "10.00"},
            {"orders": 1, "revenue": "12.00"},
            ["orders", "stats", "order_items"],
        ),
        (
            {"users": 1, "total_custom_requests": 2},
            {"users": 2, "total_custom_requests": 3},
            ["users", "custom_requests", "stats"],
        ),
        ({"last_updated": "a"}, {"last_updated": "b"}, list(ALL_ENTITIES)),
        ({"server_time": "a"}, {"server_time": "b"}, []),
        (
            {"paintings": 1, "last_updated": "a"},
            {"paintings": 2, "last_updated": "b"},
            ["paintings", "stats"],
        ),
    ],
)
def test_entities_to_sync(before, after, expected):
    assert entities_to_sync(before, after) == expected


def test_stats_numbers_are_normalised():
    numbers = stats_numbers(
        {"total_paintings": "40", "revenue": 12.5, "last_updated": "x", "nested": {"a": 1}}
    )
    assert numbers["paintings"] == 40
    assert numbers["revenue"] == "12.50"
    assert numbers["last_updated"] == "x"
    assert "nested" not in numbers
    json.dumps(numbers)  # the cursor holds them


@pytest.fixture
def simulated(
    tmp_path, monkeypatch
) -> Iterator[tuple[SimulatorServer, str, TemplateClientResource]]:
    site = f"chg-{uuid.uuid4().hex[:6]}"
    with SimulatorServer([SimSite(key=site, api_key="k", paintings=5, users=2, orders=2)]) as sim:
        path = write_sites_file(tmp_path / "sites.yaml", sim.sites_file_entries())
        for name, value in sim.api_key_env().items():
            monkeypatch.setenv(name, value)
        yield sim, site, TemplateClientResource(sites_file=str(path))


def test_changes_sensor_requests_only_changed_entities(instance, simulated):
    sim, site, client = simulated
    instance.add_dynamic_partitions(sites_partitions.name, [site])

    first = _tick(template_changes_sensor, instance, template_client=client)
    assert first.skip_reason is not None and "first look" in first.skip_reason.skip_message
    quiet = _tick(template_changes_sensor, instance, first.cursor, template_client=client)
    assert quiet.skip_reason is not None and not quiet.run_requests
    assert quiet.cursor == first.cursor

    data = sim.data(site)
    data.add_painting()
    painted = _tick(template_changes_sensor, instance, quiet.cursor, template_client=client)
    (request,) = painted.run_requests
    assert request.partition_key == site
    assert request.asset_selection == [dg.AssetKey("paintings"), dg.AssetKey("stats")]
    assert (request.tags[SITE_TAG], request.tags[TRIGGER_TAG]) == (site, "changes")
    assert json.loads(painted.cursor)["sites"][site]["numbers"]["paintings"] == 6

    data.add_order()
    ordered = _tick(template_changes_sensor, instance, painted.cursor, template_client=client)
    (request,) = ordered.run_requests
    assert [key.path[-1] for key in request.asset_selection] == ["orders", "stats", "order_items"]
    # Lineage order of the registry: order_items after orders (and after stats).
    assert request.run_key != painted.run_requests[0].run_key

    data.update_painting(data.paintings[0]["id"], price=999.0)  # only last_updated moves
    edited = _tick(template_changes_sensor, instance, ordered.cursor, template_client=client)
    (request,) = edited.run_requests
    assert [key.path[-1] for key in request.asset_selection] == list(ALL_ENTITIES)


def test_changes_sensor_keeps_the_numbers_of_an_unreachable_site(instance, simulated):
    sim, site, client = simulated
    instance.add_dynamic_partitions(sites_partitions.name, [site])
    first = _tick(template_changes_sensor, instance, template_client=client)
    sim.stop()
    down = _tick(template_changes_sensor, instance, first.cursor, template_client=client)
    assert down.skip_reason is not None and f"unreachable: {site}" in down.skip_reason.skip_message
    assert down.cursor == first.cursor


def test_slow_sites_do_not_hold_the_sensor_past_its_budget(monkeypatch):
    fast, slow = "chg-fast", "chg-slow"
    sites = [
        SimSite(key=fast, api_key="k1", paintings=1, users=1, orders=1),
        SimSite(key=slow, api_key="k2", paintings=1, users=1, orders=1, faults=Faults(slow_ms=600)),
    ]
    with SimulatorServer(sites) as sim:
        registry = [Site(s.key, sim.base_url(s.key), "K", s.key, api_key=s.api_key) for s in sites]
        read_site_numbers(registry[:1])  # warm up: imports and the first connection
        readings = read_site_numbers(registry, budget_s=0.3)
    assert readings[fast]["paintings"] == 1
    assert isinstance(readings[slow], TimeoutError)


def test_changes_sensor_ignores_sites_without_a_partition(instance, simulated):
    _, _, client = simulated
    result = _tick(template_changes_sensor, instance, template_client=client)
    assert isinstance(result, dg.SkipReason)
    assert "no registered site" in result.skip_message


# --- template_webhook_sensor ----------------------------------------------------------------


def _store_events(url: str, site: str, *events: str) -> list[int]:
    with db.get_engine(url).begin() as conn:
        return [
            conn.execute(
                sa.insert(template_webhook_events)
                .values(site=site, event=event, payload={"event": event, "site": site})
                .returning(template_webhook_events.c.id)
            ).scalar_one()
            for event in events
        ]


def test_webhook_sensor_turns_pending_events_into_runs(instance, database_url):
    site, unregistered = f"whs-{uuid.uuid4().hex[:6]}", f"whs-{uuid.uuid4().hex[:6]}"
    instance.add_dynamic_partitions(sites_partitions.name, [site])
    ids = _store_events(database_url, site, "painting_updated", "order_created", "painting_deleted")
    other = _store_events(database_url, unregistered, "user_created")
    database = DashboardDatabase(database_url=database_url)

    result = _tick(template_webhook_sensor, instance, dashboard_database=database)
    assert isinstance(result, dg.SensorResult)
    mine = [r for r in result.run_requests if r.partition_key == site]
    (request,) = mine
    assert [k.path[-1] for k in request.asset_selection] == [
        "paintings",
        "orders",
        "stats",
        "order_items",
    ]
    assert request.run_key == f"webhook:{site}:{ids[0]}-{ids[-1]}"
    assert (request.tags[SITE_TAG], request.tags[TRIGGER_TAG]) == (site, "webhook")
    assert not any(r.partition_key == unregistered for r in result.run_requests)
    assert int(result.cursor) >= max(ids + other)

    with db.get_engine(database_url).connect() as conn:
        rows = conn.execute(
            sa.select(
                template_webhook_events.c.id,
                template_webhook_events.c.consumed_at,
                template_webhook_events.c.run_key,
            )
            .where(template_webhook_events.c.id.in_(ids + other))
            .order_by(template_webhook_events.c.id)
        ).all()
    assert all(row.consumed_at is not None for row in rows)
    assert [row.run_key for row in rows] == [request.run_key] * 3 + [None]

    again = _tick(template_webhook_sensor, instance, result.cursor, dashboard_database=database)
    assert isinstance(again, dg.SkipReason)
    assert again.skip_message == "no pending webhook event"
