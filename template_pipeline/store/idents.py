"""Identifiers and JSON values for the write path's raw psycopg SQL.

The SQL names only identifiers of the tables module (through ``psycopg.sql.Identifier``); every
value is a bound parameter or travels through COPY.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
from psycopg import sql


def idents(names: Iterable[str], prefix: str | None = None) -> sql.Composed:
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)


def json_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. integers beyond 64 bits, which orjson refuses
        return json.dumps(value, default=str, ensure_ascii=False)
