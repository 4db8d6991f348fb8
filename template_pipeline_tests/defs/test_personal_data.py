"""``personal_data_erasure``: the daily job erases past the delay and says how much.

Behaviour under test: the asset erases the personal fields of a user deleted upstream longer
ago than ``TEMPLATE_PERSONAL_DATA_ERASE_DAYS`` and reports the rows per table as int metadata
(zeros included); a delay that is not a number of days is refused naming the variable; the
daily schedule asks for one run per day, in its own job.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from template_pipeline.defs.personal_data import (
    PERSONAL_DATA_JOB_NAME,
    daily_personal_data_erasure,
    erase_delay,
    personal_data_erasure,
)
from template_pipeline.defs.resources import DashboardDatabase
from template_pipeline.store import db
from template_pipeline_tests.fixtures.helpers import query, unique_site, write_records


def _user(i: int) -> dict:
    return {"id": i, "name": f"P {i}", "email": f"p{i}@example.fr"}


def test_the_asset_erases_past_the_delay_and_reports_per_table(url, monkeypatch):
    site = unique_site("erasure")
    write_records(url, site, "users", [_user(1), _user(2)])
    write_records(url, site, "users", [_user(2)], run_id="run-2")
    with db.connect(url) as conn:
        conn.execute(
            "UPDATE template_users SET deleted_at = now() - interval '8 days' "
            "WHERE site = %s AND deleted_at IS NOT NULL",
            (site,),
        )
    monkeypatch.setenv("TEMPLATE_PERSONAL_DATA_ERASE_DAYS", "7")
    result = dg.materialize(
        [personal_data_erasure],
        instance=dg.DagsterInstance.ephemeral(),
        resources={"dashboard_database": DashboardDatabase(database_url=url)},
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    md = event.materialization.metadata
    assert md["rows_erased"].value >= 1  # this site's user (others' tests may add theirs)
    assert isinstance(md["template_orders"], dg.IntMetadataValue)
    assert md["erase_after_days"].value == 7
    stored = query(
        url, "SELECT template_id, email, erased_at FROM template_users WHERE site = %s", site
    )
    assert {(r["template_id"], r["email"], r["erased_at"] is not None) for r in stored} == {
        (1, None, True),
        (2, "p2@example.fr", False),
    }


@pytest.mark.parametrize("raw", ["soon", "-1"])
def test_a_delay_that_is_not_days_is_refused(raw):
    with pytest.raises(ValueError, match="TEMPLATE_PERSONAL_DATA_ERASE_DAYS"):
        erase_delay({"TEMPLATE_PERSONAL_DATA_ERASE_DAYS": raw})


def test_the_delay_defaults_to_thirty_days():
    assert erase_delay({}) == timedelta(days=30)


def test_the_daily_schedule_asks_for_one_run_a_day():
    assert daily_personal_data_erasure.job_name == PERSONAL_DATA_JOB_NAME
    at = datetime(2026, 3, 4, 3, 30, tzinfo=timezone.utc)
    context = dg.build_schedule_context(scheduled_execution_time=at)
    request = daily_personal_data_erasure(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == "personal-data:2026-03-04"
