"""The one Definitions object of the code location (workspace.yaml and [tool.dagster] point here).

Loading it needs no secret and no database: API keys and the dashboard URL are read from the
environment when a run starts.
"""

from __future__ import annotations

import dagster as dg

from template_pipeline.defs.assets import template_assets, template_site_sync_job
from template_pipeline.defs.checks import freshness_checks
from template_pipeline.defs.fleet import fleet_status, fleet_status_job
from template_pipeline.defs.health import template_health_job
from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.defs.personal_data import (
    daily_personal_data_erasure,
    personal_data_erasure,
    personal_data_job,
)
from template_pipeline.defs.resources import (
    AlertSinks,
    DashboardDatabase,
    TemplateCheckSettings,
    TemplateClientResource,
    TemplateSyncSettings,
)
from template_pipeline.defs.retention import retention, template_retention_job
from template_pipeline.defs.schedules import template_schedules
from template_pipeline.defs.sensors import template_sensors
from template_pipeline.defs.tags import IO_MANAGER_KEY
from template_pipeline.domain import config


def build_resources() -> dict[str, object]:
    database_url = dg.EnvVar(config.DASHBOARD_DATABASE_URL.name)
    return {
        "template_client": TemplateClientResource(),
        IO_MANAGER_KEY: TemplatePostgresIOManager(database_url=database_url),
        # Checks, sensors, alerts and the health job read the same database.
        "dashboard_database": DashboardDatabase(database_url=database_url),
        # Thresholds and the alert webhook come from the environment when unset here.
        "template_check_settings": TemplateCheckSettings(),
        "template_sync_settings": TemplateSyncSettings(),
        "alert_sinks": AlertSinks(),
    }


defs = dg.Definitions(
    assets=[*template_assets, retention, fleet_status, personal_data_erasure],
    asset_checks=[freshness_checks],
    jobs=[
        template_site_sync_job,
        template_health_job,
        template_retention_job,
        fleet_status_job,
        personal_data_job,
    ],
    schedules=[*template_schedules, daily_personal_data_erasure],
    sensors=template_sensors,
    resources=build_resources(),
    # A sync run is one step; the health job two small ones: running them in the run's own
    # process avoids starting a Python process per step (seconds each).
    executor=dg.in_process_executor,
)
