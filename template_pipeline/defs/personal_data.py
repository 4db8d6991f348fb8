"""``personal_data_erasure``: the personal fields of records deleted upstream, erased daily.

A record a site stopped serving keeps its row (``deleted_at``) for history, and for
``TEMPLATE_PERSONAL_DATA_ERASE_DAYS`` (30) days its personal fields too, in case the site serves
it again; after that the daily ``template_personal_data`` job erases them
(:func:`template_pipeline.store.personal_data.erase_deleted`) and reports how many rows of each
table it erased as materialisation metadata. ``template-pipeline forget`` erases one person at
once, whatever the delay.
"""

from datetime import timedelta

import dagster as dg

from template_pipeline.defs.resources import DashboardDatabase
from template_pipeline.defs.retention import RETENTION_GROUP
from template_pipeline.defs.tags import TRIGGER_TAG
from template_pipeline.domain import config
from template_pipeline.domain.entities import PERSONAL
from template_pipeline.store import db
from template_pipeline.store.personal_data import erase_deleted
from template_pipeline.store.tables import ENTITY_TABLES

PERSONAL_DATA_JOB_NAME = "template_personal_data"
# 05:00 Europe/Paris: after the nightly sync (whose soft deletes start the delay) and the
# retention job (04:30), so the two do not start together.
PERSONAL_DATA_CRON = "0 5 * * *"


def erase_delay(environ=None) -> timedelta:
    """``TEMPLATE_PERSONAL_DATA_ERASE_DAYS`` as a delay; a clear error when it is not one."""
    days = config.number(config.PERSONAL_DATA_ERASE_DAYS, environ)
    if not days >= 0:
        raise ValueError(
            f"{config.PERSONAL_DATA_ERASE_DAYS.name} must be a number of days >= 0, got {days:g}"
        )
    return timedelta(days=days)


@dg.asset(
    name="personal_data_erasure",
    # Beside retention, apart from the entities: their "Materialize all" must not erase.
    group_name=RETENTION_GROUP,
    kinds={"python", "postgres"},
    description="Erase the personal fields of records deleted upstream longer ago than "
    "TEMPLATE_PERSONAL_DATA_ERASE_DAYS (30 days by default); the rest of each row stays.",
)
def personal_data_erasure(
    context: dg.AssetExecutionContext, dashboard_database: DashboardDatabase
) -> dg.MaterializeResult:
    delay = erase_delay()
    dashboard_database.engine()  # refuses a database whose schema is behind
    with db.connect(dashboard_database.database_url) as conn:
        erased = erase_deleted(conn, delay)
    context.log.info(
        f"erased the personal fields of {erased.total} row(s) deleted upstream more than "
        f"{delay.days} day(s) ago"
    )
    # Every personal table on every materialisation, zeros included: the UI plots them.
    per_table = {
        ENTITY_TABLES[e.name].name: dg.MetadataValue.int(
            erased.tables.get(ENTITY_TABLES[e.name].name, 0)
        )
        for e in PERSONAL
    }
    return dg.MaterializeResult(
        metadata={
            "rows_erased": dg.MetadataValue.int(erased.total),
            "erase_after_days": dg.MetadataValue.float(delay.total_seconds() / 86400),
            **per_table,
        }
    )


personal_data_job = dg.define_asset_job(
    PERSONAL_DATA_JOB_NAME,
    selection=[personal_data_erasure],
    description="Erase the personal fields of records deleted upstream past the delay.",
)


@dg.schedule(
    name="daily_personal_data_erasure",
    cron_schedule=PERSONAL_DATA_CRON,
    execution_timezone="Europe/Paris",
    job=personal_data_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 05:00 Europe/Paris: erase the personal fields of records deleted "
    "upstream more than TEMPLATE_PERSONAL_DATA_ERASE_DAYS ago.",
)
def daily_personal_data_erasure(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    scheduled = context.scheduled_execution_time
    day = scheduled.date().isoformat() if scheduled is not None else None
    return dg.RunRequest(
        run_key=f"personal-data:{day}" if day else None,
        tags={TRIGGER_TAG: "daily-personal-data"},
    )
