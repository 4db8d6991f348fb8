"""A database written by the previous release (0.1.0) upgrades with ``template-pipeline migrate``
and keeps every row.

The previous release's package is extracted from this repository's history (``git archive``) and
run in a subprocess with that tree first on ``PYTHONPATH``, so its own code creates its schema
(``create_all``) and writes a simulated site through its own validation and write path, records
with non-integer ids included (that release stored ids as text). Under test: the baseline
revision is exactly the schema that release created; after ``template-pipeline migrate`` every
row is still there, converted or moved to ``template_rejects`` (counted in the command's
output); ids are bigint and ``WHERE template_id = 5`` works; the views show the site with the
previous release's last sync as ``sync_timestamp``; and a sync by this release of the same data
writes no entity row.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from template_pipeline.apps.simulator import SimSite, generate_site_data
from template_pipeline.domain.batches import EntitySnapshot, ValidatedBatch
from template_pipeline.domain.validation import (
    explode_order_items,
    validate_records,
    validate_stats,
)
from template_pipeline.store import migrate
from template_pipeline.store.reads import read_live_rows
from template_pipeline.store.schema_version import REQUIRED_REVISION
from template_pipeline.store.writer import write_snapshot
from template_pipeline_tests.fixtures.catalog import column_types, scratch_database, tables_catalog
from template_pipeline_tests.fixtures.helpers import query

REPO = Path(__file__).resolve().parents[2]
# The last commit of release 0.1.0.
PREVIOUS_RELEASE = "c0417f0"
WRITER = REPO / "template_pipeline_tests" / "fixtures" / "previous_release_write.py"
SITE = "legacy"
BASE_URL = f"http://127.0.0.1:8765/t/{SITE}/"
ENTITY_TABLES = (
    "paintings",
    "users",
    "orders",
    "order_items",
    "settings",
    "exhibitions",
    "custom_requests",
    "stats",
)
# What 0002 must move to template_rejects: the records below that only text ids allowed.
EXPECTED_MOVED = {"paintings": 2, "users": 1, "orders": 2}


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False)
    except FileNotFoundError:
        pytest.fail("git is needed: this test runs the previous release from the repo's history")


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory) -> Path:
    """The previous release's ``template_pipeline`` package, extracted from history."""
    found = _git("rev-parse", "--verify", "--quiet", f"{PREVIOUS_RELEASE}^{{commit}}")
    if found.returncode != 0:
        pytest.fail(
            f"commit {PREVIOUS_RELEASE} (release 0.1.0) is not in this clone's history: the "
            "upgrade test needs it; fetch the full history (git fetch --unshallow)"
        )
    archive = _git("archive", PREVIOUS_RELEASE, "template_pipeline")
    assert archive.returncode == 0, archive.stderr.decode()
    tree = tmp_path_factory.mktemp("release-0.1.0")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _pages() -> dict[str, Any]:
    """A simulated site, plus the records only the previous release's text ids accepted."""
    site = SimSite(key=SITE, api_key="k", seed=3, paintings=30, users=10, orders=12,
                   exhibitions=4, custom_requests=5, invalid_ratio=0.0)  # fmt: skip
    data = generate_site_data(site)
    # As a client decodes them.
    pages = {e: orjson.loads(orjson.dumps(data.records(e))) for e in ("settings", *_LISTS)}
    twelve = next(p for p in pages["paintings"] if p["id"] == 12)
    pages["paintings"] += [
        {**twelve, "id": "0012"},  # the same integer as 12 once converted
        {**twelve, "id": "P-7", "name": "Toile sans numéro"},
    ]
    pages["users"].append({**pages["users"][1], "id": "u-3", "email": "u3@example.fr"})
    order = next(o for o in pages["orders"] if o["items"])
    pages["orders"] += [
        {**order, "id": "A-1"},
        {**order, "id": 9001, "items": [{**order["items"][0], "painting_id": "P-7"}]},
    ]
    return {**pages, "site": SITE, "base_url": BASE_URL, "stats": data.stats()}


_LISTS = ("paintings", "users", "orders", "exhibitions", "custom_requests")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEMPLATE_", "DASHBOARD_", "DAGSTER_", "PYTHONPATH"))
    }
    return {**env, **extra}


def _write_with_previous_release(tree: Path, url: str, pages_file: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(WRITER), url, str(pages_file)],
        env=_env(PYTHONPATH=str(tree)),
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _counts(url: str) -> dict[str, int]:
    counts = {
        e: query(url, f"SELECT count(*) AS n FROM template_{e}")[0]["n"]
        for e in (*ENTITY_TABLES, "sync_runs")
    }
    # Revision 0006 collapses identical rejects into one row: count the sightings it kept.
    [columns] = query(
        url,
        "SELECT count(*) AS n FROM information_schema.columns "
        "WHERE table_name = 'template_rejects' AND column_name = 'times_seen'",
    )
    seen = "coalesce(sum(times_seen), 0)" if columns["n"] else "count(*)"
    counts["rejects"] = query(url, f"SELECT {seen} AS n FROM template_rejects")[0]["n"]
    return counts


def _xmins(url: str) -> dict[str, list[tuple[Any, str]]]:
    return {
        e: [
            (r["k"], r["xmin"])
            for r in query(url, f"SELECT ctid::text AS k, xmin::text AS xmin FROM template_{e}")
        ]
        for e in ENTITY_TABLES
    }


def _sync_with_this_release(url: str, pages: dict[str, Any]) -> dict[str, Any]:
    """The same site, through this release's validation and write path."""
    results = {}

    def write(entity: str, batch: ValidatedBatch) -> None:
        snapshot = EntitySnapshot(site=SITE, entity=entity, batches=[batch])
        results[entity] = write_snapshot(url, snapshot, run_id="release-now")

    for entity in ("settings", *_LISTS):
        write(entity, validate_records(entity, pages[entity], base_url=BASE_URL))
    orders = read_live_rows(url, "orders", SITE, ["template_id", "items"])
    items = explode_order_items(zip(orders["template_id"], orders["items"], strict=True))
    write("order_items", ValidatedBatch(rows=items, fetched=len(items)))
    write("stats", ValidatedBatch(rows=[validate_stats(pages["stats"])], fetched=1))
    return results


def _migrate_command(url: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "template-pipeline"), "migrate"],
        env=_env(DASHBOARD_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_previous_release_database_upgrades_and_keeps_every_row(
    previous_release, postgres_server_url, tmp_path
):
    pages = _pages()
    pages_file = tmp_path / "pages.json"
    pages_file.write_text(json.dumps(pages, ensure_ascii=False), encoding="utf-8")
    with (
        scratch_database(postgres_server_url, "tp_release010") as url,
        scratch_database(postgres_server_url, "tp_baseline") as baseline,
    ):
        written = _write_with_previous_release(previous_release, url, pages_file)
        assert f"PACKAGE {previous_release / 'template_pipeline' / '__init__.py'}" in written
        assert column_types(url, "template_paintings")["template_id"] == "text"
        # The baseline revision is the schema that release created, exactly.
        migrate.upgrade(baseline, "0001")
        assert tables_catalog(url) == tables_catalog(baseline)
        before = _counts(url)

        output = _migrate_command(url)
        assert "it was created by release 0.1.0" in output
        assert f"upgraded from none to {REQUIRED_REVISION}" in output
        _check_every_row_kept(url, before, output)
        _check_the_dashboard_reads_it(url)

        migrated = _xmins(url)
        results = _sync_with_this_release(url, pages)
        for entity, result in results.items():
            assert (result.inserted, result.updated, result.deleted, result.restored) == (
                0,
                0,
                0,
                0,
            ), entity
        assert _xmins(url) == migrated, "an entity row was rewritten"


def _check_every_row_kept(url: str, before: dict[str, int], output: str) -> None:
    after = _counts(url)
    moved = {
        r["entity"]: r["n"]
        for r in query(
            url,
            "SELECT entity, sum(times_seen) AS n FROM template_rejects "
            "WHERE last_run_id = 'migration-0002' GROUP BY entity",
        )
    }
    order = next(o for o in _pages()["orders"] if o["id"] == "A-1")
    # The order items of the two orders that went, whose ids could not be converted either.
    assert moved == {**EXPECTED_MOVED, "order_items": len(order["items"]) + 1}
    for entity in ENTITY_TABLES:
        assert after[entity] + moved.get(entity, 0) == before[entity], entity
    assert after["rejects"] == before["rejects"] + sum(moved.values())
    assert after["sync_runs"] == before["sync_runs"]
    for entity, n in moved.items():
        assert f"0002: template_{entity}: {n} row(s)" in output
    for table, column in (
        ("template_paintings", "template_id"),
        ("template_orders", "template_id"),
        ("template_order_items", "order_id"),
        ("template_order_items", "painting_id"),
    ):
        assert column_types(url, table)[column] == "bigint", (table, column)


def _check_the_dashboard_reads_it(url: str) -> None:
    [five] = query(url, "SELECT name FROM template_paintings WHERE template_id = 5")
    assert five["name"]
    [last] = query(
        url,
        "SELECT max(finished_at) AS at FROM template_sync_runs "
        "WHERE entity = 'paintings' AND status = 'success'",
    )
    shown = query(url, "SELECT DISTINCT sync_timestamp FROM dashboard_paintings")
    assert [r["sync_timestamp"] for r in shown] == [last["at"]]
    [order] = query(url, "SELECT items FROM dashboard_orders ORDER BY id LIMIT 1")
    assert all(set(item) == {"name", "price", "quantity"} for item in order["items"])
