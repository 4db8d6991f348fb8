"""The API key in every form a server can echo it, kept out of messages and logs.

Behaviour under test: the redactor replaces the key raw, URL-quoted (``quote`` and
``quote_plus``, either case of percent-escapes), form-decoded, JSON-escaped (PHP's ``\\/``
included) and HTML-escaped; URLs are shown without their query; the logging filter rewrites the
records (message, arguments, traceback) that carry a registered key; and, end to end with
``-v`` style DEBUG logging against a local server that redirects with the key in the query,
echoes it in error bodies and HTML titles and then revokes it, neither the captured logs
(urllib3's included) nor the errors carry the key in any form.
"""

from __future__ import annotations

import html
import json
import logging
import pickle
import re
import sys
from urllib.parse import quote, quote_plus, unquote_plus

import pytest

from template_pipeline.apps.cli import main
from template_pipeline.apps.simulator import Faults, SimSite, SimulatorServer
from template_pipeline.domain.sites import SITES_FILE_ENV, write_sites_file
from template_pipeline.source.client import TemplateClient
from template_pipeline.source.describe import display_url
from template_pipeline.source.errors import TemplateError
from template_pipeline.source.redaction import (
    REDACTED,
    RedactingFilter,
    Redactor,
    install_log_redaction,
    register_secret,
)

# Characters that every encoding spells differently.
KEY = "sk-SENTINEL/9+x=y&z"


def forms(key: str) -> list[str]:
    php = json.dumps(key)[1:-1].replace("/", "\\/")
    return [
        key,
        quote(key, safe=""),
        re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(key, safe="")),
        quote_plus(key),
        unquote_plus(key),
        php,
        html.escape(key),
    ]


def assert_key_free(text: str) -> None:
    for form in forms(KEY):
        assert form not in text, form


@pytest.mark.parametrize("form", forms(KEY))
def test_every_form_of_the_key_is_redacted(form):
    redactor = Redactor([KEY])
    text = f"the server said: bad key <{form}> (retry later)"
    assert redactor.redact(text) == f"the server said: bad key <{REDACTED}> (retry later)"
    assert redactor.contains(text) and not redactor.contains("nothing here")


def test_short_or_empty_secrets_redact_nothing():
    assert not Redactor(["", "ab"]) and Redactor(["", "ab"]).redact("ab cd") == "ab cd"


def test_urls_are_shown_without_their_query_or_user_info():
    shown = display_url(f"https://user:pw@site.test/api/export/stats?token={quote_plus(KEY)}#x")
    assert shown == "https://site.test/api/export/stats?…"
    assert display_url("http://[bad") == "an unparsable URL"


def test_the_filter_rewrites_records_carrying_a_registered_key():
    register_secret(KEY)
    record = logging.LogRecord(
        "urllib3.connectionpool",
        logging.DEBUG,
        __file__,
        1,
        '"GET %s" %s',
        (f"/stats?token={quote_plus(KEY)}", 302),
        None,
    )
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == f'"GET /stats?token={REDACTED}" 302'
    try:
        raise ValueError(f"echoed {quote(KEY, safe='')}")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    RedactingFilter().filter(failed)
    assert failed.exc_text and REDACTED in failed.exc_text
    assert_key_free(failed.exc_text)


@pytest.fixture(scope="module")
def server():
    sites = [
        SimSite(
            key="echo",
            api_key=KEY,
            paintings=5,
            faults=Faults(echo_key=True, redirect_with_key=True, script=[200, 500, 200]),
        ),
        SimSite(
            key="echo-html", api_key=KEY, paintings=5, faults=Faults(echo_key=True, html_every=1)
        ),
        SimSite(
            key="echo-revoked",
            api_key=KEY,
            paintings=5,
            faults=Faults(echo_key=True, redirect_with_key=True, revoke_after=1),
        ),
    ]
    with SimulatorServer(sites) as running:
        yield running


def test_debug_logs_and_errors_never_carry_the_key(server, caplog):
    caplog.set_level(logging.DEBUG)
    install_log_redaction()
    errors: list[TemplateError] = []
    for key in ("echo", "echo-html", "echo-revoked"):
        client = TemplateClient(
            site=key,
            base_url=server.base_url(key),
            api_key=KEY,
            max_retries=1,
            backoff_factor=0.01,
        )
        with client:
            for call in (client.fetch_stats, lambda c=client: c.fetch_list("paintings")):
                try:
                    call()
                except TemplateError as exc:
                    errors.append(exc)
    assert len(errors) >= 3
    assert any("token=" in r.getMessage() for r in caplog.records)  # urllib3's request lines
    assert any("[redacted]" in str(e) for e in errors)
    assert_key_free(caplog.text)
    for error in errors:
        text = f"{error} {error!r} {error.__cause__!r} {pickle.loads(pickle.dumps(error))}"
        assert_key_free(text)


def test_the_cli_installs_the_filter_for_verbose_output(server, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    entries = [
        {
            "key": "echo-revoked",
            "base_url": server.base_url("echo-revoked"),
            "api_key_env": "TP_REDACTION_KEY",
        }
    ]
    monkeypatch.setenv(SITES_FILE_ENV, str(write_sites_file(tmp_path / "sites.yaml", entries)))
    monkeypatch.setenv("TP_REDACTION_KEY", KEY)
    monkeypatch.setenv("TEMPLATE_HEALTH_RETRY_PAUSE_S", "0")
    main(["-v", "health"])
    assert caplog.records
    assert_key_free(caplog.text)


def test_a_thousand_keys_are_each_redacted_in_every_form():
    keys = [f"sk-fleet-{i:04d}/{i * 7919 % 10007:05d}+k" for i in range(1000)]
    redactor = Redactor(keys)
    grown = Redactor()
    for key in keys:
        grown = grown.with_secret(key)
    for key in (keys[0], keys[537], keys[-1]):
        for form in forms(key):
            text = f"GET /api?key={form} failed"
            assert redactor.redact(text) == f"GET /api?key={REDACTED} failed", form
            assert grown.contains(text) and grown.redact(text) == redactor.redact(text)
    assert not redactor.contains("a log line without any key, sk-fleet-0001 alone")


def test_a_key_containing_another_is_replaced_whole():
    short, long = "abcd-1234", "abcd-1234-and-more"
    many = [short, long, *(f"other-key-{i}" for i in range(20))]
    for redactor in (Redactor([short, long]), Redactor(many)):
        assert redactor.redact(f"<{long}> <{short}>") == f"<{REDACTED}> <{REDACTED}>"


def test_a_key_that_is_not_ascii_is_still_found_among_many():
    keys = ["clé-İstanbul-9", *(f"other-key-{i}" for i in range(20))]
    assert Redactor(keys).redact("the key clé-İstanbul-9 leaked") == f"the key {REDACTED} leaked"


@pytest.mark.parametrize("form", forms(KEY))
def test_a_form_cut_short_by_the_message_limit_is_redacted_too(form):
    from template_pipeline.source.describe import shorten

    many = Redactor([KEY, *(f"other-key-{i}" for i in range(20))])
    for redactor in (Redactor([KEY]), many):
        for cut in range(4, len(form)):
            message = f"Unauthorized: key {form} was sent"
            # The server's text is bounded before the transport redacts it.
            text = "(server says: " + shorten(message, len("Unauthorized: key ") + cut + 1) + ")"
            redacted = redactor.redact(text)
            assert form[:cut] not in redacted and redacted.endswith(f"{REDACTED}…)"), redacted
            assert redactor.contains(text)


def test_an_ellipsis_after_ordinary_text_is_left_alone():
    redactor = Redactor([KEY])
    for text in ("GET http://site.example/api/export/paintings?…", "page title 'sk…'", "…"):
        assert redactor.redact(text) == text and not redactor.contains(text)
