"""The release step (``deploy/start.sh migrate``, the Procfile's ``release`` line) migrates both
schemas: the Dagster instance's and the Dashboard database's, and refuses to run half of it
when ``DASHBOARD_DATABASE_URL`` is missing.
"""

from __future__ import annotations

import subprocess

import pytest

from template_pipeline.store import migrate
from template_pipeline.store.schema_version import REQUIRED_REVISION
from template_pipeline_tests.fixtures.deployment import (
    REPO_ROOT,
    START_SCRIPT,
    ScratchDatabase,
    instance_env,
    isolated_env,
)
from template_pipeline_tests.fixtures.helpers import query

pytestmark = pytest.mark.e2e


def _release(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(START_SCRIPT), "migrate"],
        env=isolated_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_release_step_migrates_the_instance_and_the_dashboard(postgres_server_url, tmp_path):
    instance_db = ScratchDatabase.create(postgres_server_url, "tp_release_dagster")
    dashboard_db = ScratchDatabase.create(postgres_server_url, "tp_release_dashboard")
    try:
        env = {
            **instance_env(tmp_path / "dagster_home", instance_db),
            "DASHBOARD_DATABASE_URL": dashboard_db.libpq_url,
        }
        done = _release(env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"upgraded from none to {REQUIRED_REVISION}" in done.stdout
        assert migrate.database_revision(dashboard_db.sqlalchemy_url) == REQUIRED_REVISION
        instance_url = instance_db.sqlalchemy_url
        assert query(instance_url, "SELECT to_regclass('runs') IS NOT NULL AS ok")[0]["ok"]

        again = _release(env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "nothing to do" in again.stdout
    finally:
        instance_db.drop()
        dashboard_db.drop()


def test_the_release_step_needs_the_dashboard_database(tmp_path):
    env = {"DAGSTER_POSTGRES_URL": "postgresql://nobody@127.0.0.1:1/none"}
    done = _release(env)
    assert done.returncode == 2
    assert "DASHBOARD_DATABASE_URL is not set" in done.stderr
