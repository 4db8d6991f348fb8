"""``template_alerts_sensor`` (every 30 s): failed checks and runs, alerted once each.

See :mod:`template_pipeline.defs.alerts.scan` for what is read and what counts as new.
"""

import dagster as dg

from template_pipeline.defs.alerts.scan import AlertCursor, scan_for_alerts
from template_pipeline.defs.alerts.sinks import alerts_summary
from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.fleet import fleet_status_job
from template_pipeline.defs.health import HEALTH_JOB_NAME
from template_pipeline.defs.personal_data import personal_data_job
from template_pipeline.defs.resources import AlertSinks, DashboardDatabase
from template_pipeline.defs.retention import template_retention_job

# The maintenance jobs are watched too: a purge or an erasure that keeps failing is personal
# data kept past its date, which someone must hear about.
ALERT_JOB_NAMES = (
    template_site_sync_job.name,
    HEALTH_JOB_NAME,
    template_retention_job.name,
    personal_data_job.name,
    fleet_status_job.name,
)


@dg.sensor(
    name="template_alerts_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends each new failed check of the template assets and each failed pipeline "
    "run, once, to the Dagster log, template_alerts and ALERT_WEBHOOK_URL.",
)
def template_alerts_sensor(
    context: dg.SensorEvaluationContext,
    dashboard_database: DashboardDatabase,
    alert_sinks: AlertSinks,
):
    try:
        engine = dashboard_database.engine()
    except Exception as exc:  # the table sink is down: the log and the webhook still work
        context.log.error(f"alerts: the Dashboard database is unreachable ({type(exc).__name__})")
        engine = None
    result = scan_for_alerts(
        context.instance,
        AlertCursor.from_json(context.cursor),
        sinks=alert_sinks,
        engine=engine,
        log=context.log,
        job_names=ALERT_JOB_NAMES,
    )
    counts = alerts_summary(result.deliveries)
    summary = (
        f"{counts['sent']} alert(s) sent from {result.evaluations_read} check evaluation(s) "
        f"and {result.run_failures_read} run failure(s)"
    )
    if counts["webhook_failed"] or counts["sink_errors"]:
        summary += f"; sink errors: {counts['sink_errors']}"
    return dg.SensorResult(skip_reason=summary, cursor=result.cursor.to_json())
