"""Field types of the Template records: what sites really send, coerced into column values.

Python validators only where pydantic-core has no equivalent (blank -> None, the id rules), so
that the common case stays inside pydantic-core. The bounds are the Dashboard columns' (a test
keeps them equal to the table definitions): a value beyond them would make PostgreSQL refuse the
whole page, so it is a reject of its record instead.

Ids are integers, as the sites send them, stored as ``bigint``. Accepted: a JSON integer, a JSON
number without a fraction up to 2**53 (beyond that a float no longer says which integer it
was), and text of decimal digits with an optional sign (``"12"``, ``" 012 "``: some sites send
every number as text). Anything else is a reject naming the field: booleans, fractions,
exponents (``"1e3"``), other text, and values outside the bigint range.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

from template_pipeline.domain.models.reasons import (
    ID_NOT_AN_INTEGER,
    ID_OUT_OF_RANGE,
    REQUIRED_NOT_A_ZERO_DATE,
    show,
)
from template_pipeline.domain.vocabulary import DEFAULT_PAINTING_STATUS

# MySQL's "zero" dates, which PHP sites print for "no date".
_ZERO_DATES = frozenset({"0000-00-00", "0000-00-00 00:00:00", "0000-00-00T00:00:00"})
# Deliberately loose: one "@", no whitespace, a dot in the domain. Unicode letters pass (IDN).
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]")
# Money is NUMERIC(12, 2), revenue NUMERIC(14, 2), counts and years INTEGER.
MONEY_MAX = Decimal("9999999999.99")
REVENUE_MAX = Decimal("999999999999.99")
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# Ids are BIGINT.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
# Every integer up to 2**53 is exactly one float; a larger float may stand for several ids.
_EXACT_FLOAT_MAX = 2**53
# ASCII digits only: str.isdigit() and int() also take other scripts' digits.
_INTEGER_TEXT_RE = re.compile(r"[+-]?[0-9]+")
# Longer digit strings are beyond the bigint range anyway (and int() of huge text is slow).
_MAX_ID_DIGITS = 20


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


def _required_datetime(value: Any) -> Any:
    # Blanks stay as they are, so the reason says "required (empty)", not "(null)".
    if isinstance(value, str) and value.strip() in _ZERO_DATES:
        raise PydanticCustomError("zero_date", REQUIRED_NOT_A_ZERO_DATE, {"got": show(value)})
    return value


def _not_an_integer(value: Any) -> PydanticCustomError:
    return PydanticCustomError("id_type", ID_NOT_AN_INTEGER, {"got": show(value)})


def _bounded(number: int, value: Any) -> int:
    if BIGINT_MIN <= number <= BIGINT_MAX:
        return number
    raise PydanticCustomError("id_range", ID_OUT_OF_RANGE, {"got": show(value)})


def _integer_id(value: Any) -> Any:
    cls = value.__class__
    if cls is int:
        return _bounded(value, value)
    if cls is str:
        text = value.strip()
        if _INTEGER_TEXT_RE.fullmatch(text):
            if len(text.lstrip("+-").lstrip("0")) > _MAX_ID_DIGITS:
                raise PydanticCustomError("id_range", ID_OUT_OF_RANGE, {"got": show(value)})
            return _bounded(int(text), value)
        raise _not_an_integer(value)
    if cls is float:
        if value.is_integer() and abs(value) <= _EXACT_FLOAT_MAX:
            return int(value)
        raise _not_an_integer(value)
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return _bounded(int(value), value)
        raise _not_an_integer(value)
    # Booleans are ints to Python; to a site they are a bug, not an id.
    if isinstance(value, int) and not isinstance(value, bool):
        return _bounded(int(value), value)
    raise _not_an_integer(value)


def _optional_integer_id(value: Any) -> Any:
    if value is None or (isinstance(value, str) and (not value or value.isspace())):
        return None
    return _integer_id(value)


def _status_or_available(value: Any) -> Any:
    # Absent, null or blank: what the Template shop shows for a painting without a status.
    if value is None or (isinstance(value, str) and (not value or value.isspace())):
        return DEFAULT_PAINTING_STATUS
    return value


def _role(value: Any) -> str:
    if value is None or (isinstance(value, str) and (not value or value.isspace())):
        return "user"
    if isinstance(value, str) and value.strip().lower() in ("admin", "user"):
        return value.strip().lower()
    raise PydanticCustomError("role", "must be 'admin' or 'user' (got {got})", {"got": show(value)})


def _email_format(value: Any) -> Any:
    # Blanks are left to the required-text rule, which names them "required (empty)".
    if isinstance(value, str) and value.strip() and not _EMAIL_RE.fullmatch(value.strip()):
        raise PydanticCustomError(
            "email", "not a valid email address (got {got})", {"got": show(value)}
        )
    return value


def quantity_or_one(value: Any) -> Any:
    # No quantity is one piece: a painting is an original unless a quantity says otherwise, and
    # the Template cart writes single purchases without one.
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


TemplateId = Annotated[int, BeforeValidator(_integer_id)]
OptionalTemplateId = Annotated[int | None, BeforeValidator(_optional_integer_id)]
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
RequiredDateTime = Annotated[datetime, BeforeValidator(_required_datetime)]
OptionalDate = Annotated[date | None, BeforeValidator(_date_or_none)]
RequiredEmail = Annotated[str, StringConstraints(min_length=1), BeforeValidator(_email_format)]
Revenue = Annotated[
    Annotated[Decimal, Field(ge=0, le=REVENUE_MAX)] | None, BeforeValidator(_number_or_none)
]
Role = Annotated[Literal["admin", "user"], BeforeValidator(_role)]
QuantityOrOne = Annotated[Count, BeforeValidator(quantity_or_one)]
PaintingStatus = Annotated[str, BeforeValidator(_status_or_available)]


def aliases(*names: str, required: bool = False) -> Any:
    """Accept several spellings of one field; the first one present wins."""
    if required:
        return Field(validation_alias=AliasChoices(*names))
    return Field(default=None, validation_alias=AliasChoices(*names))
