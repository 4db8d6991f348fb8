"""``template-pipeline sync``: materialise sites through Dagster and summarise what happened.

Each site is one run of the ``template_site_sync`` job on the instance in ``DAGSTER_HOME`` (so
operators find the runs in the UI's history), executed in this process. Sites run one after the
other and a failing site never stops the next one; the summary comes from ``template_sync_runs``,
the table the IO manager writes in the same transaction as the data, so it cannot disagree with it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dagster as dg
import sqlalchemy as sa

from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.tags import site_run_tags
from template_pipeline.domain import config
from template_pipeline.domain import entities as registry
from template_pipeline.domain.sites import SiteConfigError, SiteRegistry
from template_pipeline.store import db
from template_pipeline.store.tables import SYNC_COUNT_COLUMNS, template_sync_runs

logger = logging.getLogger(__name__)

JOB_NAME = template_site_sync_job.name


@dataclass
class EntityOutcome:
    entity: str
    status: str  # success | failed | refused | skipped
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class SiteOutcome:
    site: str
    run_id: str | None
    success: bool
    entities: list[EntityOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.errors) or "failed"


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
        return list(registry.NAMES)
    try:
        names = [registry.entity(name).name for name in wanted]
    except ValueError as exc:
        raise SiteConfigError(str(exc)) from None
    return list(dict.fromkeys(names))


def _step_errors(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    errors: dict[str, str] = {}
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_key:
            data = event.step_failure_data
            message = data.error.message.strip() if data and data.error else "step failed"
            user = getattr(data, "user_failure_data", None)
            if user is not None and user.description:
                message = user.description
            errors[event.step_key] = message.splitlines()[0] if message else "step failed"
    return errors


def _sync_rows(database_url: str, run_id: str) -> dict[str, dict]:
    runs = template_sync_runs
    query = (
        sa.select(
            runs.c.entity, runs.c.status, runs.c.error, *(runs.c[c] for c in SYNC_COUNT_COLUMNS)
        )
        .where(runs.c.run_id == run_id)
        .order_by(runs.c.id)
    )
    with db.get_engine(database_url).connect() as conn:
        if conn.execute(sa.text("SELECT to_regclass('template_sync_runs')")).scalar() is None:
            return {}
        return {row.entity: dict(row._mapping) for row in conn.execute(query)}


def sync_site(
    instance: dg.DagsterInstance,
    site: str,
    entities: Sequence[str],
    database_url: str,
    *,
    trigger: str = "cli",
    log_level: str = "WARNING",
) -> SiteOutcome:
    from template_pipeline.definitions import defs

    job = defs.resolve_job_def(JOB_NAME)
    selection = [dg.AssetKey(entity) for entity in entities]
    try:
        result = job.execute_in_process(
            # The run's full event log is in the instance (and the UI); the terminal gets the
            # summary, plus warnings such as retries.
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            instance=instance,
            partition_key=site,
            asset_selection=selection,
            tags=site_run_tags(site, trigger),
            raise_on_error=False,
        )
    except Exception as exc:  # a run that could not even start: keep going with other sites
        logger.exception("site %s: the run could not start", site)
        return SiteOutcome(site=site, run_id=None, success=False, errors=[str(exc)])

    step_errors = _step_errors(result)
    rows = _sync_rows(database_url, result.run_id)
    outcome = SiteOutcome(site=site, run_id=result.run_id, success=result.success)
    for entity in entities:
        row = rows.get(entity)
        error = step_errors.get(entity)
        if row is not None:
            counts = {k: int(row[k] or 0) for k in SYNC_COUNT_COLUMNS}
            outcome.entities.append(
                EntityOutcome(entity, row["status"], counts, error or row["error"])
            )
        else:
            outcome.entities.append(
                EntityOutcome(entity, "failed" if error else "skipped", error=error)
            )
    # Failures that are not an entity step (a blocking check, say) still explain the run.
    outcome.errors = [f"{key}: {msg}" for key, msg in step_errors.items()]
    return outcome


# "dagster._config.errors.PostProcessingError: You have attempted to fetch ..." -> the message.
_WRAPPED_ERROR_RE = re.compile(r"^[\w.]+(?:Error|Exception): (.+)$")


def _dagster_error_reason(exc: dg.DagsterError) -> str:
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
            f"cannot load the Dagster instance of DAGSTER_HOME={home}: {_dagster_error_reason(exc)}"
        ) from None


def run_sync(
    registry: SiteRegistry,
    *,
    sites: Sequence[str] | None = None,
    entities: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    database_url: str | None = None,
    trigger: str = "cli",
    log_level: str = "WARNING",
) -> list[SiteOutcome]:
    """Sync the selected sites (all by default) one run each; never stops at a failing site."""
    site_keys = select_sites(registry, sites)
    entity_names = select_entities(entities)
    database_url = database_url or db.dashboard_database_url()
    owned = instance is None
    instance = instance or instance_from_home()
    try:
        register_site_partitions(instance, registry.keys())
        return [
            sync_site(
                instance, site, entity_names, database_url, trigger=trigger, log_level=log_level
            )
            for site in site_keys
        ]
    finally:
        if owned:  # its storage engines and threads; a caller's instance stays the caller's
            instance.dispose()


COUNT_COLUMNS = ("fetched", "valid", "rejected", "inserted", "updated", "unchanged", "deleted")


def _short_reason(outcome: SiteOutcome) -> str:
    # A refused key or a site that is down fails every step with the same cause: the first
    # error says why, the lines above show each step's.
    if len(outcome.errors) <= 1:
        return outcome.reason
    more = len(outcome.errors) - 1
    return f"{outcome.errors[0]} (and {more} more failed step{'s' if more > 1 else ''})"


def format_summary(outcomes: Sequence[SiteOutcome]) -> str:
    """One line per site and entity, then one line per failed site naming why."""
    header = f"{'site':<20} {'entity':<16} {'status':<8} " + " ".join(
        f"{c:>9}" for c in COUNT_COLUMNS
    )
    lines = [header, "-" * len(header)]
    for outcome in outcomes:
        for ent in outcome.entities:
            counts = " ".join(f"{ent.counts.get(c, ''):>9}" for c in COUNT_COLUMNS)
            line = f"{outcome.site:<20} {ent.entity:<16} {ent.status:<8} {counts}"
            if ent.error and ent.status != "success":
                line += f"  {ent.error}"
            lines.append(line.rstrip())
        if not outcome.entities:
            lines.append(f"{outcome.site:<20} {'-':<16} {'failed':<8}  {outcome.reason}")
    failed = [o for o in outcomes if not o.success]
    lines.append("")
    if failed:
        lines.append(f"{len(failed)} of {len(outcomes)} site(s) failed:")
        lines.extend(f"  {o.site}: {_short_reason(o)}" for o in failed)
    else:
        lines.append(f"all {len(outcomes)} site(s) synced")
    return "\n".join(lines)
