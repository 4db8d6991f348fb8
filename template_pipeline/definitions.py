"""The one Definitions object of the code location (workspace.yaml and [tool.dagster] point here).

Loading it needs no secret and no database: API keys and the dashboard URL are read from the
environment when a run starts.
"""

from __future__ import annotations

import dagster as dg

from template_pipeline.defs.alerts import AlertSinks
from template_pipeline.defs.assets import IO_MANAGER_KEY, template_assets, template_site_sync_job
from template_pipeline.defs.checks import DashboardDatabase, TemplateCheckSettings, template_checks
from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.defs.schedules import template_health_job, template_schedules
from template_pipeline.defs.sensors import template_sensors
from template_pipeline.source.client import TemplateClientResource
from template_pipeline.store.db import DASHBOARD_DATABASE_URL_ENV


def build_resources() -> dict[str, object]:
    return {
        "template_client": TemplateClientResource(),
        IO_MANAGER_KEY: TemplatePostgresIOManager(
            database_url=dg.EnvVar(DASHBOARD_DATABASE_URL_ENV)
        ),
        # Checks, sensors, alerts and the health job read the same database.
        "dashboard_database": DashboardDatabase(database_url=dg.EnvVar(DASHBOARD_DATABASE_URL_ENV)),
        # Thresholds and the alert webhook come from the environment when unset here.
        "template_check_settings": TemplateCheckSettings(),
        "alert_sinks": AlertSinks(),
    }


defs = dg.Definitions(
    assets=template_assets,
    asset_checks=template_checks,
    jobs=[template_site_sync_job, template_health_job],
    schedules=template_schedules,
    sensors=template_sensors,
    resources=build_resources(),
    # Site runs are a handful of I/O-bound steps: running them in the run's own process avoids
    # starting a Python process per step (seconds each, the dominant cost of a nightly sync).
    executor=dg.in_process_executor,
)
