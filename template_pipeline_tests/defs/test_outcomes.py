"""What a failure of a site's sync is called, whether it is tried again, how far it reaches."""

import psycopg
import pytest

from template_pipeline.defs.sync.outcomes import classify
from template_pipeline.domain.sites import SiteConfigError
from template_pipeline.source.errors import (
    TemplateAuthenticationError,
    TemplateConnectionError,
    TemplateDeadlineError,
    TemplateNotFoundError,
    TemplateResponseError,
)
from template_pipeline.store.locks import SiteBusyError
from template_pipeline.store.results import MassDeleteRefusedError

WHERE = {"site": "site-a", "endpoint": "paintings"}


def _deadline(scope: str) -> TemplateDeadlineError:
    error = TemplateDeadlineError(f"{scope} deadline of 10 s spent", **WHERE)
    error.scope = scope
    return error


@pytest.mark.parametrize(
    ("error", "kind", "retryable", "site_wide"),
    [
        (SiteConfigError("site 'site-a': TEMPLATE_KEY_SITE_A is not set"), "config", False, True),
        (TemplateAuthenticationError("HTTP 401", status=401, **WHERE), "auth", False, True),
        (TemplateConnectionError("connection refused", **WHERE), "unreachable", False, True),
        (TemplateNotFoundError("HTTP 404", status=404, **WHERE), "not found", False, False),
        (_deadline("site"), "deadline", False, True),
        (_deadline("endpoint"), "deadline", False, False),
        (_deadline("request"), "deadline", False, False),
        # The client says whether a bad answer may heal (a 503 after its retries) or not.
        (
            TemplateResponseError("HTTP 503", status=503, retryable=True, **WHERE),
            "bad response",
            True,
            False,
        ),
        (TemplateResponseError("not JSON", retryable=False, **WHERE), "bad response", False, False),
        (SiteBusyError("site 'site-a' is being written by another run"), "busy", True, True),
        (psycopg.OperationalError("server closed the connection"), "database", True, False),
        (ValueError("bad row"), "bad data", False, False),
        (RuntimeError("bug"), "internal", False, False),
    ],
)
def test_every_failure_has_a_kind_a_retry_decision_and_a_reach(error, kind, retryable, site_wide):
    failure = classify(error)
    assert (failure.kind, failure.retryable, failure.site_wide) == (kind, retryable, site_wide)
    assert failure.reason


def test_a_refused_write_is_never_retried():
    refusal = MassDeleteRefusedError(
        site="site-a",
        entity="paintings",
        live_rows=100,
        to_delete=90,
        max_delete_fraction=0.5,
        min_rows_for_guard=10,
    )
    failure = classify(refusal)
    assert (failure.kind, failure.retryable) == ("refused", False)
    assert "90 of 100 live rows" in failure.reason


def test_the_reason_names_the_endpoint_and_stays_short():
    failure = classify(TemplateResponseError("x" * 5000, **WHERE))
    assert failure.reason.startswith("paintings: ")
    assert len(failure.reason) <= 600
