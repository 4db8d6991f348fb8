"""Sensors: the pipeline follows its registry, its sites' changes and its webhooks by itself.

Run requests carry the ``template/site`` tag (one run per site at a time in the queue) and a
``template/trigger`` tag saying which sensor asked.
"""

from template_pipeline.defs.sensors.alerts import template_alerts_sensor
from template_pipeline.defs.sensors.changes import template_changes_sensor
from template_pipeline.defs.sensors.dead_runs import template_dead_runs_sensor
from template_pipeline.defs.sensors.fleet import (
    template_fleet_failure_sensor,
    template_fleet_sensor,
)
from template_pipeline.defs.sensors.sites import template_sites_sensor
from template_pipeline.defs.sensors.webhooks import template_webhook_sensor

template_sensors = [
    template_sites_sensor,
    template_changes_sensor,
    template_webhook_sensor,
    template_alerts_sensor,
    template_fleet_sensor,
    template_fleet_failure_sensor,
    template_dead_runs_sensor,
]

__all__ = [
    "template_alerts_sensor",
    "template_changes_sensor",
    "template_dead_runs_sensor",
    "template_fleet_failure_sensor",
    "template_fleet_sensor",
    "template_sensors",
    "template_sites_sensor",
    "template_webhook_sensor",
]
