"""Field types of the Template records: what sites really send, coerced into column values.

Python validators only where pydantic-core has no equivalent (blank -> None), so that the common
case stays inside pydantic-core. The bounds are the Dashboard columns' (a test keeps them equal
to the table definitions): a value beyond them would make PostgreSQL refuse the whole page, so
it is a reject of its record instead.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

from template_pipeline.domain.models.reasons import show

# MySQL's "zero" dates, which PHP sites print for "no date".
_ZERO_DATES = frozenset({"0000-00-00", "0000-00-00 00:00:00", "0000-00-00T00:00:00"})
# Deliberately loose: one "@", no whitespace, a dot in the domain. Unicode letters pass (IDN).
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]")
# Money is NUMERIC(12, 2), revenue NUMERIC(14, 2), counts and years INTEGER.
MONEY_MAX = Decimal("9999999999.99")
REVENUE_MAX = Decimal("999999999999.99")
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and (not value or value.isspace()):
        return None
    return value


def _number_or_none(value: Any) -> Any:
    # pydantic accepts True as 1 for ints; a boolean year or quantity is a site bug, not a number.
    if isinstance(value, bool):
        raise PydanticCustomError("not_a_number", "not a number (got {got})", {"got": show(value)})
    # Inlined rather than calling _blank_to_none: this runs for every numeric field of a page.
    if isinstance(value, str) and (not value or value.isspace()):
        return None
    return value


def _datetime_or_none(value: Any) -> Any:
    value = _blank_to_none(value)
    if isinstance(value, str) and value.strip() in _ZERO_DATES:
        return None
    return value


def _date_or_none(value: Any) -> Any:
    value = _datetime_or_none(value)
    # A date column fed a timestamp ("2024-03-01 18:00:00") keeps the date as the site wrote it.
    if isinstance(value, str):
        value = value.strip()
        if len(value) > 10 and value[10] in "Tt ":
            return value[:10]
    return value


def _role(value: Any) -> str:
    if value is None or (isinstance(value, str) and (not value or value.isspace())):
        return "user"
    if isinstance(value, str) and value.strip().lower() in ("admin", "user"):
        return value.strip().lower()
    raise PydanticCustomError("role", "must be 'admin' or 'user' (got {got})", {"got": show(value)})


def _email(value: Any) -> Any:
    value = _blank_to_none(value)
    if isinstance(value, str) and not _EMAIL_RE.fullmatch(value.strip()):
        raise PydanticCustomError(
            "email", "not a valid email address (got {got})", {"got": show(value)}
        )
    return value


def item_quantity(value: Any) -> Any:
    # A line without a quantity is one piece (how the Template cart writes single purchases).
    value = _number_or_none(value)
    return 1 if value is None else value


def items_list(value: Any) -> Any:
    # Some sites store the cart as JSON text and export that text as is.
    value = _blank_to_none(value)
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise PydanticCustomError(
                "items_json", "not valid JSON ({error})", {"error": str(exc)}
            ) from None
    return value


TemplateId = Annotated[str, StringConstraints(min_length=1)]
RequiredText = Annotated[str, StringConstraints(min_length=1)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
# ``le`` before rounding to cents is enough: nothing at most MONEY_MAX rounds above it.
Money = Annotated[Decimal, Field(ge=0, le=MONEY_MAX)]
OptionalMoney = Annotated[Money | None, BeforeValidator(_number_or_none)]
Int = Annotated[int, Field(ge=INT_MIN, le=INT_MAX)]
Count = Annotated[int, Field(ge=0, le=INT_MAX)]
OptionalInt = Annotated[Int | None, BeforeValidator(_number_or_none)]
OptionalCount = Annotated[Count | None, BeforeValidator(_number_or_none)]
OptionalDateTime = Annotated[datetime | None, BeforeValidator(_datetime_or_none)]
OptionalDate = Annotated[date | None, BeforeValidator(_date_or_none)]
OptionalEmail = Annotated[str | None, BeforeValidator(_email)]
Revenue = Annotated[
    Annotated[Decimal, Field(ge=0, le=REVENUE_MAX)] | None, BeforeValidator(_number_or_none)
]
Role = Annotated[Literal["admin", "user"], BeforeValidator(_role)]


def aliases(*names: str) -> Any:
    """Accept several spellings of one field; the first one present wins."""
    return Field(default=None, validation_alias=AliasChoices(*names))
