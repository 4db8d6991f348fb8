"""The demo setup: embedded PostgreSQL, the Template simulator with three sites, a sites file.

``template-pipeline demo`` and ``template-pipeline dev`` (``make demo`` / ``make dev``) share it.
Where ``DASHBOARD_DATABASE_URL`` is already set, its server is used instead of the embedded one
(the Dagster instance then gets a database of its own on that server). Either way the Dashboard
database is migrated first, as ``template-pipeline migrate`` does in production: the pipeline
refuses to write into a database whose schema is behind.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from template_pipeline.apps.simulator import SimulatorServer, demo_sites
from template_pipeline.domain import config
from template_pipeline.domain.sites import SITES_FILE_ENV, write_sites_file
from template_pipeline.store import db, migrate
from template_pipeline.store.embedded import start_embedded_postgres

DAGSTER_POSTGRES_URL_ENV = config.DAGSTER_POSTGRES_URL.name
INSTANCE_DATABASE = "template_dagster"
# A stable port keeps the demo sites' base URLs (and so the paintings' image_url) identical
# from one demo run to the next, so that a second sync really has nothing to write.
DEMO_SIMULATOR_PORT = 8765


def port_or_free(port: int, host: str = "127.0.0.1") -> int:
    """``port`` if nothing listens on it, else 0 (the OS picks a free one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return 0
    return port


@dataclass
class DemoEnvironment:
    env: dict[str, str]
    simulator: SimulatorServer
    sites_file: Path
    dagster_home: Path
    schema: migrate.Upgrade


def prepare_instance_home(home: Path, dashboard_url: str) -> dict[str, str]:
    """A ``DAGSTER_HOME`` holding the repo's dagster.yaml, storage in PostgreSQL."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config.PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    db.ensure_database(dashboard_url, INSTANCE_DATABASE)
    instance_url = db.dagster_storage_url(db.with_database(dashboard_url, INSTANCE_DATABASE))
    return {"DAGSTER_HOME": str(home), DAGSTER_POSTGRES_URL_ENV: instance_url}


@contextmanager
def demo_environment(
    port: int = DEMO_SIMULATOR_PORT, local_dir: Path | None = None
) -> Iterator[DemoEnvironment]:
    """Start what the demo needs and set its variables in ``os.environ`` for the duration."""
    local_dir = Path(local_dir or config.local_dir())
    dashboard_url = config.DASHBOARD_DATABASE_URL.get()
    if not dashboard_url:
        dashboard_url = start_embedded_postgres(local_dir / "pgdata", database="dashboard")
    schema = migrate.upgrade(dashboard_url)

    simulator = SimulatorServer(demo_sites(), port=port_or_free(port) if port else 0).start()
    try:
        sites_file = write_sites_file(
            local_dir / "demo" / "sites.yaml", simulator.sites_file_entries()
        )
        env = {
            db.DASHBOARD_DATABASE_URL_ENV: dashboard_url,
            SITES_FILE_ENV: str(sites_file),
            **simulator.api_key_env(),
            **prepare_instance_home(local_dir / "dagster_home", dashboard_url),
        }
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield DemoEnvironment(
                env=env,
                simulator=simulator,
                sites_file=sites_file,
                dagster_home=Path(env["DAGSTER_HOME"]),
                schema=schema,
            )
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    finally:
        simulator.stop()
