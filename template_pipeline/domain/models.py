"""Pydantic models of the Template export records, and fast batch validation with rejects.

One model per entity describes what the sites really send (numbers as text, blanks, MySQL zero
dates, naive timestamps, unknown fields) and coerces it into the plain values of the Dashboard
tables. :func:`validate_records` turns one page of raw records into a
:class:`~template_pipeline.domain.batches.ValidatedBatch`: the rows the IO manager writes,
and the records that cannot be stored, each quarantined as a
:class:`~template_pipeline.domain.batches.Reject` with a reason naming the field (never
silently dropped).

Decisions that shape the rows:

- Required fields are the ones the Dashboard cannot display a record without: the id
  everywhere, ``name`` and ``price`` of a painting, ``name`` of a user, ``total_price`` of an
  order, ``title`` of an exhibition, an item's ``price``, a setting's ``key``. Everything else may
  be missing, null or blank (``""`` becomes ``None``).
- Naive timestamps (``"2024-03-01 10:22:00"``, what PHP/MySQL sites print) are read as UTC: the
  export carries no offset and the site's server time zone is unknown here, and UTC is the one
  reading that does not depend on where the pipeline runs nor shift across DST. Aware timestamps
  are converted to UTC. The MySQL "zero date" (``0000-00-00``) means "no date" and becomes
  ``None``.
- ``role`` is matched case-insensitively (``"Admin"`` is ``"admin"``), blank means ``"user"``
  (the Template default), and any other role is rejected: mapping an unknown role to ``"user"``
  could hide a privilege change, mapping it to ``"admin"`` would grant one.
- Emails are checked on users only (a user's email is their login); on orders and custom requests
  the email is display text, and a typo there must not quarantine an order. The check is
  deliberately simple (``local@domain.tld`` without spaces) so accents and IDNs pass.
- Money is a ``Decimal`` rounded half-up to cents; negative amounts and quantities are rejected.
- Text PostgreSQL cannot store is rejected wherever it occurs, in a field, an unknown field or a
  key: NUL characters (refused by text and jsonb) and lone UTF-16 surrogates (``"\\ud83d"``
  escapes, which a JSON decoder lets through but UTF-8 cannot encode). A rejected record's
  payload shows them as U+FFFD so the reject itself can be stored.
- Unknown fields are kept in ``extra`` (settings have no ``extra`` column: their unknown fields
  are only reported) and listed in ``ValidatedBatch.new_fields``.

Speed (about 150k paintings/s on one core): a page is validated by a cached
``TypeAdapter(list[Model])``, a chunk of records per call, while the garbage collector is
paused; rows are built from the model attributes directly (no ``model_dump``), and one
serialisation of each chunk in pydantic-core screens it for unstorable text. Each list item is
wrapped so that a failing record yields its errors in place of a model: a page with a few bad
records is still validated once, instead of once as a page and again record by record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urljoin

import pydantic_core
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from template_pipeline.domain.batches import Reject, ValidatedBatch, gc_paused

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "KNOWN_FIELDS",
    "MASKED_VALUE",
    "MODELS",
    "MONEY_MAX",
    "REVENUE_MAX",
    "CustomRequest",
    "Exhibition",
    "Order",
    "OrderItem",
    "Painting",
    "Setting",
    "Stats",
    "TemplateRecord",
    "User",
    "explode_order_items",
    "validate_records",
    "validate_stats",
]

# The literal the Template API sends in place of a secret setting. Kept equal to
# ``template_pipeline.domain.sites.MASKED`` (a test guards it); defined here too so that validating
# records does not import Dagster.
MASKED_VALUE = "***MASKED***"

UTC = timezone.utc
_CENT = Decimal("0.01")
# MySQL's "zero" dates, which PHP sites print for "no date".
_ZERO_DATES = frozenset({"0000-00-00", "0000-00-00 00:00:00", "0000-00-00T00:00:00"})
# Deliberately loose: one "@", no whitespace, a dot in the domain. Unicode letters pass (IDN).
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]")
_NUL = "\x00"
_UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")
# An absolute URL starts with a scheme (RFC 3986 section 3.1).
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_MAX_REASON_PARTS = 5
# Bounds of the Dashboard columns (tables.py: money is NUMERIC(12, 2), revenue NUMERIC(14, 2),
# counts and years INTEGER). A value beyond them would make PostgreSQL refuse the whole page,
# so it is a reject of its record instead (a test keeps these equal to the table definitions).
MONEY_MAX = Decimal("9999999999.99")
REVENUE_MAX = Decimal("999999999999.99")
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_MAX_SHOWN_CHARS = 40
# Records validated per pydantic call (see _validate).
_CHUNK = 128


# --------------------------------------------------------------------------------------------
# Field types. Python validators only where pydantic-core has no equivalent (blank -> None),
# so that the common case stays inside pydantic-core.


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and (not value or value.isspace()):
        return None
    return value


def _number_or_none(value: Any) -> Any:
    # pydantic accepts True as 1 for ints; a boolean year or quantity is a site bug, not a number.
    if isinstance(value, bool):
        raise PydanticCustomError("not_a_number", "not a number (got {got})", {"got": _show(value)})
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
    raise PydanticCustomError(
        "role", "must be 'admin' or 'user' (got {got})", {"got": _show(value)}
    )


def _email(value: Any) -> Any:
    value = _blank_to_none(value)
    if isinstance(value, str) and not _EMAIL_RE.fullmatch(value.strip()):
        raise PydanticCustomError(
            "email", "not a valid email address (got {got})", {"got": _show(value)}
        )
    return value


def _item_quantity(value: Any) -> Any:
    # A line without a quantity is one piece (how the Template cart writes single purchases).
    value = _number_or_none(value)
    return 1 if value is None else value


def _items(value: Any) -> Any:
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


def _aliases(*names: str) -> Any:
    """Accept several spellings of one field; the first one present wins."""
    return Field(default=None, validation_alias=AliasChoices(*names))


# --------------------------------------------------------------------------------------------
# Models


class TemplateRecord(BaseModel):
    """Base of every Template record: unknown fields are kept, text is stripped.

    ``coerce_numbers_to_str`` because ids and labels arrive as numbers from some sites
    (``"id": 12``) and as text from others.
    """

    model_config = ConfigDict(
        extra="allow",
        str_strip_whitespace=True,
        coerce_numbers_to_str=True,
    )


class Painting(TemplateRecord):
    """A painting; ``id``, ``name`` and ``price`` are required."""

    id: TemplateId
    name: RequiredText
    price: Money
    category: OptionalText = None
    technique: OptionalText = None
    year: OptionalInt = None
    quantity: OptionalCount = None
    status: OptionalText = None
    image: OptionalText = None
    display_order: OptionalInt = None
    site_name: OptionalText = None


class User(TemplateRecord):
    """A site user; ``id`` and ``name`` are required, ``email`` is checked when present."""

    id: TemplateId
    name: RequiredText
    email: OptionalEmail = None
    create_date: OptionalDateTime = _aliases("create_date", "created_at")
    role: Role = "user"
    site_name: OptionalText = None


class OrderItem(TemplateRecord):
    """One line of an order; ``price`` is required, a missing quantity means one piece."""

    painting_id: OptionalText = None
    name: OptionalText = None
    image: OptionalText = None
    price: Money
    quantity: Annotated[Count, BeforeValidator(_item_quantity)] = 1


class Order(TemplateRecord):
    """An order; ``id`` and ``total_price`` are required, ``items`` may be JSON text."""

    id: TemplateId
    customer_name: OptionalText = None
    email: OptionalText = None
    total_price: Money = Field(validation_alias=AliasChoices("total_price", "total"))
    order_date: OptionalDateTime = _aliases("order_date", "created_at")
    status: OptionalText = None
    items: Annotated[list[OrderItem], BeforeValidator(_items)] = Field(default_factory=list)
    site_name: OptionalText = None


class Setting(TemplateRecord):
    """A key/value pair. ``value`` is kept as sent (not stripped): it may be page content."""

    key: RequiredText
    value: Any = None


class Exhibition(TemplateRecord):
    """An exhibition; ``id`` and ``title`` are required."""

    id: TemplateId
    title: RequiredText = Field(validation_alias=AliasChoices("title", "name"))
    description: OptionalText = None
    start_date: OptionalDate = None
    end_date: OptionalDate = None
    location: OptionalText = None


class CustomRequest(TemplateRecord):
    """A visitor's request for a custom work; only ``id`` is required."""

    id: TemplateId
    name: OptionalText = None
    email: OptionalText = None
    message: OptionalText = None
    budget: OptionalMoney = None
    status: OptionalText = None
    created_at: OptionalDateTime = _aliases("created_at", "create_date")


def _counter(name: str) -> Any:
    return _aliases(name, f"total_{name}", f"{name}_count", f"nb_{name}")


class Stats(TemplateRecord):
    """The ``stats`` document: counters under any of their usual spellings, and revenue."""

    paintings: OptionalCount = _counter("paintings")
    users: OptionalCount = _counter("users")
    orders: OptionalCount = _counter("orders")
    exhibitions: OptionalCount = _counter("exhibitions")
    custom_requests: OptionalCount = _counter("custom_requests")
    revenue: Revenue = _aliases("revenue", "total_revenue", "revenue_total")


MODELS: dict[str, type[TemplateRecord]] = {
    "paintings": Painting,
    "users": User,
    "orders": Order,
    "order_items": OrderItem,
    "settings": Setting,
    "exhibitions": Exhibition,
    "custom_requests": CustomRequest,
    "stats": Stats,
}


def _field_names(model: type[BaseModel]) -> frozenset[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if isinstance(info.validation_alias, AliasChoices):
            names.update(c for c in info.validation_alias.choices if isinstance(c, str))
        elif isinstance(info.validation_alias, str):
            names.add(info.validation_alias)
    return frozenset(names)


# Entity -> the field names its model reads, aliases included ("order_items": the fields of an
# order's item). Anything else is an unknown field: kept in ``extra`` and reported in
# ``ValidatedBatch.new_fields`` (an unknown item field of an order as ``items[].<name>``).
KNOWN_FIELDS: dict[str, frozenset[str]] = {
    entity: _field_names(model) for entity, model in MODELS.items()
}


# --------------------------------------------------------------------------------------------
# Row building


class _RowError(ValueError):
    """A record that validated but cannot become a row (the message is the reject reason)."""


def _cents(value: Decimal) -> Decimal:
    # Values are bounded by the Money types, so quantize cannot overflow the context.
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _utc(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # "0001-01-01T00:00:00+01:00" is before the first datetime Python can represent in UTC.
        raise _RowError(f"{field}: out of range (got {value.isoformat()})") from None


def _is_absolute_url(image: str) -> bool:
    return _SCHEME_RE.match(image) is not None


def _image_url_joiner(base_url: str | None) -> Callable[[str], str | None]:
    """``image -> image_url``: ``urljoin(base_url, image)``, absolute images kept as they are.

    A site's base URL is a directory (``http://h/t/site-b`` serves ``http://h/t/site-b/Images``),
    so a missing trailing slash is added. Plain relative paths (the common
    ``Images/painting_1.jpg``) are concatenated, which is what ``urljoin`` returns for them at a
    fraction of its cost; anything else (dot segments, leading slash, a colon, control characters)
    goes through ``urljoin`` itself.
    """
    if not base_url:
        return lambda image: image if _is_absolute_url(image) else None
    base = base_url if base_url.endswith("/") else base_url + "/"
    fast = "?" not in base and "#" not in base

    def join(image: str) -> str:
        if (
            fast
            and ":" not in image
            and image[0] not in "./"
            and "/." not in image
            and image.isprintable()
        ):
            return base + image
        return urljoin(base, image)

    return join


@dataclass(slots=True)
class _Context:
    image_url: Callable[[str], str | None]
    # Field names of the page that may be new: keys of the rows' ``extra`` dicts and all keys of
    # rejected records (filtered against KNOWN_FIELDS at the end).
    seen: set[str]


def _painting_row(m: Painting, ctx: _Context) -> dict[str, Any]:
    image = m.image
    extra = m.__pydantic_extra__
    if extra:
        ctx.seen.update(extra)
    return {
        "template_id": m.id,
        "name": m.name,
        "price": _cents(m.price),
        "category": m.category,
        "technique": m.technique,
        "year": m.year,
        "quantity": m.quantity,
        "status": m.status,
        "image": image,
        "image_url": ctx.image_url(image) if image else None,
        "display_order": m.display_order,
        "site_name": m.site_name,
        "extra": extra or {},
    }


def _user_row(m: User, ctx: _Context) -> dict[str, Any]:
    extra = m.__pydantic_extra__
    if extra:
        ctx.seen.update(extra)
    return {
        "template_id": m.id,
        "name": m.name,
        "email": m.email,
        "create_date": _utc(m.create_date, "create_date"),
        "role": m.role,
        "site_name": m.site_name,
        "extra": extra or {},
    }


def _item_json(item: OrderItem, ctx: _Context) -> dict[str, Any]:
    extra = item.__pydantic_extra__
    if extra:
        ctx.seen.update(f"items[].{name}" for name in extra)
    return {
        "painting_id": item.painting_id,
        "name": item.name,
        "image": item.image,
        "price": str(_cents(item.price)),
        "quantity": item.quantity,
        **(extra or {}),
    }


def _order_row(m: Order, ctx: _Context) -> dict[str, Any]:
    extra = m.__pydantic_extra__
    if extra:
        ctx.seen.update(extra)
    items = [_item_json(item, ctx) for item in m.items]
    return {
        "template_id": m.id,
        "customer_name": m.customer_name,
        "email": m.email,
        "total_price": _cents(m.total_price),
        "order_date": _utc(m.order_date, "order_date"),
        "status": m.status,
        "items": items,
        "item_count": len(items),
        "site_name": m.site_name,
        "extra": extra or {},
    }


def _setting_row(m: Setting, ctx: _Context) -> dict[str, Any]:
    if m.__pydantic_extra__:
        ctx.seen.update(m.__pydantic_extra__)
    value = m.value
    masked = isinstance(value, str) and value.strip() == MASKED_VALUE
    if masked or value is None:
        text = None
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return {"key": m.key, "value": text, "is_masked": masked}


def _exhibition_row(m: Exhibition, ctx: _Context) -> dict[str, Any]:
    extra = m.__pydantic_extra__
    if extra:
        ctx.seen.update(extra)
    if m.start_date and m.end_date and m.end_date < m.start_date:
        raise _RowError(f"end_date: before start_date ({m.end_date} < {m.start_date})")
    return {
        "template_id": m.id,
        "title": m.title,
        "description": m.description,
        "start_date": m.start_date,
        "end_date": m.end_date,
        "location": m.location,
        "extra": extra or {},
    }


def _custom_request_row(m: CustomRequest, ctx: _Context) -> dict[str, Any]:
    extra = m.__pydantic_extra__
    if extra:
        ctx.seen.update(extra)
    budget = m.budget
    return {
        "template_id": m.id,
        "name": m.name,
        "email": m.email,
        "message": m.message,
        "budget": None if budget is None else _cents(budget),
        "status": m.status,
        "created_at": _utc(m.created_at, "created_at"),
        "extra": extra or {},
    }


class _Failed:
    """Stands in for a failed record in a validated page, with pydantic's errors for it."""

    __slots__ = ("errors",)

    def __init__(self, errors: list[ErrorDetails]) -> None:
        self.errors = errors


def _catch(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # One failing record must not fail the validation of its page: the page is validated in a
    # single pass (pydantic has no partial results), and the failures are attributed after.
    try:
        return handler(value)
    except ValidationError as exc:
        return _Failed(exc.errors(include_url=False))


@dataclass(frozen=True, slots=True)
class _Spec:
    # Validates a whole page; yields a model or a _Failed per record, never raises.
    adapter: TypeAdapter[list[Any]]
    build: Callable[[Any, _Context], dict[str, Any]]
    id_field: str


def _spec(
    model: type[TemplateRecord], build: Callable[..., dict[str, Any]], id_field: str = "id"
) -> _Spec:
    page = list[Annotated[model, WrapValidator(_catch)]]  # type: ignore[valid-type]
    return _Spec(TypeAdapter(page), build, id_field)


_SPECS: dict[str, _Spec] = {
    "paintings": _spec(Painting, _painting_row),
    "users": _spec(User, _user_row),
    "orders": _spec(Order, _order_row),
    "settings": _spec(Setting, _setting_row, id_field="key"),
    "exhibitions": _spec(Exhibition, _exhibition_row),
    "custom_requests": _spec(CustomRequest, _custom_request_row),
}
_ITEMS_ADAPTER: TypeAdapter[list[OrderItem]] = TypeAdapter(list[OrderItem])


# --------------------------------------------------------------------------------------------
# Reasons


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS] + "..."


def _show(value: Any) -> str:
    """A short, storable rendering of an offending value for a reject reason."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return _shorten(str(value))
    if isinstance(value, str):
        # repr() escapes NUL and surrogates: the reason stays storable.
        return repr(_shorten(value))
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _where(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "record"


_TYPE_MESSAGES: dict[str, str] = {
    "missing": "required (missing)",
    "string_too_short": "required (empty)",
    "string_type": "must be a string (got {got})",
    "int_parsing": "not an integer (got {got})",
    "int_type": "not an integer (got {got})",
    "int_from_float": "not an integer (got {got})",
    "int_parsing_size": "not an integer (got {got})",
    "decimal_parsing": "not a number (got {got})",
    "decimal_type": "not a number (got {got})",
    "finite_number": "must be a finite number (got {got})",
    "greater_than_equal": "must be >= {ge} (got {got})",
    "less_than_equal": "must be <= {le} (got {got})",
    "datetime_parsing": "not a valid date and time (got {got})",
    "datetime_from_date_parsing": "not a valid date and time (got {got})",
    "datetime_type": "not a valid date and time (got {got})",
    "datetime_object_invalid": "not a valid date and time (got {got})",
    "date_parsing": "not a valid date (got {got})",
    "date_from_datetime_parsing": "not a valid date (got {got})",
    "date_from_datetime_inexact": "not a valid date (got {got})",
    "date_type": "not a valid date (got {got})",
    "list_type": "must be a list (got {got})",
    # pydantic's own check of str fields; the same words as _text_problem's, so they merge.
    "string_unicode": "contains invalid Unicode (a lone surrogate)",
    "model_type": "must be a JSON object (got {got})",
    "model_attributes_type": "must be a JSON object (got {got})",
    "dict_type": "must be a JSON object (got {got})",
}


# Errors about the shape of a value, whose own message is clearer than "required".
_SHAPE_ERRORS = frozenset(
    {"missing", "model_type", "model_attributes_type", "dict_type", "list_type"}
)


def _error_parts(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    parts: list[str] = []
    for err in errors:
        where = _where(err["loc"])
        value = err.get("input")
        kind = err["type"]
        if kind not in _SHAPE_ERRORS and (
            value is None or (isinstance(value, str) and not value.strip())
        ):
            # A required field sent as null or "" (optional ones become None before this).
            message = "required (null)" if value is None else "required (empty)"
        elif kind in _TYPE_MESSAGES:
            ctx = err.get("ctx") or {}
            message = _TYPE_MESSAGES[kind].format(got=_show(value), **ctx)
        else:
            # Our own PydanticCustomErrors carry a finished message.
            message = err["msg"]
        part = f"{where}: {message}"
        if part not in parts:
            parts.append(part)
    return parts


def _join_reasons(parts: list[str]) -> str:
    if len(parts) > _MAX_REASON_PARTS:
        more = len(parts) - _MAX_REASON_PARTS
        parts = [*parts[:_MAX_REASON_PARTS], f"... and {more} more"]
    return "; ".join(parts)


def _clean(text: str) -> str:
    """``text`` with what PostgreSQL cannot store replaced by U+FFFD."""
    return _UNSTORABLE_RE.sub("\ufffd", text)


def _text_problem(text: str) -> str | None:
    if _UNSTORABLE_RE.search(text) is None:
        return None
    if _NUL in text:
        return "contains a NUL character"
    return "contains invalid Unicode (a lone surrogate)"


def _unstorable_parts(value: Any, where: str = "") -> Iterator[str]:
    """Where text PostgreSQL cannot store occurs, in keys or string values, at any depth."""
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            yield f"{where or 'record'}: {problem}"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            problem = _text_problem(name)
            if problem:
                yield f"field {_show(name)}: name {problem}"
                name = _clean(name)
            yield from _unstorable_parts(item, f"{where}.{name}" if where else name)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _unstorable_parts(item, f"{where}[{index}]")


def _jsonable(value: Any) -> Any:
    """A JSON-compatible, storable copy of a raw record for ``Reject.payload``."""
    if isinstance(value, str):
        return _clean(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        # NaN and infinities are not JSON.
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, Mapping):
        return {_clean(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return _clean(str(value))


def _record_id(raw: Mapping[str, Any], id_field: str) -> str | None:
    value = raw.get(id_field)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = _clean(str(value).strip())
    return text or None


# --------------------------------------------------------------------------------------------
# Batch validation


def _looks_storable(value: Any) -> bool:
    """True when no string, key or value in ``value`` holds text PostgreSQL cannot store.

    One serialisation in pydantic-core is much cheaper than walking every string in Python:
    JSON escapes NUL as ``\\u0000``, and serialising a lone surrogate fails. A literal
    backslash-u text looks bad too; it only costs the exact check, :func:`_unstorable_parts`.
    """
    try:
        return b"\\u0000" not in pydantic_core.to_json(value)
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError):
        return False


def _reject(spec: _Spec, raw: Any, parts: list[str], ctx: _Context) -> Reject:
    template_id = None
    if isinstance(raw, Mapping):
        template_id = _record_id(raw, spec.id_field)
        # Unknown fields of a rejected record are news too (they may be why it was rejected).
        ctx.seen.update(_clean(str(name)) for name in raw)
    return Reject(template_id, _join_reasons(parts), _jsonable(raw))


def _validate(
    spec: _Spec, records: list[Any], ctx: _Context
) -> tuple[list[dict[str, Any]], list[Any], list[Reject]]:
    """Rows (with the raw record of each) and rejects of one page, in one validation pass."""
    problems: dict[int, list[str]] = {}
    build = spec.build
    rows: list[dict[str, Any]] = []
    sources: list[Any] = []
    # Chunks keep the models of a chunk in the CPU cache between validation and row building
    # (measured on 1000-record pages: about 15% faster than one call for the whole page).
    for start in range(0, len(records), _CHUNK):
        chunk = records[start : start + _CHUNK]
        if not _looks_storable(chunk):
            # Narrowed down record by record, still in pydantic-core; walked in Python only for
            # the records that look bad.
            for index, raw in enumerate(chunk, start):
                if not _looks_storable(raw):
                    parts = list(_unstorable_parts(raw))
                    if parts:
                        problems[index] = parts
        for index, result in enumerate(spec.adapter.validate_python(chunk), start):
            if result.__class__ is _Failed:
                existing = problems.setdefault(index, [])
                existing.extend(
                    part for part in _error_parts(result.errors) if part not in existing
                )
            elif index not in problems:
                try:
                    rows.append(build(result, ctx))
                except _RowError as exc:
                    problems[index] = [str(exc)]
                else:
                    sources.append(records[index])
    rejects = [_reject(spec, records[index], problems[index], ctx) for index in sorted(problems)]
    return rows, sources, rejects


def _drop_duplicate_settings(
    rows: list[dict[str, Any]], sources: list[Any]
) -> tuple[list[dict[str, Any]], list[Reject]]:
    last = {row["key"]: index for index, row in enumerate(rows)}
    if len(last) == len(rows):
        return rows, []
    kept: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for index, row in enumerate(rows):
        if last[row["key"]] == index:
            kept.append(row)
        else:
            reason = f"key: duplicate key {_show(row['key'])} in this page; the later one was kept"
            rejects.append(Reject(row["key"], reason, _jsonable(sources[index])))
    return kept, rejects


def validate_records(
    entity: str, records: Sequence[Any], *, base_url: str | None = None
) -> ValidatedBatch:
    """Validate one page of raw ``entity`` records into table rows and rejects.

    ``entity`` is one of ``paintings``, ``users``, ``orders``, ``settings``, ``exhibitions``,
    ``custom_requests``; ``records`` are the decoded JSON records of one page; ``base_url`` (the
    site's) makes painting ``image_url``s absolute. Every record ends up either in ``rows`` (keys
    as in the table contract) or in ``rejects`` with a reason naming the field, so
    ``len(rows) + len(rejects) == fetched``.

    Settings: when a key appears more than once in the page, the last occurrence is the row and
    each earlier one becomes a reject with reason ``duplicate key`` (the site's own export order
    is its write order, and quarantining the earlier values keeps them visible instead of
    dropping them). Duplicate ``template_id``s of the other entities are left to the IO manager,
    which sees every page.
    """
    spec = _SPECS.get(entity)
    if spec is None:
        raise ValueError(f"unknown entity {entity!r}; expected one of {', '.join(_SPECS)}")
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise TypeError(
            f"{entity}: records must be a list of records, got {type(records).__name__}"
        )
    records = records if isinstance(records, list) else list(records)
    ctx = _Context(image_url=_image_url_joiner(base_url), seen=set())
    with gc_paused():
        rows, sources, rejects = _validate(spec, records, ctx) if records else ([], [], [])
    if entity == "settings":
        rows, duplicates = _drop_duplicate_settings(rows, sources)
        rejects.extend(duplicates)
    # Unknown item fields of orders are named "items[].<field>" (see _item_json).
    new_fields = {name for name in ctx.seen if name not in KNOWN_FIELDS[entity]}
    return ValidatedBatch(rows=rows, rejects=rejects, fetched=len(records), new_fields=new_fields)


def validate_stats(payload: Any) -> dict[str, Any]:
    """The ``template_stats`` row of one site's ``stats`` document.

    Counters and revenue are read under their usual spellings (``paintings``,
    ``total_paintings``, ``paintings_count``, ``nb_paintings``; ``revenue``, ``total_revenue``,
    ``revenue_total``); the whole document is kept in ``payload``. An envelope
    ``{"stats": {...}}`` is unwrapped. Raises ``ValueError`` naming the field when the document
    is not an object, holds text PostgreSQL cannot store, has an unusable counter, or has no
    counter at all.
    """
    if (
        isinstance(payload, Mapping)
        and isinstance(payload.get("stats"), Mapping)
        and not KNOWN_FIELDS["stats"] & set(payload)
    ):
        payload = payload["stats"]
    if not isinstance(payload, Mapping):
        raise ValueError(f"stats: must be a JSON object (got {_show(payload)})")
    unstorable = list(_unstorable_parts(payload))
    if unstorable:
        raise ValueError(f"stats: {_join_reasons(unstorable)}")
    try:
        stats = Stats.model_validate(payload)
    except ValidationError as exc:
        reason = _join_reasons(_error_parts(exc.errors(include_url=False)))
        raise ValueError(f"stats: {reason}") from None
    row: dict[str, Any] = {
        "paintings": stats.paintings,
        "users": stats.users,
        "orders": stats.orders,
        "exhibitions": stats.exhibitions,
        "custom_requests": stats.custom_requests,
        "revenue": None,
    }
    if stats.revenue is not None:
        row["revenue"] = _cents(stats.revenue)
    if all(value is None for value in row.values()):
        keys = ", ".join(sorted(map(str, payload))[:10]) or "none"
        raise ValueError(
            "stats: none of paintings, users, orders, exhibitions, custom_requests, revenue "
            f"is present (keys: {keys})"
        )
    row["payload"] = _jsonable(payload)
    return row


def explode_order_items(
    orders: Iterable[tuple[str, list[dict[str, Any]] | str | None]],
) -> list[dict[str, Any]]:
    """Rows of ``template_order_items`` from ``(order template_id, items)`` pairs.

    ``items`` is what ``template_orders.items`` holds: a list of item dicts, or that list as JSON
    text (psycopg returns jsonb decoded, a text column does not); ``None`` means no items.
    ``line_no`` is 1-based in the order's item order. Items were validated with their order, so
    an item that fails here is a bug upstream: ``ValueError`` names the order and the item.
    """
    rows: list[dict[str, Any]] = []
    with gc_paused():
        for order_id, raw_items in orders:
            if raw_items is None:
                continue
            if isinstance(raw_items, (str, bytes)):
                try:
                    raw_items = json.loads(raw_items)
                except ValueError as exc:
                    raise ValueError(
                        f"order {order_id}: items are not valid JSON ({exc})"
                    ) from None
            if not isinstance(raw_items, list):
                raise ValueError(f"order {order_id}: items must be a list (got {_show(raw_items)})")
            try:
                items = _ITEMS_ADAPTER.validate_python(raw_items)
            except ValidationError as exc:
                parts = _error_parts(exc.errors(include_url=False))
                reason = _join_reasons([f"items{part}" for part in parts])
                raise ValueError(f"order {order_id}: {reason}") from None
            for index, item in enumerate(items):
                rows.append(
                    {
                        "order_id": str(order_id),
                        "line_no": index + 1,
                        "painting_id": item.painting_id,
                        "name": item.name,
                        "image": item.image,
                        "price": _cents(item.price),
                        "quantity": item.quantity,
                        "extra": item.__pydantic_extra__ or {},
                    }
                )
    return rows
