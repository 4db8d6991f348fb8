"""``template_dead_runs_sensor`` (every 60 s): a sync run whose process died is failed.

See :mod:`template_pipeline.defs.liveness`: a started sync run whose process on the daemon's
host is gone, or whose heartbeat is stale, is marked failed (canceled, when it was being
canceled), so its sites' queue moves on. Nothing dead: ``SkipReason``.
"""

import dagster as dg

from template_pipeline.defs.assets import SYNC_JOB_NAME
from template_pipeline.defs.liveness import sweep_dead_runs


@dg.sensor(
    name="template_dead_runs_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails the sync runs whose process died (killed, out of memory), so they never "
    "block their sites' queue.",
)
def template_dead_runs_sensor(context: dg.SensorEvaluationContext):
    swept = sweep_dead_runs(context.instance, SYNC_JOB_NAME)
    for dead in swept:
        context.log.warning(f"run {dead.run_id} failed as dead: {dead.reason}")
    names = ", ".join(dead.run_id for dead in swept)
    return dg.SkipReason(f"{len(swept)} dead run(s) failed: {names}" if swept else "no dead run")
