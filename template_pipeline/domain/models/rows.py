"""Helpers of row building: cents, UTC timestamps, absolute image URLs, the per-page context."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urljoin

UTC = timezone.utc
_CENT = Decimal("0.01")
# An absolute URL starts with a scheme (RFC 3986 section 3.1).
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class RowError(ValueError):
    """A record that validated but cannot become a row (the message is the reject reason)."""


def cents(value: Decimal) -> Decimal:
    # Values are bounded by the Money types, so quantize cannot overflow the context.
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def utc(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # "0001-01-01T00:00:00+01:00" is before the first datetime Python can represent in UTC.
        raise RowError(f"{field}: out of range (got {value.isoformat()})") from None


def _is_absolute_url(image: str) -> bool:
    return _SCHEME_RE.match(image) is not None


def image_url_joiner(base_url: str | None) -> Callable[[str], str | None]:
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
class RowContext:
    """What the rows of one page share while they are built."""

    image_url: Callable[[str], str | None]
    # Field names of the page that may be new: keys of the rows' ``extra`` dicts and all keys of
    # rejected records (filtered against KNOWN_FIELDS at the end).
    seen: set[str]
