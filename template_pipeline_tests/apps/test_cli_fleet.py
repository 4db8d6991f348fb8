"""``template-pipeline status`` and ``forget`` on the session database.

Behaviour under test: ``status`` prints the fleet table with the failing site first and its
error kind, a summary line and the failing site's error, and exits 1 while a site is failing
(0 once every site is ok); ``forget --email`` prints the rows it erased per table and exits 0,
``--site`` restricts it, an address it cannot use exits 1 and erases nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from template_pipeline.apps.cli import EXIT_OK, EXIT_SITE_FAILED, main
from template_pipeline.domain.sites import SITES_FILE_ENV, write_sites_file
from template_pipeline.store import db
from template_pipeline.store.sync_state import record_failure
from template_pipeline_tests.fixtures.helpers import query, write_records


def _users(*emails: str) -> list[dict]:
    return [{"id": i, "name": f"P {i}", "email": e} for i, e in enumerate(emails, start=1)]


@pytest.fixture
def fleet(dashboard_env, tmp_path, monkeypatch) -> tuple[str, str]:
    base = f"cli-fleet-{uuid.uuid4().hex[:6]}"
    good, refused = f"{base}-a", f"{base}-b"
    entries = [
        {"key": site, "base_url": "https://example.invalid/", "api_key_env": "TP_CLI_FLEET_KEY"}
        for site in (good, refused)
    ]
    monkeypatch.setenv(SITES_FILE_ENV, str(write_sites_file(tmp_path / "sites.yaml", entries)))
    monkeypatch.setenv("TP_CLI_FLEET_KEY", "k-fleet")
    for site in (good, refused):
        write_records(dashboard_env, site, "users", _users(f"a@{site}.fr", f"b@{site}.fr"))
    return good, refused


def _refuse(url: str, site: str) -> None:
    with db.connect(url) as conn:
        record_failure(
            conn,
            site=site,
            entity="users",
            run_id="run-refused",
            kind="auth",
            error="users: HTTP 401: the API key was refused",
            at=datetime.now(timezone.utc),
        )


def test_status_shows_the_failing_site_first_and_exits_1(fleet, dashboard_env, capsys):
    good, refused = fleet
    assert main(["status"]) == EXIT_OK
    capsys.readouterr()
    _refuse(dashboard_env, refused)
    assert main(["status"]) == EXIT_SITE_FAILED
    output = capsys.readouterr().out
    lines = output.splitlines()
    assert lines[0].startswith("| site | status |")
    assert lines[2].startswith(f"| {refused} | failing |") and "| auth |" in lines[2]
    assert lines[3].startswith(f"| {good} | ok |")
    assert "2 site(s): 1 ok, 1 failing, 0 stale" in output and "1 refused key(s)" in output
    assert f"  {refused}: auth: users: HTTP 401" in output
    assert "k-fleet" not in output


def test_forget_prints_what_it_erased_and_site_restricts(fleet, dashboard_env, capsys):
    good, refused = fleet
    address = f"a@{good}.fr"
    # The same address on the other site too: --site leaves it there.
    write_records(dashboard_env, refused, "users", _users(f"a@{refused}.fr", address), "run-2")
    assert main(["forget", "--email", address.upper(), "--site", good]) == EXIT_OK
    output = capsys.readouterr().out
    assert f"forget: erased from site {good}:" in output
    assert "template_users" in output and "1 row(s)" in output
    assert "still served by their site" in output
    left = query(dashboard_env, "SELECT site FROM template_users WHERE email = %s", address)
    assert [r["site"] for r in left] == [refused]

    assert main(["forget", "--email", address]) == EXIT_OK
    assert not query(dashboard_env, "SELECT 1 FROM template_users WHERE email = %s", address)
    assert main(["forget", "--email", address]) == EXIT_OK
    assert "nothing held that address" in capsys.readouterr().out


def test_forget_refuses_what_is_not_an_address(fleet, capsys):
    assert main(["forget", "--email", "not an address"]) == EXIT_SITE_FAILED
    assert "is not an e-mail address" in capsys.readouterr().err
