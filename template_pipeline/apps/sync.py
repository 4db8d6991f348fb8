"""``template-pipeline sync``: materialise sites through Dagster, windows of many sites a run.

The selected sites are registered as partitions, then synced by runs of the ``template_site_sync``
job on the instance in ``DAGSTER_HOME`` (operators find them in the UI's history), executed in
this process: a run per window of ``TEMPLATE_SITES_PER_RUN`` sites, or per site when sites are
named with ``--site``. Each site's report is printed as it is done (progress), and the summary
comes from the same reports: what was written, what failed and why, in plain words.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence

import dagster as dg
from dagster._core.utils import make_new_run_id

from template_pipeline.apps.interrupts import GRACE_S, SyncInterrupted, stop_on_signals
from template_pipeline.apps.summary import SiteOutcome, outcome_of
from template_pipeline.defs.assets import SYNC_JOB_NAME
from template_pipeline.defs.liveness import liveness_tags, sweep_dead_runs
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.run_requests import ordered_sites, sync_request, windows
from template_pipeline.defs.sync.batch import BatchProgress, listening
from template_pipeline.defs.sync.outcomes import EntityOutcome, Failure, SiteReport
from template_pipeline.domain import config, stop
from template_pipeline.domain import entities as registry_entities
from template_pipeline.domain.sites import SiteConfigError, SiteRegistry
from template_pipeline.store import db
from template_pipeline.store.pool import cancel_all_running

logger = logging.getLogger(__name__)

Progress = Callable[[SiteReport, BatchProgress], None]


def register_site_partitions(instance: dg.DagsterInstance, keys: Iterable[str]) -> list[str]:
    """Add the registry's sites that are not partitions yet; return the keys added."""
    existing = set(instance.get_dynamic_partitions(sites_partitions.name))
    new = [key for key in keys if key not in existing]
    if new:
        instance.add_dynamic_partitions(sites_partitions.name, new)
    return new


def select_sites(registry: SiteRegistry, wanted: Sequence[str] | None) -> list[str]:
    if not wanted:
        return registry.keys()
    for key in wanted:
        registry.get(key)  # raises SiteConfigError naming the unknown site
    return list(dict.fromkeys(wanted))


def select_entities(wanted: Sequence[str] | None) -> list[str]:
    if not wanted:
        return list(registry_entities.NAMES)
    try:
        names = [registry_entities.entity(name).name for name in wanted]
    except ValueError as exc:
        raise SiteConfigError(str(exc)) from None
    return list(dict.fromkeys(names))


def _run_window(
    instance: dg.DagsterInstance,
    window: Sequence[str],
    entities: Sequence[str],
    *,
    trigger: str,
    log_level: str,
    started: list[str] | None = None,
) -> tuple[str | None, dict[str, SiteReport], str | None]:
    """One run over ``window``: (run id, each site's report, why the run failed to start).

    The run executes in a thread of its own: the calling thread keeps the signals, and on a
    stop request marks the run canceling, cancels its statements and waits ``GRACE_S`` for it.
    """
    from template_pipeline.definitions import defs

    job = defs.resolve_job_def(SYNC_JOB_NAME)
    request = sync_request(window, run_key="cli", trigger=trigger, entities=entities)
    reports: dict[str, SiteReport] = {}
    run_id = make_new_run_id()
    if started is not None:
        started.append(run_id)
    box: dict[str, object] = {}

    def collect(report: SiteReport, progress: BatchProgress) -> None:
        reports[report.site] = report

    def execute() -> None:
        try:
            with listening(collect):
                box["result"] = job.execute_in_process(
                    # The run's full event log is in the instance (and the UI); the terminal
                    # gets the summary and the progress.
                    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                    instance=instance,
                    partition_key=request.partition_key,
                    asset_selection=[dg.AssetKey(e) for e in entities],
                    # The CLI's process from the run's creation on (the step refreshes them):
                    # if it is killed before the step starts, the run is still found dead.
                    tags={**request.tags, **liveness_tags()},
                    run_id=run_id,
                    raise_on_error=False,
                )
        except BaseException as exc:  # reported by the calling thread
            box["error"] = exc

    thread = threading.Thread(target=execute, name=f"run-{run_id[:8]}", daemon=True)
    thread.start()
    _wait_for_run(instance, thread, run_id)
    error = box.get("error")
    if error is not None:  # a run that could not even start: keep going with other windows
        logger.error("sites %s..%s: the run could not start: %s", window[0], window[-1], error)
        return None, reports, f"the run could not start: {error}"
    return (run_id if "result" in box else None), reports, None


def _wait_for_run(instance: dg.DagsterInstance, thread: threading.Thread, run_id: str) -> None:
    """Join ``thread``, waking up to stop requests (the signal handler runs meanwhile)."""
    while thread.is_alive():
        thread.join(timeout=0.2)
        if stop.requested():
            break
    if not thread.is_alive():
        return
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status in _UNFINISHED:
        instance.report_run_canceling(run, message=f"template-pipeline sync: {stop.reason()}")
    cancel_all_running()  # the statements of the sites being written fail, and roll back
    thread.join(timeout=GRACE_S)


_UNFINISHED = (
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


def settle_runs(instance: dg.DagsterInstance, run_ids: Sequence[str]) -> list[str]:
    """Mark each run of ``run_ids`` that did not finish: canceled after a stop, else failed.

    The CLI's way out, whatever it is (a signal, an error): no run it started stays STARTED.
    Returns the runs marked.
    """
    marked = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is None or run.status not in _UNFINISHED:
            continue
        if stop.requested():
            instance.report_run_canceled(run, message=f"template-pipeline sync: {stop.reason()}")
        else:
            instance.report_run_failed(
                run, message="template-pipeline sync ended before this run finished"
            )
        marked.append(run_id)
    return marked


def run_sync(
    registry: SiteRegistry,
    *,
    sites: Sequence[str] | None = None,
    entities: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    database_url: str | None = None,
    trigger: str = "cli",
    log_level: str = "WARNING",
    progress: Progress | None = None,
    sites_per_run: int | None = None,
) -> list[SiteOutcome]:
    """Sync the selected sites (all by default); never stops at a failing site.

    SIGINT and SIGTERM stop it (:mod:`.interrupts`): :class:`SyncInterrupted` is raised once
    the run being executed rolled back and was marked canceled.
    """
    site_keys = select_sites(registry, sites)
    entity_names = select_entities(entities)
    database_url = database_url or db.dashboard_database_url()
    owned = instance is None
    instance = instance or instance_from_home()
    outcomes: list[SiteOutcome] = []
    started: list[str] = []
    stop.clear()
    try:
        with stop_on_signals() as interruption:
            # A run whose process died must not block the sites it holds in the queue.
            for dead in sweep_dead_runs(instance, SYNC_JOB_NAME):
                logger.warning("run %s was failed as dead: %s", dead.run_id, dead.reason)
            register_site_partitions(instance, registry.keys())
            # Named sites run one by one (the single-site runs the UI makes); all in windows.
            size = 1 if sites else sites_per_run
            for window in windows(ordered_sites(instance), site_keys, size=size):
                if stop.requested():
                    break
                with listening(progress) if progress else contextlib.nullcontext():
                    run_id, reports, error = _run_window(
                        instance,
                        window,
                        entity_names,
                        trigger=trigger,
                        log_level=log_level,
                        started=started,
                    )
                if stop.requested():  # the sites done before the stop are reported
                    interruption.runs.extend(started[-1:])
                    outcomes.extend(outcome_of(r, run_id, entity_names) for r in reports.values())
                    break
                for site in window:
                    report = reports.get(site) or _not_run(site, entity_names, error)
                    outcomes.append(outcome_of(report, run_id, entity_names))
            settle_runs(instance, started)
        if interruption.signum is not None:
            raise SyncInterrupted(interruption, outcomes)
    finally:
        settle_runs(instance, started)
        if owned:  # its storage engines and threads; a caller's instance stays the caller's
            instance.dispose()
    return outcomes


def sync_site(
    instance: dg.DagsterInstance,
    site: str,
    entities: Sequence[str],
    database_url: str,
    *,
    trigger: str = "cli",
    log_level: str = "WARNING",
) -> SiteOutcome:
    """One site in a run of its own (the benchmarks' and the UI's path)."""
    run_id, reports, error = _run_window(
        instance, [site], list(entities), trigger=trigger, log_level=log_level
    )
    report = reports.get(site) or _not_run(site, list(entities), error)
    return outcome_of(report, run_id, list(entities))


def _not_run(site: str, entities: Sequence[str], error: str | None) -> SiteReport:
    report = SiteReport(site=site)
    failure = Failure("internal", error or "the run ended before this site was synced", False)
    for entity in entities:
        report.entities[entity] = EntityOutcome(entity, failure=failure)
    return report


def instance_from_home() -> dg.DagsterInstance:
    """The Dagster instance of ``DAGSTER_HOME``; an unusable one is a configuration error.

    A missing ``DAGSTER_POSTGRES_URL`` (the repo's dagster.yaml reads it) or a ``DAGSTER_HOME``
    that is not a folder would otherwise surface as a Dagster traceback.
    """
    try:
        return dg.DagsterInstance.get()
    except dg.DagsterError as exc:
        home = config.DAGSTER_HOME.get() or ""
        raise db.DatabaseConfigError(
            f"cannot load the Dagster instance of DAGSTER_HOME={home}: {_dagster_reason(exc)}"
        ) from None


# "dagster._config.errors.PostProcessingError: You have attempted to fetch ..." -> the message.
_WRAPPED_ERROR_RE = re.compile(r"^[\w.]+(?:Error|Exception): (.+)$")


def _dagster_reason(exc: dg.DagsterError) -> str:
    """The operator-facing part of a Dagster error (config errors wrap theirs in a long text)."""
    messages = [getattr(e, "message", str(e)) for e in getattr(exc, "errors", None) or []]
    reasons = []
    for message in messages or [str(exc)]:
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        wrapped = (m.group(1) for m in map(_WRAPPED_ERROR_RE.match, lines) if m)
        reason = next(wrapped, lines[0] if lines else type(exc).__name__)
        if reason not in reasons:
            reasons.append(reason)
    return "; ".join(reasons)
