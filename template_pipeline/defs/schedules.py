"""Schedules: the nightly sync of every site, and the hourly health job.

``nightly_template_sync`` (02:00 Europe/Paris) asks for one run of ``template_site_sync`` per
registered site partition: a site that fails fails its own run only, and the run queue
(``dagster.yaml``) runs at most one run per ``template/site`` tag value at a time.

``hourly_template_health`` (every hour at :10, Europe/Paris) launches ``template_health``
(:mod:`template_pipeline.defs.health`).
"""

from collections.abc import Sequence
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import dagster as dg

from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.health import template_health_job
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.tags import TRIGGER_TAG, site_run_tags

SCHEDULE_TIMEZONE = "Europe/Paris"


NIGHTLY_CRON = "0 2 * * *"


# Ten past the hour: away from the top of the hour, when the nightly runs start.
HOURLY_HEALTH_CRON = "10 * * * *"


def nightly_run_requests(sites: Sequence[str], scheduled: datetime) -> list[dg.RunRequest]:
    """One run request per site; the run key makes a re-evaluated tick ask for nothing new."""
    day = scheduled.astimezone(ZoneInfo(SCHEDULE_TIMEZONE)).date().isoformat()
    return [
        dg.RunRequest(
            run_key=f"nightly:{day}:{site}",
            partition_key=site,
            tags={**site_run_tags(site), TRIGGER_TAG: "nightly"},
        )
        for site in sorted(sites)
    ]


@dg.schedule(
    name="nightly_template_sync",
    cron_schedule=NIGHTLY_CRON,
    execution_timezone=SCHEDULE_TIMEZONE,
    job=template_site_sync_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 02:00 Europe/Paris: one full sync run per registered site.",
)
def nightly_template_sync(
    context: dg.ScheduleEvaluationContext,
) -> list[dg.RunRequest] | dg.SkipReason:
    sites = context.instance.get_dynamic_partitions(sites_partitions.name)
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


template_schedules = [nightly_template_sync, hourly_template_health]
