"""The Dagster Postgres IO manager: ``handle_output`` writes a partition and reports it,
``load_input`` gives downstream assets the live rows of their partition, previews stay free of
personal data.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.defs.sync.metadata import preview_markdown
from template_pipeline_tests.fixtures.snapshots import painting, snap, sync, sync_runs, table_rows


def test_handle_output_writes_and_emits_metadata_without_emails(url, site):
    user = {
        "template_id": 4321,
        "name": "Marie Curie",
        "email": "marie@example.org",
        "create_date": datetime(2024, 5, 1, 12, tzinfo=timezone.utc),
        "role": "admin",
        "site_name": "Atelier",
        "extra": {},
    }
    manager = TemplatePostgresIOManager(database_url=url)
    context = dg.build_output_context(
        partition_key=site, asset_key=dg.AssetKey("users"), run_id="run-dagster"
    )
    manager.handle_output(context, snap(site, [user], entity="users"))

    metadata = context.get_logged_metadata()
    assert metadata["inserted"].value == 1 and metadata["dagster/row_count"].value == 1
    assert metadata["table"].value == "template_users" and metadata["new_fields"].value == []
    preview = metadata["preview"].value
    assert "4321" in preview and "admin" in preview
    assert "@" not in preview and "Marie" not in preview
    assert sync_runs(url, site)[-1]["run_id"] == "run-dagster"


def test_handle_output_refuses_a_snapshot_of_another_site(url, site):
    manager = TemplatePostgresIOManager(database_url=url)
    context = dg.build_output_context(partition_key=site, asset_key=dg.AssetKey("paintings"))
    with pytest.raises(ValueError, match="returned for partition"):
        manager.handle_output(context, snap("another-site", [painting(1)]))
    assert table_rows(url, "another-site") == {}


def test_load_input_returns_the_live_rows_of_the_partition(url, site):
    rows = [painting(i) for i in range(3)]
    sync(url, snap(site, rows))
    sync(url, snap(site, rows[:2]))
    sync(url, snap(f"{site}-x", [painting(9)]))
    manager = TemplatePostgresIOManager(database_url=url)

    frame = manager.load_input(
        dg.build_input_context(asset_key=dg.AssetKey("paintings"), partition_key=site)
    )

    assert isinstance(frame, pd.DataFrame)
    assert sorted(frame["template_id"]) == [0, 1]
    assert set(frame["site"]) == {site} and frame["deleted_at"].isna().all()
    assert {"price", "extra", "first_seen_at"} <= set(frame.columns)


def test_materialize_writes_the_partition_and_feeds_downstream(url, site):
    partitions = dg.StaticPartitionsDefinition([site])

    @dg.asset(partitions_def=partitions, io_manager_key="template_io_manager")
    def paintings(context):  # no annotations: this module's are strings (future import)
        return snap(context.partition_key, [painting(1), painting(2)])

    seen: dict[str, Any] = {}

    @dg.asset(partitions_def=partitions)
    def painting_report(paintings):
        # The input is loaded by the Template IO manager: the live rows of this partition.
        seen["ids"] = sorted(paintings["template_id"])

    result = dg.materialize(
        [paintings, painting_report],
        partition_key=site,
        resources={"template_io_manager": TemplatePostgresIOManager(database_url=url)},
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("paintings")
    assert materialization.metadata["inserted"].value == 2
    assert materialization.metadata["dagster/row_count"].value == 2
    assert sorted(table_rows(url, site)) == ["1", "2"]
    assert seen["ids"] == [1, 2]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], "_no rows_"),
        ([{"a": 1, "b": None}], "| a | b |\n|---|---|\n| 1 |  |"),
        ([{"a": "x|y\nz"}], "| a |\n|---|\n| x\\|y z |"),
        ([{"a": "é" * 80}], "| a |\n|---|\n| " + "é" * 57 + "... |"),
    ],
)
def test_preview_markdown(rows, expected):
    assert preview_markdown(rows) == expected
