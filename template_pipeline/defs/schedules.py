"""Schedules: the nightly sync of every site, and the hourly health job.

``nightly_template_sync`` (02:00 Europe/Paris) asks for one run of ``template_site_sync`` per
window of ``TEMPLATE_SITES_PER_RUN`` registered sites (a partition range): a site that fails
fails only its own partitions, and the run queue (``dagster.yaml``) runs one run per window at
a time.

``hourly_template_health`` (every hour at :10, Europe/Paris) launches ``template_health``
(:mod:`template_pipeline.defs.health`).

``daily_template_retention`` (04:30 Europe/Paris, after the nightly sync) launches
``template_retention``, which materialises the ``retention`` asset
(:mod:`template_pipeline.defs.retention`).
"""

from collections.abc import Sequence
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import dagster as dg

from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.health import template_health_job
from template_pipeline.defs.retention import template_retention_job
from template_pipeline.defs.run_requests import ordered_sites, sync_request, windows
from template_pipeline.defs.tags import TRIGGER_TAG

SCHEDULE_TIMEZONE = "Europe/Paris"


NIGHTLY_CRON = "0 2 * * *"


# Ten past the hour: away from the top of the hour, when the nightly runs start.
HOURLY_HEALTH_CRON = "10 * * * *"


# After the nightly sync (02:00) has had time to finish, before the working day.
DAILY_RETENTION_CRON = "30 4 * * *"


def nightly_run_requests(
    sites: Sequence[str], scheduled: datetime, *, size: int | None = None
) -> list[dg.RunRequest]:
    """One run per window of sites (in registration order); the run keys make a re-evaluated
    tick ask for nothing new."""
    day = scheduled.astimezone(ZoneInfo(SCHEDULE_TIMEZONE)).date().isoformat()
    return [
        sync_request(window, run_key=f"nightly:{day}:{window[0]}..{window[-1]}", trigger="nightly")
        for window in windows(sites, size=size)
    ]


@dg.schedule(
    name="nightly_template_sync",
    cron_schedule=NIGHTLY_CRON,
    execution_timezone=SCHEDULE_TIMEZONE,
    job=template_site_sync_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 02:00 Europe/Paris: a full sync of every registered site, "
    "TEMPLATE_SITES_PER_RUN sites a run.",
)
def nightly_template_sync(
    context: dg.ScheduleEvaluationContext,
) -> list[dg.RunRequest] | dg.SkipReason:
    sites = ordered_sites(context.instance)
    if not sites:
        return dg.SkipReason(
            "no site partition is registered yet: template_sites_sensor adds them from the "
            "site registry"
        )
    scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
    return nightly_run_requests(sites, scheduled)


@dg.schedule(
    name="hourly_template_health",
    cron_schedule=HOURLY_HEALTH_CRON,
    execution_timezone=SCHEDULE_TIMEZONE,
    job=template_health_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour: probe each site (alerting when one goes down or comes back) and "
    "evaluate the freshness checks.",
)
def hourly_template_health(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
    return dg.RunRequest(
        run_key=f"health:{scheduled.astimezone(timezone.utc).isoformat()}",
        tags={TRIGGER_TAG: "hourly-health"},
    )


@dg.schedule(
    name="daily_template_retention",
    cron_schedule=DAILY_RETENTION_CRON,
    execution_timezone=SCHEDULE_TIMEZONE,
    job=template_retention_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 04:30 Europe/Paris: purge resolved rejects, old health probes, "
    "consumed webhook events, old alerts and finished Dagster runs (the retention asset).",
)
def daily_template_retention(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
    day = scheduled.astimezone(ZoneInfo(SCHEDULE_TIMEZONE)).date().isoformat()
    return dg.RunRequest(run_key=f"retention:{day}", tags={TRIGGER_TAG: "daily-retention"})


template_schedules = [nightly_template_sync, hourly_template_health, daily_template_retention]
