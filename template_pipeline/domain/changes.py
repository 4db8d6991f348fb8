"""Unchanged records cost next to nothing: a content hash per record, compared as pages arrive.

Each stored row keeps the hash of the raw record it was built from (``content_hash``). Before a
sync, the site's live rows' hashes are loaded once (:class:`KnownRows`); as each page arrives,
:class:`ChangeFilter` hashes every raw record and lets through only the records that are new or
changed. An unchanged record is neither validated again nor copied: its key is only noted, so
the merge knows the site still serves it.

The hash covers the record's JSON with sorted keys and a salt made of the entity, the site's
base URL (paintings' ``image_url`` is built from it) and the models' JSON schema, so a release
that changes validation, or a site that moves, revalidates everything once. A key seen twice in
one sync goes through the second time: if valid, the later occurrence wins, as without the
filter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from template_pipeline.domain.entities import BY_NAME

Key = Any  # an int for record ids, a str for setting keys
_blake2b = hashlib.blake2b
_from = int.from_bytes


def int_key(raw: Any) -> Key | None:
    """An integer key (``bigint`` columns) from a raw id: ``12`` and ``"12"``; None otherwise."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
            return int(text)
    return None


def text_key(raw: Any) -> Key | None:
    """A text key (``text`` columns) from a raw id, as validation stores it (numbers as text)."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        return None
    return str(raw).strip() or None


@lru_cache(maxsize=64)
def _schema_fingerprint(entity: str) -> bytes:
    model = BY_NAME[entity].model
    schema = json.dumps(model.model_json_schema(), sort_keys=True, default=str)
    return hashlib.blake2b(schema.encode(), digest_size=16).digest()


def entity_salt(entity: str, base_url: str | None) -> bytes:
    """What, besides the record itself, decides the row it becomes."""
    parts = (entity.encode(), (base_url or "").encode(), _schema_fingerprint(entity))
    return hashlib.blake2b(b"\x00".join(parts), digest_size=16).digest()


def record_hash(record: Mapping[str, Any], salt: bytes) -> int | None:
    """A signed 64-bit hash of ``record`` (a ``bigint``), or None when it cannot be encoded."""
    try:
        encoded = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits, odd types
        return None
    digest = hashlib.blake2b(encoded, digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class KnownRows:
    """The site's live rows of one entity as stored: key -> content hash (None: unknown).

    ``normalise`` turns a raw id, or a key as validation makes it, into the stored key's form
    (:func:`int_key` or :func:`text_key`, after the key column's type).
    """

    hashes: dict[Key, int | None]
    normalise: Callable[[Any], Key | None] = text_key


@dataclass
class ChangeFilter:
    """Splits raw pages into records to validate and keys of records that did not change."""

    entity: str
    known: KnownRows
    salt: bytes
    unchanged: set[Key] = field(default_factory=set)
    seen: set[Key] = field(default_factory=set)
    # Records whose key had already appeared in this sync (the payload's duplicate keys).
    duplicates: int = 0
    passed: int = 0  # records let through to validation
    skipped: int = 0  # records let off as unchanged

    def split(self, records: Iterable[Any]) -> tuple[list[Any], list[int | None]]:
        """The records of a page that must be validated, with their hashes (same order)."""
        id_field = BY_NAME[self.entity].id_field
        known, seen, unchanged, salt = self.known.hashes, self.seen, self.unchanged, self.salt
        normalise = self.known.normalise
        # Locals: this loop runs once per record of the site (record_hash, inlined).
        dumps, sort_keys, blake2b, from_bytes = orjson.dumps, orjson.OPT_SORT_KEYS, _blake2b, _from
        int_keys = normalise is int_key
        changed: list[Any] = []
        hashes: list[int | None] = []
        for record in records:
            if record.__class__ is not dict:
                changed.append(record)
                hashes.append(None)
                continue
            try:
                encoded = dumps(record, option=sort_keys)
            except (TypeError, orjson.JSONEncodeError):  # as record_hash
                digest = None
            else:
                blake = blake2b(encoded, digest_size=8, key=salt).digest()
                digest = from_bytes(blake, "big", signed=True)
            raw = record.get(id_field)
            key = raw if int_keys and raw.__class__ is int else normalise(raw)
            if key is not None:
                if key in seen:
                    # The later occurrence must go through: if it is valid, it wins over the
                    # earlier one in the merge, as it would without the filter.
                    self.duplicates += 1
                else:
                    seen.add(key)
                    if digest is not None and known.get(key) == digest:
                        unchanged.add(key)
                        self.skipped += 1
                        continue
            changed.append(record)
            hashes.append(digest)
        self.passed += len(changed)
        return changed, hashes
