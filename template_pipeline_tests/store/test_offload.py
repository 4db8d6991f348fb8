"""Validation in a worker process (``store.offload``) for the pages of large endpoints.

Behaviour under test: a snapshot validated in the worker writes exactly what the in-process
path writes (rows, rejects, counts, preview, content hashes), pages in order; small pages stay in
the caller's process and never start a worker; an exception raised in the worker reaches the
caller as the same error as in-process, and the write it fed rolls back (the table exactly as
before, no reject of that run kept); a worker that dies is a clear error naming the site and the
endpoint, and nothing of the endpoint is written.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from template_pipeline.apps.simulator.config import SimSite
from template_pipeline.apps.simulator.data import generate_site_data
from template_pipeline.defs.sync import fetching
from template_pipeline.domain.batches import EntitySnapshot
from template_pipeline.domain.changes import KnownRows, int_key
from template_pipeline.domain.validation import validate_records
from template_pipeline.store import offload
from template_pipeline.store.offload import ValidationPool, ValidationWorkerError
from template_pipeline.store.writer import write_snapshot
from template_pipeline_tests.fixtures.helpers import query
from template_pipeline_tests.fixtures.snapshots import table_rows

BASE_URL = "https://atelier.example/"


def _pages(count: int, size: int) -> list[list[dict[str, Any]]]:
    data = generate_site_data(SimSite(key="offload", api_key="k", seed=5, paintings=count))
    records = [dict(record) for record in data.records("paintings")]
    return [records[i : i + size] for i in range(0, len(records), size)]


def _comparable(url: str, site: str) -> dict[str, dict]:
    drop = {"xmin", "site", "first_seen_at", "updated_at", "synced_at", "last_run_id"}
    return {
        key: {k: v for k, v in row.items() if k not in drop}
        for key, row in table_rows(url, site).items()
    }


def _rejects(url: str, site: str) -> list[tuple]:
    rows = query(
        url,
        "SELECT template_id, reason FROM template_rejects WHERE site = %s ORDER BY id",
        site,
    )
    return [(row["template_id"], row["reason"]) for row in rows]


def _write(url: str, site: str, pages, pool: ValidationPool | None):
    snapshot = fetching.entity_snapshot(
        site,
        "paintings",
        iter(pages),
        base_url=BASE_URL,
        known=KnownRows(hashes={}, normalise=int_key),
        pool=pool,
    )
    return write_snapshot(url, snapshot, run_id=f"run-{site}")


def test_a_snapshot_validated_in_the_worker_writes_what_the_in_process_path_writes(url, site):
    # Pages of 150 go to the worker (up to its depth), the others are validated here.
    pages = _pages(1230, 150)
    local = _write(url, f"{site}-local", pages, None)
    with ValidationPool() as pool:
        pool.wait_ready()
        remote = _write(url, f"{site}-worker", pages, pool)

    assert remote.counts() == local.counts()
    assert remote.preview == local.preview and remote.new_fields == local.new_fields
    assert local.rejected > 0 and local.inserted > 0
    assert _comparable(url, f"{site}-worker") == _comparable(url, f"{site}-local")
    assert _rejects(url, f"{site}-worker") == _rejects(url, f"{site}-local")
    assert len(_rejects(url, f"{site}-local")) == local.rejected


def test_pages_are_validated_here_until_the_worker_is_up_and_when_it_lags():
    pages = _pages(1200, 100)
    with ValidationPool(depth=2) as pool:
        small = [(page[: offload.OFFLOAD_MIN_PAGE - 1], None) for page in pages[:3]]
        assert all(
            b.staged is None
            for b in pool.validated("paintings", small, base_url=BASE_URL, site="s")
        )
        assert not pool.started  # pages too small to be worth a worker never start one
        # The first large page starts the worker, and is validated here meanwhile.
        before = list(pool.validated("paintings", [(pages[0], None)], base_url=BASE_URL, site="s"))
        assert pool.started and before[0].staged is None
        pool.wait_ready()
        batches = list(
            pool.validated("paintings", ((p, None) for p in pages), base_url=BASE_URL, site="s")
        )
        tiny = list(
            pool.validated(
                "paintings",
                [(pages[0][: offload.OFFLOAD_MIN_PAGE - 1], None)],
                base_url=BASE_URL,
                site="s",
            )
        )
    assert [b.fetched for b in batches] == [len(p) for p in pages]
    sent = [b for b in batches if b.staged is not None]
    assert sent  # the worker took some pages ...
    assert len(sent) < len(pages)  # ... and this process the ones it had no room for
    assert tiny[0].staged is None


def test_an_error_in_the_worker_is_the_same_error_as_in_process():
    page = _pages(120, 120)[0]
    with pytest.raises(ValueError) as in_process:
        validate_records("stats", page)
    with ValidationPool() as pool, pytest.raises(ValueError) as in_worker:
        pool.wait_ready()
        list(pool.validated("stats", [(page, None)], base_url=BASE_URL, site="s"))
    assert str(in_worker.value) == str(in_process.value)
    assert "unknown entity 'stats'" in str(in_worker.value)


def _seed(url: str, site: str) -> dict[str, dict]:
    _write(url, site, _pages(120, 120), None)
    return _comparable(url, site)


def test_a_page_failing_in_the_worker_leaves_the_partition_as_it_was(url, site):
    before = _seed(url, site)
    rejects_before = _rejects(url, site)
    assert rejects_before  # the seed quarantined some: this run's must not join them
    first, second = _pages(400, 200)
    with ValidationPool() as pool:
        pool.wait_ready()
        # Hashes that do not match the page: the worker's validation raises on its second page.
        batches = pool.validated(
            "paintings", [(first, None), (second, [])], base_url=BASE_URL, site=site
        )
        with pytest.raises(IndexError):
            write_snapshot(url, EntitySnapshot(site, "paintings", batches), run_id="run-fail")
    assert _comparable(url, site) == before
    assert _rejects(url, site) == rejects_before


def test_a_dead_worker_is_a_clear_error_and_nothing_of_the_endpoint_is_written(url, site):
    before = _seed(url, site)
    pages = _pages(600, 200)

    def killed_after_first_page():
        yield pages[0], None
        os.kill(worker, signal.SIGKILL)
        yield from ((page, None) for page in pages[1:])

    with ValidationPool(depth=1) as pool:
        worker = pool.wait_ready()
        batches = pool.validated(
            "paintings", killed_after_first_page(), base_url=BASE_URL, site=site
        )
        with pytest.raises(ValidationWorkerError) as failure:
            write_snapshot(url, EntitySnapshot(site, "paintings", batches), run_id="run-dead")
    message = str(failure.value)
    assert repr(site) in message and "'paintings'" in message and "worker process" in message
    assert _comparable(url, site) == before


def test_available_cpus_follows_the_affinity_mask():
    assert offload.available_cpus() == len(os.sched_getaffinity(0)) >= 1


def test_a_site_sync_validates_a_large_endpoint_in_the_worker(url, tmp_path, monkeypatch):
    from template_pipeline.apps.simulator.server import SimulatorServer
    from template_pipeline.defs.resources import TemplateCheckSettings
    from template_pipeline.defs.sync.site import SyncSettings, sync_site
    from template_pipeline.domain.entities import NAMES
    from template_pipeline.domain.sites import load_sites_file, write_sites_file
    from template_pipeline.source import ClientSettings

    started: list[bool] = []
    real_start = ValidationPool.start

    def start(self):
        started.append(True)
        real_start(self)

    monkeypatch.setattr(ValidationPool, "start", start)
    key = "offload-site"
    simulated = SimSite(key=key, api_key="off-key", seed=9, paintings=900, page_cap=300)
    with SimulatorServer([simulated]) as server:
        for name, value in server.api_key_env().items():
            monkeypatch.setenv(name, value)
        registry = load_sites_file(
            write_sites_file(tmp_path / "s.yaml", server.sites_file_entries())
        )
        invalid = len(server.data(key).invalid_ids["paintings"])

        def run(run_id: str):
            settings = SyncSettings(
                database_url=url, run_id=run_id, client=ClientSettings(),
                checks=TemplateCheckSettings(), entities=frozenset(NAMES),
                check_keys=frozenset(), full_max_records=0, offload_min_records=500,
            )  # fmt: skip
            return sync_site(registry.get(key), settings)

        first = run("offload-1")
        assert started  # 900 paintings announced, none stored: the worker started ahead
        paintings = first.entities["paintings"].result
        assert first.entities["paintings"].failure is None
        assert (paintings.inserted, paintings.rejected) == (900 - invalid, invalid)
        again = run("offload-2").entities["paintings"].result
        assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)


def test_the_worker_leaves_ctrl_c_to_its_parent():
    page = _pages(150, 150)[0]
    with ValidationPool() as pool:
        worker = pool.wait_ready()
        os.kill(worker, signal.SIGINT)  # as a terminal's Ctrl-C sends it to the process group
        batches = list(pool.validated("paintings", [(page, None)] * 2, base_url=BASE_URL, site="s"))
    assert [b.fetched for b in batches] == [150, 150]
