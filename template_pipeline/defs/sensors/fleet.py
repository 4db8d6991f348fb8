"""``template_fleet_sensor``: ``fleet_status`` refreshed when the sync runs are done.

A run-status sensor on ``template_site_sync``: when one of its runs succeeds or fails and no
other sync run is queued or running, it asks for one run of ``template_fleet_status``. The
nightly's twenty batches thus give one refresh, after the last of them; a single-site run (the
UI, a webhook, ``template-pipeline sync --site``) gives one too.
"""

import dagster as dg

from template_pipeline.defs.assets import SYNC_JOB_NAME, template_site_sync_job
from template_pipeline.defs.fleet import fleet_status_job
from template_pipeline.defs.tags import TRIGGER_TAG

_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def fleet_refresh_request(
    instance: dg.DagsterInstance, run_id: str
) -> dg.RunRequest | dg.SkipReason:
    """A refresh after ``run_id``, unless other sync runs are still to finish."""
    pending = instance.get_runs_count(dg.RunsFilter(job_name=SYNC_JOB_NAME, statuses=_IN_FLIGHT))
    if pending:
        return dg.SkipReason(f"{pending} sync run(s) still queued or running")
    return dg.RunRequest(run_key=f"fleet-after:{run_id}", tags={TRIGGER_TAG: "after-sync"})


def _sensor(status: dg.DagsterRunStatus, name: str) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        name=name,
        run_status=status,
        monitored_jobs=[template_site_sync_job],
        request_job=fleet_status_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Refreshes fleet_status once the sync runs are done "
        f"(after a {status.value.lower()} sync run).",
    )
    def refresh_after_sync(context: dg.RunStatusSensorContext):
        return fleet_refresh_request(context.instance, context.dagster_run.run_id)

    return refresh_after_sync


template_fleet_sensor = _sensor(dg.DagsterRunStatus.SUCCESS, "template_fleet_sensor")
template_fleet_failure_sensor = _sensor(
    dg.DagsterRunStatus.FAILURE, "template_fleet_failure_sensor"
)
