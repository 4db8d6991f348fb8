"""The ``retention`` asset: every day, what has served its purpose goes (``store.retention``).

A non-partitioned asset, materialised by the ``template_retention`` job that the
``daily_template_retention`` schedule launches (04:30 Europe/Paris, after the nightly sync). One
materialisation purges, older than the limits of
:class:`~template_pipeline.store.retention.RetentionPolicy` (``TEMPLATE_RETENTION_*_DAYS``):
resolved rejects, health probes, consumed webhook events, old alerts, and Dagster's finished runs
with their event logs. Its metadata says how many of each kind went (numeric entries, which the
UI plots over time) and a table with each limit. Its config can ask for a dry run, which counts
and removes nothing. ``template-pipeline purge`` does the same from the command line.

Dagster runs go through the instance API (``DagsterInstance.delete_run``: the run and its
events), oldest first, a page at a time. Only runs in a finished status (success, failure,
canceled) whose last update is older than the limit are deleted: a queued, starting, started or
canceling run never is, whatever its age. The latest successful sync run of every site and
entity (``template_sync_state.last_run_id``) is kept too, so a site that has not synced for a
month still shows its last materialisation.
"""

# No ``from __future__ import annotations``: Dagster reads the asset's parameter annotations.
import dataclasses
from collections.abc import Collection, Sequence
from datetime import datetime

import dagster as dg
from pydantic import Field

from template_pipeline.defs.resources import DashboardDatabase
from template_pipeline.defs.tags import TRIGGER_TAG
from template_pipeline.store.retention import (
    Purged,
    RetentionPolicy,
    cutoff,
    latest_success_run_ids,
    purge_tables,
)

RETENTION_JOB_NAME = "template_retention"
# A group of its own: "Materialize all" on the entities' group must not start a purge.
RETENTION_GROUP = "maintenance"
# Runs read and deleted per page: bounded memory and statements, however many there are.
RUNS_PAGE = 200

_FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def purge_dagster_runs(
    instance: dg.DagsterInstance,
    days: int,
    *,
    keep: Collection[str] = (),
    dry_run: bool = False,
    now: datetime | None = None,
    page: int = RUNS_PAGE,
) -> Purged:
    """Delete (or count) the finished runs last updated more than ``days`` ago.

    ``keep``: run ids never deleted. Pages go oldest first by storage id; deleted runs leave
    the next page, and the cursor only moves past runs that stay (a cursor must name a run that
    exists).
    """
    before = cutoff(days, now)
    filters = dg.RunsFilter(updated_before=before, statuses=_FINISHED)
    removed = 0
    cursor: str | None = None
    while True:
        records = instance.get_run_records(
            filters, limit=page, order_by="id", ascending=True, cursor=cursor
        )
        for record in records:
            run = record.dagster_run
            # The filter asked for finished runs; a run is checked again all the same.
            if run.run_id in keep or not run.is_finished:
                cursor = run.run_id
                continue
            removed += 1
            if dry_run:
                cursor = run.run_id
            else:
                instance.delete_run(run.run_id)
        if len(records) < page:
            break
    return Purged("dagster_runs", "Dagster runs and event logs", days, before, removed)


def purge_report(purged: Sequence[Purged], *, dry_run: bool) -> dict[str, dg.MetadataValue]:
    """The materialisation metadata: a count per kind, and the table of limits."""
    verb = "would remove" if dry_run else "removed"
    lines = [f"| kind | table | older than | before | {verb} |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {p.kind} | {p.table} | {p.days} days | {p.cutoff:%Y-%m-%d %H:%M} UTC | {p.rows} |"
        for p in purged
    ]
    metadata: dict[str, dg.MetadataValue] = {p.kind: dg.MetadataValue.int(p.rows) for p in purged}
    metadata["total"] = dg.MetadataValue.int(sum(p.rows for p in purged))
    metadata["dry_run"] = dg.MetadataValue.bool(dry_run)
    metadata["purged"] = dg.MetadataValue.md("\n".join(lines))
    return metadata


class RetentionConfig(dg.Config):
    """A run's own limits; unset ones come from the ``TEMPLATE_RETENTION_*_DAYS`` variables."""

    dry_run: bool = Field(default=False, description="count what would go, remove nothing")
    rejects_days: int | None = Field(default=None, description="resolved rejects, days")
    health_days: int | None = Field(default=None, description="health probes, days")
    webhook_events_days: int | None = Field(default=None, description="consumed events, days")
    alerts_days: int | None = Field(default=None, description="alerts, days")
    dagster_runs_days: int | None = Field(default=None, description="finished runs, days")

    def policy(self) -> RetentionPolicy:
        chosen = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(RetentionPolicy)
            if getattr(self, field.name) is not None
        }
        return dataclasses.replace(RetentionPolicy.from_env(), **chosen)


@dg.asset(
    name="retention",
    group_name=RETENTION_GROUP,
    description="Purges what has served its purpose: resolved rejects, health probes, consumed "
    "webhook events, old alerts, finished Dagster runs with their event logs (never live "
    "entity rows). Its metadata counts what went.",
    kinds={"postgres"},
)
def retention(
    context: dg.AssetExecutionContext,
    config: RetentionConfig,
    dashboard_database: DashboardDatabase,
) -> dg.MaterializeResult:
    try:
        policy = config.policy()
    except ValueError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    url = dashboard_database.database_url
    dashboard_database.engine()  # refuses a database whose schema is behind
    purged = purge_tables(url, policy, dry_run=config.dry_run)
    runs = purge_dagster_runs(
        context.instance,
        policy.dagster_runs_days,
        keep=latest_success_run_ids(url),
        dry_run=config.dry_run,
    )
    purged.append(runs)
    for p in purged:
        context.log.info(
            "%s: %d %s (older than %d days)",
            p.kind,
            p.rows,
            "would go" if config.dry_run else "removed",
            p.days,
        )
    return dg.MaterializeResult(metadata=purge_report(purged, dry_run=config.dry_run))


template_retention_job = dg.define_asset_job(
    RETENTION_JOB_NAME,
    selection=[retention],
    description="Purge resolved rejects, old health probes, consumed webhook events, old alerts "
    "and finished Dagster runs (the retention asset).",
    tags={TRIGGER_TAG: "retention"},
)
