"""The Helm values keep the repo's dagster.yaml policies: on Kubernetes the chart writes the
instance configuration from them, so a limit added to one file and not the other would hold on
one platform only."""

from __future__ import annotations

import yaml

from template_pipeline.domain import config

ROOT = config.PROJECT_ROOT


def _load(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))


def test_the_run_queue_has_the_same_tag_limits():
    instance = _load("dagster.yaml")["run_coordinator"]["config"]["tag_concurrency_limits"]
    helm = _load("deploy/helm/values.yaml")["dagsterDaemon"]["runCoordinator"]["config"][
        "queuedRunCoordinator"
    ]["tagConcurrencyLimits"]

    def limits(entries: list[dict]) -> dict[str, tuple]:
        return {
            e["key"]: (e["limit"], e.get("value", {}).get("applyLimitPerUniqueValue"))
            for e in entries
        }

    assert limits(helm) == limits(instance)
    assert "template/batch" in limits(instance)


def test_run_retries_and_monitoring_agree():
    instance = _load("dagster.yaml")
    daemon = _load("deploy/helm/values.yaml")["dagsterDaemon"]
    assert daemon["runRetries"]["enabled"] == instance["run_retries"]["enabled"]
    assert daemon["runRetries"]["maxRetries"] == instance["run_retries"]["max_retries"]
    assert (
        daemon["runRetries"]["retryOnAssetOrOpFailure"]
        == instance["run_retries"]["retry_on_asset_or_op_failure"]
    )
    assert daemon["runMonitoring"]["enabled"] == instance["run_monitoring"]["enabled"]
    assert (
        daemon["runMonitoring"]["maxResumeRunAttempts"]
        == instance["run_monitoring"]["max_resume_run_attempts"]
    )
