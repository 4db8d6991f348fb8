"""The group, keys and run tags the Dagster definitions share."""

from __future__ import annotations

GROUP = "template"
IO_MANAGER_KEY = "dashboard_io_manager"
# The site a run syncs: the run queue allows one run per value at a time (dagster.yaml).
SITE_TAG = "template/site"
# Who asked for a run: cli, nightly, sensor names, webhook... (shown in the UI's run list).
TRIGGER_TAG = "template/trigger"
# The window of sites a ranged run covers ("first..last"): one run per window at a time.
BATCH_TAG = "template/batch"

# Where a sync run executes and when it last said it was alive (see defs.liveness): the run's
# process (the CLI, or the run worker) on its host, and a heartbeat every 30 s.
HOST_TAG = "template/host"
PID_TAG = "template/pid"
HEARTBEAT_TAG = "template/heartbeat"


def site_run_tags(site: str, trigger: str | None = None) -> dict[str, str]:
    """Tags of a site's runs: the run queue allows one run per site value at a time."""
    tags = {SITE_TAG: site}
    if trigger:
        tags[TRIGGER_TAG] = trigger
    return tags
