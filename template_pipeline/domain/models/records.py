"""The pydantic models of the Template export records, and how each becomes a table row.

One model per entity describes what the sites really send (numbers as text, blanks, MySQL zero
dates, naive timestamps, unknown fields); its ``to_row`` turns a validated record into the row of
its Dashboard table (keys: the table's data columns). Unknown fields are kept in ``extra``
(settings have no ``extra`` column: their unknown fields are only reported) and collected in
``RowContext.seen`` so that a page can report them as new fields.

Decisions that shape the rows:

- Naive timestamps (``"2024-03-01 10:22:00"``, what PHP/MySQL sites print) are read as UTC: the
  export carries no offset and the site's server time zone is unknown here, and UTC is the one
  reading that does not depend on where the pipeline runs nor shift across DST. Aware timestamps
  are converted to UTC. The MySQL "zero date" (``0000-00-00``) means "no date" and becomes
  ``None``.
- What is required, and the defaults, are the Dashboard's specification (DESIGN.md): a painting
  needs ``id``, ``name``, ``price``, ``category`` and ``image``, and without ``quantity`` or
  ``status`` (absent, null or blank) it is one piece, ``Disponible``; a user needs ``id``,
  ``name`` and ``email``; an order needs ``id``, ``customer_name``, ``email``, ``total_price``
  and ``order_date``. Ids are integers (see :mod:`.fields`), an order item's ``painting_id``
  too when it has one.
- ``role`` is matched case-insensitively (``"Admin"`` is ``"admin"``), blank means ``"user"``
  (the Template default), and any other role is rejected: mapping an unknown role to ``"user"``
  could hide a privilege change, mapping it to ``"admin"`` would grant one.
- Emails are checked on users only (a user's email is their login); on orders and custom requests
  the email is display text, and a typo there must not quarantine an order. The check is
  deliberately simple (``local@domain.tld`` without spaces) so accents and IDNs pass.
- Money is a ``Decimal`` rounded half-up to cents; negative amounts and quantities are rejected.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

from template_pipeline.domain.models.fields import (
    Money,
    OptionalCount,
    OptionalDate,
    OptionalDateTime,
    OptionalInt,
    OptionalMoney,
    OptionalTemplateId,
    OptionalText,
    PaintingStatus,
    QuantityOrOne,
    RequiredDateTime,
    RequiredEmail,
    RequiredText,
    Revenue,
    Role,
    TemplateId,
    aliases,
    items_list,
)
from template_pipeline.domain.models.rows import RowContext, RowError, cents, utc
from template_pipeline.domain.vocabulary import DEFAULT_PAINTING_STATUS, MASKED


class TemplateRecord(BaseModel):
    """Base of every Template record: unknown fields are kept, text is stripped.

    ``coerce_numbers_to_str`` because labels arrive as numbers from some sites (``"name": 12``)
    and as text from others (ids have their own integer type).
    """

    model_config = ConfigDict(
        extra="allow",
        str_strip_whitespace=True,
        coerce_numbers_to_str=True,
    )


class Painting(TemplateRecord):
    """A painting; ``id``, ``name``, ``price``, ``category`` and ``image`` are required."""

    id: TemplateId
    name: RequiredText
    price: Money
    category: RequiredText
    technique: OptionalText = None
    year: OptionalInt = None
    quantity: QuantityOrOne = 1
    status: PaintingStatus = DEFAULT_PAINTING_STATUS
    image: RequiredText
    display_order: OptionalInt = None
    site_name: OptionalText = None

    def to_row(self, ctx: RowContext) -> dict[str, Any]:
        """The table row of this record (keys: the data columns of its table)."""
        image = self.image
        extra = self.__pydantic_extra__
        if extra:
            ctx.seen.update(extra)
        return {
            "template_id": self.id,
            "name": self.name,
            "price": cents(self.price),
            "category": self.category,
            "technique": self.technique,
            "year": self.year,
            "quantity": self.quantity,
            "status": self.status,
            "image": image,
            "image_url": ctx.image_url(image),
            "display_order": self.display_order,
            "site_name": self.site_name,
            "extra": extra or {},
        }


class User(TemplateRecord):
    """A site user; ``id``, ``name`` and ``email`` (their login, format checked) are required."""

    id: TemplateId
    name: RequiredText
    email: RequiredEmail
    create_date: OptionalDateTime = aliases("create_date", "created_at")
    role: Role = "user"
    site_name: OptionalText = None

    def to_row(self, ctx: RowContext) -> dict[str, Any]:
        """The table row of this record (keys: the data columns of its table)."""
        extra = self.__pydantic_extra__
        if extra:
            ctx.seen.update(extra)
        return {
            "template_id": self.id,
            "name": self.name,
            "email": self.email,
            "create_date": utc(self.create_date, "create_date"),
            "role": self.role,
            "site_name": self.site_name,
            "extra": extra or {},
        }


class OrderItem(TemplateRecord):
    """One line of an order; ``price`` is required, a missing quantity means one piece."""

    painting_id: OptionalTemplateId = None
    name: OptionalText = None
    image: OptionalText = None
    price: Money
    quantity: QuantityOrOne = 1

    def item_json(self, ctx: RowContext) -> dict[str, Any]:
        """The item as stored in ``template_orders.items`` (money as text, like the sites)."""
        extra = self.__pydantic_extra__
        if extra:
            ctx.seen.update(f"items[].{name}" for name in extra)
        return {
            "painting_id": self.painting_id,
            "name": self.name,
            "image": self.image,
            "price": str(cents(self.price)),
            "quantity": self.quantity,
            **(extra or {}),
        }


class Order(TemplateRecord):
    """An order; ``id``, ``customer_name``, ``email``, ``total_price`` and ``order_date`` are
    required, ``items`` may be JSON text. The email is display text (not format checked)."""

    id: TemplateId
    customer_name: RequiredText
    email: RequiredText
    total_price: Money = Field(validation_alias=AliasChoices("total_price", "total"))
    order_date: RequiredDateTime = aliases("order_date", "created_at", required=True)
    status: OptionalText = None
    items: Annotated[list[OrderItem], BeforeValidator(items_list)] = Field(default_factory=list)
    site_name: OptionalText = None

    def to_row(self, ctx: RowContext) -> dict[str, Any]:
        """The table row of this record (keys: the data columns of its table)."""
        extra = self.__pydantic_extra__
        if extra:
            ctx.seen.update(extra)
        items = [item.item_json(ctx) for item in self.items]
        return {
            "template_id": self.id,
            "customer_name": self.customer_name,
            "email": self.email,
            "total_price": cents(self.total_price),
            "order_date": utc(self.order_date, "order_date"),
            "status": self.status,
            "items": items,
            "item_count": len(items),
            "site_name": self.site_name,
            "extra": extra or {},
        }


class Setting(TemplateRecord):
    """A key/value pair. ``value`` is kept as sent (not stripped): it may be page content."""

    key: RequiredText
    value: Any = None

    def to_row(self, ctx: RowContext) -> dict[str, Any]:
        """The table row of this record (keys: the data columns of its table)."""
        if self.__pydantic_extra__:
            ctx.seen.update(self.__pydantic_extra__)
        value = self.value
        masked = isinstance(value, str) and value.strip() == MASKED
        if masked or value is None:
            text = None
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return {"key": self.key, "value": text, "is_masked": masked}


class Exhibition(TemplateRecord):
    """An exhibition; ``id`` and ``title`` are required."""

    id: TemplateId
    title: RequiredText = Field(validation_alias=AliasChoices("title", "name"))
    description: OptionalText = None
    start_date: OptionalDate = None
    end_date: OptionalDate = None
    location: OptionalText = None

    def to_row(self, ctx: RowContext) -> dict[str, Any]:
        """The table row of this record (keys: the data columns of its table)."""
        extra = self.__pydantic_extra__
        if extra:
            ctx.seen.update(extra)
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise RowError(f"end_date: before start_date ({self.end_date} < {self.start_date})")
        return {
            "template_id": self.id,
            "title": self.title,
            "description": self.description,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "location": self.location,
            "extra": extra or {},
        }


class CustomRequest(TemplateRecord):
    """A visitor's request for a custom work; only ``id`` is required."""

    id: TemplateId
    name: OptionalText = None
    email: OptionalText = None
    message: OptionalText = None
    budget: OptionalMoney = None
    status: OptionalText = None
    created_at: OptionalDateTime = aliases("created_at", "create_date")

    def to_row(self, ctx: RowContext) -> dict[str, Any]:
        """The table row of this record (keys: the data columns of its table)."""
        extra = self.__pydantic_extra__
        if extra:
            ctx.seen.update(extra)
        budget = self.budget
        return {
            "template_id": self.id,
            "name": self.name,
            "email": self.email,
            "message": self.message,
            "budget": None if budget is None else cents(budget),
            "status": self.status,
            "created_at": utc(self.created_at, "created_at"),
            "extra": extra or {},
        }


def _counter(name: str) -> Any:
    return aliases(name, f"total_{name}", f"{name}_count", f"nb_{name}")


class Stats(TemplateRecord):
    """The ``stats`` document: counters under any of their usual spellings, and revenue."""

    paintings: OptionalCount = _counter("paintings")
    users: OptionalCount = _counter("users")
    orders: OptionalCount = _counter("orders")
    exhibitions: OptionalCount = _counter("exhibitions")
    custom_requests: OptionalCount = _counter("custom_requests")
    revenue: Revenue = aliases("revenue", "total_revenue", "revenue_total")


def field_names(model: type[BaseModel]) -> frozenset[str]:
    """The field names ``model`` reads, aliases included (anything else is an unknown field)."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if isinstance(info.validation_alias, AliasChoices):
            names.update(c for c in info.validation_alias.choices if isinstance(c, str))
        elif isinstance(info.validation_alias, str):
            names.add(info.validation_alias)
    return frozenset(names)
