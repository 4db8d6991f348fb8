"""The code location: ``template_pipeline.definitions.defs`` loads and validates.

Behaviour under test: the one ``Definitions`` object loads with no site, key, database URL or
Dagster instance configured (secrets are read when a run starts, never at import); Dagster's own
validation accepts it, in process and through ``dagster definitions validate`` from the repo
root; and the asset graph is the contract of the README: the eight entity assets, partitioned by
the ``template_sites`` dynamic partitions, ``order_items`` downstream of ``orders``, each with a
group, kinds, a description and its table, all materialised by one step of the site sync job,
whose checks are the sync's own (freshness is the health job's).
"""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from template_pipeline.definitions import defs
from template_pipeline.defs.assets import template_site_sync_job, template_sync
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.tags import GROUP, IO_MANAGER_KEY
from template_pipeline.domain import config
from template_pipeline.domain.entities import NAMES as ENTITIES

# Prefixes of every variable that configures the project or holds a secret: the subprocess
# checks run without any of them, as on a fresh clone.
_CONFIG_PREFIXES = ("TEMPLATE_", "DASHBOARD_", "DAGSTER_", "ALERT_", "WEBHOOK_")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_CONFIG_PREFIXES) and "KEY" not in name and "SECRET" not in name
    }
    env.update(extra)
    return env


def test_definitions_load_and_validate_without_configuration(monkeypatch):
    for name in list(os.environ):
        if name.startswith(_CONFIG_PREFIXES):
            monkeypatch.delenv(name)
    dg.Definitions.validate_loadable(defs)
    # Resolving the jobs builds every resource definition: still no environment needed.
    assert {job.name for job in defs.resolve_all_job_defs()} >= {template_site_sync_job.name}


def test_dagster_definitions_validate_cli(tmp_path):
    # A fresh interpreter with no project variable at all proves that loading needs no secret.
    # DAGSTER_HOME is an empty folder: without one the CLI falls back to the repo root's
    # dagster.yaml, whose PostgreSQL storage needs DAGSTER_POSTGRES_URL.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "definitions",
            "validate",
            "-m",
            "template_pipeline.definitions",
        ],
        cwd=config.PROJECT_ROOT,
        env=_clean_env(DAGSTER_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Validation successful" in output


def test_asset_graph_is_the_eight_entities_partitioned_by_site():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    # Besides the entities, the retention asset (defs.retention), the fleet view and the
    # personal-data erasure: not partitioned.
    operations = {"retention", "fleet_status", "personal_data_erasure"}
    assert keys == set(ENTITIES) | operations
    for name in operations:
        assert graph.get(dg.AssetKey(name)).partitions_def is None
    for entity in ENTITIES:
        node = graph.get(dg.AssetKey(entity))
        assert node.partitions_def == sites_partitions
        assert node.partitions_def.name == "template_sites"
        expected_parents = {dg.AssetKey("orders")} if entity == "order_items" else set()
        assert set(node.parent_keys) == expected_parents, entity
    assert dg.AssetKey("order_items") in graph.get(dg.AssetKey("orders")).child_keys


@pytest.mark.parametrize("entity", ENTITIES)
def test_each_asset_says_what_it_is(entity):
    node = defs.resolve_asset_graph().get(dg.AssetKey(entity))
    assert node.group_name == GROUP
    assert node.kinds == {"python", "postgres"}
    assert node.description and node.description.strip()
    assert node.metadata["table"] == f"template_{entity}"
    assert node.io_manager_key == IO_MANAGER_KEY
    # One step for every entity: a retry of it would re-sync every site of the run.
    assert node.assets_def.op.name == template_sync.op.name
    assert node.assets_def.op.retry_policy is None


def test_site_sync_job_selects_every_asset_and_its_checks():
    job = defs.resolve_job_def(template_site_sync_job.name)
    selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert selected == set(ENTITIES)
    assert job.partitions_def == sites_partitions
    # One step: every asset and every check of the sync, in the same op.
    assert list(job.graph.node_dict) == ["template_sync"]
    # Every entity but stats (only freshness judges it) has checks in the same job; freshness is not
    # evaluated by a sync (it passes by definition there): the health job evaluates it.
    checks = job.asset_layer.asset_graph.asset_check_keys
    assert {key.asset_key.to_user_string() for key in checks} == set(ENTITIES) - {"stats"}
    assert "freshness" not in {key.name for key in checks}
