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
from collections.abc import Callable, Iterable, Sequence

import dagster as dg

from template_pipeline.apps.summary import SiteOutcome, outcome_of
from template_pipeline.defs.assets import SYNC_JOB_NAME
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.run_requests import ordered_sites, sync_request, windows
from template_pipeline.defs.sync.batch import BatchProgress, listening
from template_pipeline.defs.sync.outcomes import EntityOutcome, Failure, SiteReport
from template_pipeline.domain import config
from template_pipeline.domain import entities as registry_entities
from template_pipeline.domain.sites import SiteConfigError, SiteRegistry
from template_pipeline.store import db

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
) -> tuple[str | None, dict[str, SiteReport], str | None]:
    """One run over ``window``: (run id, each site's report, why the run failed to start)."""
    from template_pipeline.definitions import defs

    job = defs.resolve_job_def(SYNC_JOB_NAME)
    request = sync_request(window, run_key="cli", trigger=trigger, entities=entities)
    reports: dict[str, SiteReport] = {}

    def collect(report: SiteReport, progress: BatchProgress) -> None:
        reports[report.site] = report

    try:
        with listening(collect):
            result = job.execute_in_process(
                # The run's full event log is in the instance (and the UI); the terminal gets
                # the summary and the progress.
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                instance=instance,
                partition_key=request.partition_key,
                asset_selection=[dg.AssetKey(e) for e in entities],
                tags=request.tags,
                raise_on_error=False,
            )
    except Exception as exc:  # a run that could not even start: keep going with other windows
        logger.exception("sites %s..%s: the run could not start", window[0], window[-1])
        return None, reports, f"the run could not start: {exc}"
    return result.run_id, reports, None


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
    """Sync the selected sites (all by default); never stops at a failing site."""
    site_keys = select_sites(registry, sites)
    entity_names = select_entities(entities)
    database_url = database_url or db.dashboard_database_url()
    owned = instance is None
    instance = instance or instance_from_home()
    outcomes: list[SiteOutcome] = []
    try:
        register_site_partitions(instance, registry.keys())
        # Named sites run one by one (the single-site runs the UI makes); all sites in windows.
        size = 1 if sites else sites_per_run
        for window in windows(ordered_sites(instance), site_keys, size=size):
            with listening(progress) if progress else contextlib.nullcontext():
                run_id, reports, error = _run_window(
                    instance, window, entity_names, trigger=trigger, log_level=log_level
                )
            for site in window:
                report = reports.get(site) or _not_run(site, entity_names, error)
                outcomes.append(outcome_of(report, run_id, entity_names))
    finally:
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
