"""Content hashes let unchanged records off validation (``domain.changes``).

Behaviour under test: a record whose raw content and salt match the stored hash is let off,
anything else goes through (changed field, new key, unknown stored hash, a salt that differs by
base URL or entity); a key seen twice in one sync goes through the second time and counts as a
duplicate; raw ids are normalised to the stored key's form (integers for bigint keys, text for
text keys); the hash is a signed 64-bit integer and the same in every process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from template_pipeline.domain.changes import (
    ChangeFilter,
    KnownRows,
    entity_salt,
    int_key,
    record_hash,
    text_key,
)

SALT = entity_salt("paintings", "http://site.example/")


def painting(i: int, **fields):
    return {"id": i, "name": f"Toile {i}", "price": "10.00", **fields}


def known(*records, normalise=int_key) -> KnownRows:
    return KnownRows({normalise(r["id"]): record_hash(r, SALT) for r in records}, normalise)


def test_unchanged_records_are_let_off_and_the_others_go_through():
    stored = [painting(1), painting(2), painting(3)]
    changes = ChangeFilter("paintings", known(*stored), SALT)
    page = [painting(1), painting(2, price="12.00"), painting(4)]
    passed, hashes = changes.split(page)
    assert [r["id"] for r in passed] == [2, 4]
    assert hashes == [record_hash(painting(2, price="12.00"), SALT), record_hash(painting(4), SALT)]
    assert changes.unchanged == {1}
    assert (changes.skipped, changes.passed, changes.duplicates) == (1, 2, 0)


def test_key_order_does_not_matter_but_content_does():
    a = {"id": 1, "name": "x", "price": "1"}
    b = {"price": "1", "name": "x", "id": 1}
    assert record_hash(a, SALT) == record_hash(b, SALT)
    assert record_hash(a, SALT) != record_hash({**a, "name": "y"}, SALT)
    assert record_hash(a, SALT) != record_hash(a, entity_salt("paintings", "http://other/"))
    assert record_hash(a, SALT) != record_hash(a, entity_salt("users", "http://site.example/"))


def test_hash_is_a_signed_bigint_and_stable_across_processes():
    digest = record_hash(painting(7), SALT)
    assert isinstance(digest, int) and -(2**63) <= digest < 2**63
    code = (
        "from template_pipeline.domain.changes import entity_salt, record_hash;"
        "print(record_hash({'id': 7, 'name': 'Toile 7', 'price': '10.00'},"
        " entity_salt('paintings', 'http://site.example/')))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == digest


def test_a_key_seen_twice_goes_through_the_second_time():
    changes = ChangeFilter("paintings", known(painting(1)), SALT)
    first, _ = changes.split([painting(1)])
    second, _ = changes.split([painting(1)])
    assert first == [] and second == [painting(1)]
    assert changes.unchanged == {1} and changes.duplicates == 1


def test_unknown_stored_hash_and_unhashable_records_go_through():
    rows = KnownRows({1: None}, int_key)
    changes = ChangeFilter("paintings", rows, SALT)
    huge = painting(2, price=10**30)  # beyond 64 bits: orjson cannot encode it
    passed, hashes = changes.split([painting(1), huge, "not a record"])
    assert passed == [painting(1), huge, "not a record"]
    assert hashes[1] is None and hashes[2] is None


@pytest.mark.parametrize(
    ("raw", "as_int", "as_text"),
    [(12, 12, "12"), ("12", 12, "12"), (" 12 ", 12, "12"), ("-3", -3, "-3"), ("abc", None, "abc"),
     (True, None, None), (None, None, None), ("", None, None), (1.5, None, None)],
)  # fmt: skip
def test_keys_are_normalised_to_the_stored_form(raw, as_int, as_text):
    assert int_key(raw) == as_int
    assert text_key(raw) == as_text
