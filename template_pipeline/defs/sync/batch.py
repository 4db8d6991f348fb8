"""The sites of one run, synced side by side in one step, each site's failure its own.

A run covers one site (the UI's Materialize, a webhook) or a range of sites (the nightly, the
sensors, ``template-pipeline sync``). Sites are synced by a few worker threads (their time is
the network's and the database's); the step yields each site's materialisations and check
evaluations, per partition, as soon as the site is done. A site whose failure may heal (the site
kept answering 5xx, the database dropped a connection, another run held the site) is tried once
more at the end of the batch. When sites failed, the step fails after the others are done,
naming them: Dagster then shows their partitions failed, and only theirs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import dagster as dg

from template_pipeline.defs.checks import evaluation
from template_pipeline.defs.sync.metadata import stats_metadata, sync_metadata
from template_pipeline.defs.sync.outcomes import EntityOutcome, SiteReport, classify
from template_pipeline.defs.sync.site import SyncSettings, sync_site
from template_pipeline.domain import stop
from template_pipeline.domain.sites import SiteConfigError, SiteRegistry
from template_pipeline.store.pool import cancel_all_running

# How long a site that failed in a way that may heal waits before its second attempt.
RETRY_PAUSE_S = 5.0
# How often a waiting batch looks at a stop request, and how long an interrupted batch waits
# for its sites being synced to roll back.
_STOP_POLL_S, _STOP_GRACE_S = 0.2, 10.0
_INTERRUPTS = (KeyboardInterrupt, dg.DagsterExecutionInterruptedError, stop.Interrupted)


@dataclass
class BatchProgress:
    """How far a batch is: for the CLI's progress lines."""

    total: int
    done: int = 0
    failed: int = 0
    records: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


Listener = Callable[[SiteReport, BatchProgress], None]
_listeners: list[Listener] = []
_listeners_lock = threading.Lock()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener`` with each site's report as it is done (the CLI's progress)."""
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


def _notify(report: SiteReport, progress: BatchProgress) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(report, progress)


def run_batch(
    log: dg.DagsterLogManager,
    sites: Sequence[str],
    registry: SiteRegistry | Exception,
    settings: SyncSettings,
    *,
    workers: int,
    retry_pause_s: float = RETRY_PAUSE_S,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Sync ``sites``; yield their events; raise ``dg.Failure`` naming those that failed.

    An interrupt (SIGTERM, SIGINT: Dagster's ``dg.DagsterExecutionInterruptedError`` in a run
    worker, the stop request of the CLI) stops every site being synced, whose entity being
    written rolls back, and ends the step as interrupted: never retried, in the batch or by
    Dagster.
    """
    try:
        yield from _run_batch(log, sites, registry, settings, workers, retry_pause_s)
    except _INTERRUPTS as exc:
        stop.request(stop.reason() or f"interrupted ({type(exc).__name__})")
        cancel_all_running()
        log.warning(f"sync interrupted: {stop.reason()}; the sites being written rolled back")
        raise dg.DagsterExecutionInterruptedError(stop.reason()) from exc


def _run_batch(
    log: dg.DagsterLogManager,
    sites: Sequence[str],
    registry: SiteRegistry | Exception,
    settings: SyncSettings,
    workers: int,
    retry_pause_s: float,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    progress = BatchProgress(total=len(sites))
    final: dict[str, SiteReport] = {}
    retry: list[SiteReport] = []
    for report in _sync_all(sites, registry, settings, workers):
        if report.retryable:
            retry.append(report)
            continue
        final[report.site] = report
        yield from _finish(log, report, progress)
    if retry:
        _pause(retry_pause_s)
        for first in retry:
            report = _sync_one(first.site, registry, settings)
            report.attempts = first.attempts + 1
            final[report.site] = report
            yield from _finish(log, report, progress)
    failed = {site: report for site, report in final.items() if report.failed}
    if failed:
        raise dg.Failure(
            description=_failure_summary(failed, len(sites)),
            metadata={
                "failed_sites": dg.MetadataValue.json(
                    {
                        site: {"kind": report.kind(), "reason": report.reason()}
                        for site, report in failed.items()
                    }
                ),
                "sites": len(sites),
            },
            allow_retries=False,
        )


def _pause(seconds: float) -> None:
    """Sleep, waking up to a stop request."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        stop.check()
        time.sleep(min(_STOP_POLL_S, left))
    stop.check()


def _sync_all(
    sites: Sequence[str], registry: SiteRegistry | Exception, settings: SyncSettings, workers: int
) -> Iterator[SiteReport]:
    if len(sites) <= 1 or workers <= 1:
        for site in sites:
            stop.check()
            yield _sync_one(site, registry, settings)
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(sites)))
    pending = {pool.submit(_sync_one, site, registry, settings) for site in sites}
    try:
        while pending:
            done, pending = wait(pending, timeout=_STOP_POLL_S, return_when=FIRST_COMPLETED)
            for future in done:  # a site done before a stop is reported: its writes are in
                yield future.result()
            stop.check()
    except _INTERRUPTS:
        # The sites not started are dropped; those being synced see the stop (between pages,
        # entities) or their statement canceled, and roll back: wait a little for them.
        stop.request(stop.reason() or "the batch was interrupted")
        pool.shutdown(wait=False, cancel_futures=True)
        cancel_all_running()
        wait(pending, timeout=_STOP_GRACE_S)
        raise
    finally:
        # Not interrupted (an error, the generator closed): the sites go on to their end.
        pool.shutdown(wait=not stop.requested(), cancel_futures=stop.requested())


def _sync_one(key: str, registry: SiteRegistry | Exception, settings: SyncSettings) -> SiteReport:
    stop.check()  # a site queued behind a stop request is not started
    try:
        if isinstance(registry, Exception):
            raise registry
        site = registry.get(key)
    except SiteConfigError as exc:
        report = SiteReport(site=key)
        failure = classify(exc)
        for entity in settings.entities:
            report.entities[entity] = EntityOutcome(entity, failure=failure)
        return report
    return sync_site(site, replace(settings))


def _finish(
    log: dg.DagsterLogManager, report: SiteReport, progress: BatchProgress
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    progress.done += 1
    progress.failed += report.failed
    progress.records += sum(
        o.result.fetched for o in report.entities.values() if o.result is not None
    )
    yield from site_events(report)
    if report.failed:
        log.warning(f"site {report.site}: {report.kind()}: {report.reason()}")
    else:
        log.info(_site_line(report))
    _notify(report, progress)


def site_events(report: SiteReport) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """The site's materialisations (one per entity written) and check evaluations."""
    for entity, outcome in report.entities.items():
        if not outcome.succeeded or outcome.result is None:
            continue
        metadata = {**sync_metadata(outcome.result), "fetch_mode": report.fetch_mode}
        if outcome.stats_row is not None:
            metadata.update(stats_metadata(outcome.stats_row))
        yield dg.AssetMaterialization(
            asset_key=dg.AssetKey(entity), partition=report.site, metadata=metadata
        )
    for check in report.checks:
        yield evaluation(
            check.entity, check.check, report.site, check.result, blocking=check.blocking
        )


def _site_line(report: SiteReport) -> str:
    written = sum(
        (o.result.inserted + o.result.updated + o.result.deleted + o.result.restored)
        for o in report.entities.values()
        if o.result is not None
    )
    return (
        f"site {report.site}: {len(report.entities)} entities in {report.duration_s:.2f} s "
        f"({report.fetch_mode}), {written} row(s) written"
    )


def _failure_summary(failed: dict[str, SiteReport], total: int) -> str:
    shown = "; ".join(
        f"{site} ({report.kind()}: {report.reason()})" for site, report in list(failed.items())[:5]
    )
    more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"{len(failed)} of {total} site(s) failed: {shown}{more}"
