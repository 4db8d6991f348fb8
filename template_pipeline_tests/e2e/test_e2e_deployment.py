"""The deployment works as operators run it: separate processes, one Postgres-backed instance.

A code server, ``dagster-webserver`` and ``dagster-daemon`` run as subprocesses (the shape of
``deploy/``) against a fresh ``DAGSTER_HOME`` holding the repo's ``dagster.yaml`` and two
simulated sites. Through the webserver's GraphQL API, the calls the UI's buttons make, the tests
check that the code location loads cleanly, that the assets are listed with their site
partitions and check definitions, that materialising one site's partition goes through the run
queue and the daemon to success, fills the dashboard tables and runs every check, that the
lineage shows ``order_items`` downstream of ``orders``, and that the daemon runs the sites
sensor. The sensors and schedules run by default: they are paused through the UI before the
daemon starts, so that every run is one a test asked for, and the last test turns the sites
sensor back on.

The GraphQL documents themselves are also validated against the installed ``dagster_graphql``
schema, without any process, so a Dagster upgrade that renames a field fails fast and clearly.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from template_pipeline.apps.simulator import SimSite
from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.tags import GROUP
from template_pipeline.domain.entities import NAMES as ALL_ENTITIES
from template_pipeline.store import db
from template_pipeline_tests.fixtures import deployment as harness

JOB = template_site_sync_job.name
SENSOR = "template_sites_sensor"
# Small sites, one per response envelope: the run takes seconds, not minutes.
SITES = [
    SimSite(key="e2e-north", api_key="e2e-key-north", seed=11, paintings=12, users=5, orders=6),
    SimSite(
        key="e2e-south", api_key="e2e-key-south", seed=12, paintings=8, users=4, orders=3,
        envelope="named", page_cap=5,
    ),
]  # fmt: skip
MATERIALISED, UNREGISTERED = SITES[0].key, SITES[1].key
RUN_TIMEOUT_S = 120.0
TICK_TIMEOUT_S = 60.0


@functools.cache
def _graphql_schema():
    from dagster_graphql.schema import create_schema

    return create_schema().graphql_schema


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(getattr(harness, name), id=name)
        for name in sorted(dir(harness))
        if name.endswith(("_QUERY", "_MUTATION"))
    ],
)
def test_graphql_documents_match_the_installed_schema(document: str) -> None:
    from graphql import parse, validate

    errors = validate(_graphql_schema(), parse(document))
    assert [error.message for error in errors] == []


# --- the running deployment ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(
    postgres_server_url: str, tmp_path_factory, request
) -> Iterator[harness.SimulatedDeployment]:
    work_dir = tmp_path_factory.mktemp("e2e_deployment")
    with harness.simulated_deployment(postgres_server_url, work_dir, SITES) as live:
        reporter = harness.FailureReporter(live.deployment, "live", "e2e")
        with reporter.installed(request.config):
            yield live


@pytest.fixture
def ui(live: harness.SimulatedDeployment) -> harness.DagsterUI:
    return live.ui


@pytest.fixture(scope="module")
def materialised_run(live: harness.SimulatedDeployment) -> dict[str, Any]:
    """One site's partition materialised as an operator does it in the UI: add the partition,
    select every asset, Materialize; the run is queued and the daemon launches it."""
    ui = live.ui
    added = ui.add_dynamic_partition(sites_partitions.name, MATERIALISED)
    assert added["__typename"] == "AddDynamicPartitionSuccess"
    # The entity group's Materialize: the maintenance assets and the fleet view are not in it.
    assets = sorted(name for name in ui.asset_nodes() if name in ALL_ENTITIES)
    run_id = ui.launch_partition_run(JOB, MATERIALISED, assets)
    assert ui.run(run_id)["status"] in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")

    def finished() -> dict[str, Any] | None:
        run = ui.run(run_id)
        return run if run["status"] in harness.FINISHED_RUN_STATUSES else None

    run = harness.wait_for(
        finished,
        what=f"run {run_id} of site {MATERIALISED} to finish",
        timeout=RUN_TIMEOUT_S,
        alive=live.deployment.check_alive,
    )
    assert run["status"] == "SUCCESS", ui.run_errors(run_id)
    return run


@pytest.mark.e2e
def test_the_code_location_loads_without_errors(ui: harness.DagsterUI) -> None:
    locations = ui.locations()
    assert list(locations) == [harness.LOCATION_NAME]
    location = locations[harness.LOCATION_NAME]
    assert location["__typename"] == "RepositoryLocation", location.get("message")
    assert len(location["repositories"]) == 1


@pytest.mark.e2e
def test_assets_are_listed_with_site_partitions_and_their_checks(ui: harness.DagsterUI) -> None:
    from template_pipeline.definitions import defs

    every_node = ui.asset_nodes()
    # Beside the entities, the fleet view and the maintenance assets: one each, not partitioned.
    others = {name: node for name, node in every_node.items() if name not in ALL_ENTITIES}
    assert sorted(others) == ["fleet_status", "personal_data_erasure", "retention"]
    assert not any(node["isPartitioned"] for node in others.values()), others
    nodes = {name: node for name, node in every_node.items() if name in ALL_ENTITIES}
    assert sorted(nodes) == sorted(ALL_ENTITIES)
    for name, node in nodes.items():
        assert node["groupName"] == GROUP, name
        assert node["isPartitioned"], name
        assert JOB in node["jobNames"], name
        partitions = node["partitionDefinition"]
        assert partitions["type"] == "DYNAMIC", name
        assert partitions["dimensionTypes"][0]["dynamicPartitionsDefinitionName"] == (
            sites_partitions.name
        )

    # The UI lists exactly the checks the code defines, with their blocking flag.
    expected: dict[str, set[tuple[str, bool]]] = {name: set() for name in nodes}
    asset_graph = defs.resolve_asset_graph()
    for check_key in asset_graph.asset_check_keys:
        spec = asset_graph.get_check_spec(check_key)
        expected["/".join(check_key.asset_key.path)].add((check_key.name, spec.blocking))
    listed: dict[str, set[tuple[str, bool]]] = {}
    for name, node in nodes.items():
        checks = node["assetChecksOrError"]
        assert checks["__typename"] == "AssetChecks", (name, checks)
        listed[name] = {(c["name"], c["blocking"]) for c in checks["checks"]}
    assert listed == expected


@pytest.mark.e2e
def test_materialising_one_site_partition_fills_the_dashboard_tables(
    live: harness.SimulatedDeployment, ui: harness.DagsterUI, materialised_run: dict[str, Any]
) -> None:
    run = materialised_run
    assert run["jobName"] == JOB
    assert {"key": "dagster/partition", "value": MATERIALISED} in run["tags"]
    # Through the queue: the webserver enqueued it, the daemon took it off the queue and
    # launched it (STARTING), the run worker ran it.
    lifecycle = [
        e["__typename"]
        for e in ui.run_events(run["runId"])
        if e["__typename"]
        in ("RunEnqueuedEvent", "RunStartingEvent", "RunStartEvent", "RunSuccessEvent")
    ]
    assert lifecycle == ["RunEnqueuedEvent", "RunStartingEvent", "RunStartEvent", "RunSuccessEvent"]
    # One step syncs every asset of the site. The UI adds the freshness checks of the selected
    # assets; their step has nothing to judge in a sync (it passes by definition) and skips.
    steps = {s["stepKey"]: s["status"] for s in run["stepStats"]}
    assert steps.pop("template_sync") == "SUCCESS", steps
    assert steps in ({}, {"template_freshness": "SKIPPED"}), steps
    materialised = {
        ("/".join(m["assetKey"]["path"]), m["partition"]) for m in run["assetMaterializations"]
    }
    assert materialised == {(entity, MATERIALISED) for entity in ALL_ENTITIES}
    # Every check of the sync ran in this run for this site (freshness is the hourly health
    # job's); the only failures are warnings (the simulated sites serve a few invalid records on
    # purpose, which the reject-rate checks report).
    executions = {
        key: execution for key, execution in ui.check_executions().items() if key[1] != "freshness"
    }
    assert executions and all(e is not None for e in executions.values()), executions
    assert {(e["runId"], e["partition"]) for e in executions.values()} == {
        (run["runId"], MATERIALISED)
    }
    data = live.simulator.data(MATERIALISED)
    invalid = data.invalid_ids
    failed = {key: e["evaluation"] for key, e in executions.items() if e["status"] != "SUCCEEDED"}
    assert {e["severity"] for e in failed.values()} <= {"WARN"}, failed
    if invalid["paintings"]:
        assert ("paintings", "reject_rate") in failed

    expected_paintings = {p["id"] for p in data.paintings} - invalid["paintings"]
    engine = db.get_engine(live.dashboard_url)
    with engine.connect() as conn:
        paintings = {
            row.template_id
            for row in conn.execute(
                sa.text(
                    "SELECT template_id FROM template_paintings "
                    "WHERE site = :site AND deleted_at IS NULL"
                ),
                {"site": MATERIALISED},
            )
        }
        rejected = conn.execute(
            sa.text(
                "SELECT count(*) FROM template_rejects WHERE site = :site AND entity = 'paintings'"
            ),
            {"site": MATERIALISED},
        ).scalar_one()
        order_ids = set(
            conn.execute(
                sa.text("SELECT template_id FROM template_orders WHERE site = :site"),
                {"site": MATERIALISED},
            ).scalars()
        )
        item_order_ids = set(
            conn.execute(
                sa.text("SELECT order_id FROM template_order_items WHERE site = :site"),
                {"site": MATERIALISED},
            ).scalars()
        )
        sync_runs = {
            row.entity: row.status
            for row in conn.execute(
                sa.text("SELECT entity, status FROM template_sync_runs WHERE run_id = :run_id"),
                {"run_id": run["runId"]},
            )
        }
        other_sites = conn.execute(
            sa.text("SELECT count(*) FROM template_paintings WHERE site <> :site"),
            {"site": MATERIALISED},
        ).scalar_one()
    assert paintings == expected_paintings
    assert rejected == len(invalid["paintings"])
    assert item_order_ids and item_order_ids <= order_ids
    assert sync_runs == dict.fromkeys(ALL_ENTITIES, "success")
    assert other_sites == 0  # a partition run touches its own site only


@pytest.mark.e2e
def test_lineage_shows_order_items_downstream_of_orders(
    ui: harness.DagsterUI, materialised_run: dict[str, Any]
) -> None:
    nodes = ui.asset_nodes()
    assert nodes["order_items"]["dependencyKeys"] == [{"path": ["orders"]}]
    assert {"path": ["order_items"]} in nodes["orders"]["dependedByKeys"]
    # Every endpoint asset is a root: it reads its site, not another asset.
    roots = {
        name for name, node in nodes.items() if name in ALL_ENTITIES and not node["dependencyKeys"]
    }
    assert roots == set(ALL_ENTITIES) - {"order_items"}


@pytest.mark.e2e
def test_the_daemon_runs_the_sites_sensor(
    live: harness.SimulatedDeployment, ui: harness.DagsterUI
) -> None:
    """Turned back on, the sensor's first tick registers the site that is in the sites file
    but not a partition yet, and requests its first sync, which the daemon runs."""
    assert ui.sensor(SENSOR) is not None, f"the code location defines no sensor {SENSOR}"
    assert SENSOR in live.paused_automation  # it runs by default; the fixture paused it
    registered = set(ui.partition_keys("paintings"))
    new_sites = set(live.site_keys) - registered  # both sites when run alone, else the south
    assert UNREGISTERED in new_sites
    assert ui.start_sensor(SENSOR) == "RUNNING"

    def evaluated_tick() -> dict[str, Any] | None:
        state = ui.sensor(SENSOR)
        ticks = state["sensorState"]["ticks"] if state else []
        done = [t for t in ticks if t["status"] != "STARTED"]
        return done[0] if done else None

    tick = harness.wait_for(
        evaluated_tick,
        what=f"the daemon to evaluate sensor {SENSOR}",
        timeout=TICK_TIMEOUT_S,
        alive=live.deployment.check_alive,
    )
    assert tick["status"] == "SUCCESS", tick["error"] or tick["skipReason"]
    added = {
        key
        for result in tick["dynamicPartitionsRequestResults"]
        if result["type"] == "ADD_PARTITIONS"
        for key in result["partitionKeys"] or []
    }
    assert added == new_sites
    assert set(ui.partition_keys("paintings")) == registered | new_sites
    assert len(tick["runIds"]) == len(new_sites)  # one first sync per new site

    def finished(run_id: str) -> dict[str, Any] | None:
        run = ui.run(run_id)
        return run if run["status"] in harness.FINISHED_RUN_STATUSES else None

    synced = set()
    for run_id in tick["runIds"]:
        run = harness.wait_for(
            lambda run_id=run_id: finished(run_id),
            what=f"the sensor's first-sync run {run_id} to finish",
            timeout=RUN_TIMEOUT_S,
            alive=live.deployment.check_alive,
        )
        assert run["status"] == "SUCCESS", ui.run_errors(run_id)
        synced |= {t["value"] for t in run["tags"] if t["key"] == "dagster/partition"}
    assert synced == new_sites
    with db.get_engine(live.dashboard_url).connect() as conn:
        paintings = conn.execute(
            sa.text("SELECT count(*) FROM template_paintings WHERE site = :site"),
            {"site": UNREGISTERED},
        ).scalar_one()
    data = live.simulator.data(UNREGISTERED)
    assert paintings == len(data.paintings) - len(data.invalid_ids["paintings"])
