"""Pagination: a lazy generator of pages that ends only on an empty page, and its prefetcher.

The offset advances by the number of records received, because servers cap page sizes below the
``limit`` asked for; only an empty page ends the listing. Whatever a server does instead of
ending, the listing fails loudly instead of looping on:

* a page that repeats the previous one (a server that ignores ``offset``);
* a page made only of records already received (a server that ignores ``offset`` but rotates
  its records, so no two pages are equal): the ids received are kept as a set of hashes;
* far more records than the site's own ``stats`` announce, when the caller passes that count
  (``expected_total``): more than ``max(2 * expected + 100, expected + 1000)`` records;
* more pages than ``max_pages``; and, for every endpoint, its deadline (see the client).

:func:`prefetched` reads ahead in a background thread so that the network overlaps with the
consumer's validation and database work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any

from template_pipeline.source.errors import TemplatePaginationError, TemplateResponseError

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson = None

logger = logging.getLogger(__name__)

Page = list[dict[str, Any]]

# Ids kept for the rotation check: about 60 bytes each; a listing longer than this is still
# bounded by the page cap, the expected total and the endpoint deadline.
MAX_TRACKED_IDS = 2_000_000

_NONE_HASH = hash(None)
_PREFETCH_DONE = object()
# How often a blocked prefetch thread or consumer looks at the stop flag / the thread's health.
_PREFETCH_POLL = 0.05


def _fingerprint(records: list[Any]) -> str:
    if _orjson is not None:
        try:
            encoded = _orjson.dumps(records)
        except TypeError:  # integers beyond 64 bits, which only json produced
            encoded = json.dumps(records, default=str).encode()
    else:
        encoded = json.dumps(records, default=str).encode()
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def page_identity(records: list[Any]) -> tuple[int, str]:
    """What the repeat check compares: a page's length and its first and last records.

    A server that ignores ``offset`` serves the very same page again, and this catches it;
    hashing every record of every page instead cost about a tenth of the client's time on a
    large site. Two consecutive pages of a real listing never start and end with the same
    records (and a page of identical records repeats either way).
    """
    return len(records), _fingerprint([records[0], records[-1]])


def expected_bound(expected_total: int) -> int:
    """How many records a listing may serve when the site's stats announce ``expected_total``.

    Generous (records are added while a sync reads, stats may lag), but finite.
    """
    return max(2 * expected_total + 100, expected_total + 1000)


class SeenIds:
    """The ids of the records received so far, as hashes (bounded memory, any id type)."""

    __slots__ = ("_hashes", "id_field")

    def __init__(self, id_field: str = "id") -> None:
        self.id_field = id_field
        self._hashes: set[int] = set()

    def only_repeats(self, records: Page) -> bool:
        """Record the page's ids; True when every one of them had been received before.

        A page whose records lack a usable id (none, or not hashable) is never called a repeat.
        """
        try:
            hashes = set(map(hash, map(itemgetter(self.id_field), records)))
        except (KeyError, TypeError):
            return False
        if _NONE_HASH in hashes:
            return False
        repeats = hashes <= self._hashes
        if len(self._hashes) < MAX_TRACKED_IDS:
            self._hashes |= hashes
        return repeats


def _check_page(
    records: Page, offset: int, previous: tuple[int, str] | None, seen: SeenIds, bound: int | None
) -> tuple[int, str] | str:
    """The page's identity, or the reason why pagination cannot be trusted."""
    fingerprint = page_identity(records)
    if fingerprint == previous:
        return (
            f"the page at offset {offset} repeats the previous page ({len(records)} records): "
            "the server ignores offset, so reading on would loop forever or duplicate records"
        )
    if bound is not None and offset + len(records) > bound:
        return (
            f"the site has served {offset + len(records)} records, far more than its own stats "
            f"announce (at most {bound} expected): it ignores offset or never ends its listing"
        )
    if seen.only_repeats(records):
        return (
            f"every record of the page at offset {offset} ({len(records)} records) was already "
            "received: the server ignores offset and rotates its records, so reading on would "
            "loop forever or duplicate records"
        )
    return fingerprint


def iter_pages(
    fetch_page: Callable[[int], Page],
    *,
    site: str,
    endpoint: str,
    max_pages: int,
    expected_total: int | None = None,
    id_field: str = "id",
) -> Iterator[Page]:
    """Pages from ``fetch_page(offset)`` until an empty one (one request per ``next()``)."""
    offset = 0
    pages = 0
    previous: tuple[int, str] | None = None
    seen = SeenIds(id_field)
    bound = None if expected_total is None else expected_bound(expected_total)
    while True:
        records = fetch_page(offset)
        if not records:
            logger.debug(
                "site %r, endpoint %r: end after %d page(s), %d record(s)",
                site,
                endpoint,
                pages,
                offset,
            )
            return
        pages += 1
        if pages > max_pages:
            raise TemplatePaginationError(
                f"more than {max_pages} pages (max_pages) at offset {offset}; "
                "stopping instead of paging without end (raise max_pages if the site "
                "really is that large)",
                site=site,
                endpoint=endpoint,
            )
        checked = _check_page(records, offset, previous, seen, bound)
        if isinstance(checked, str):
            raise TemplatePaginationError(checked, site=site, endpoint=endpoint)
        previous = checked
        yield records
        offset += len(records)


class _PrefetchError:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Prefetcher:
    """A background thread that puts pages into a bounded queue until told to stop."""

    def __init__(self, pages: Callable[[], Iterator[Page]], depth: int, name: str) -> None:
        self.buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self._pages = pages
        self.thread = threading.Thread(target=self._produce, name=name, daemon=True)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.buffer.put(item, timeout=_PREFETCH_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        source = self._pages()
        try:
            for page in source:
                if not self._put(page):
                    return
            self._put(_PREFETCH_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_PrefetchError(exc))
        finally:
            source.close()

    def shut_down(self) -> bool:
        """Stop the thread; True when it ended within a second (a request may be in flight)."""
        self.stop.set()
        # Free a producer blocked on a full queue, then wait for it; a request in flight is
        # bounded by the read timeout, so do not hold the consumer for that long.
        while True:
            try:
                self.buffer.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout=1.0)
        return not self.thread.is_alive()


def prefetched(
    pages: Callable[[], Iterator[Page]], depth: int, *, site: str, endpoint: str
) -> Iterator[Page]:
    """The pages of ``pages()``, fetched up to ``depth`` ahead in a background thread.

    Errors reach the consumer at the position where they happened. Closing the iterator (or
    dropping it) stops the thread once its request in flight, if any, returns. A generator:
    nothing starts until the first ``next()``, and its ``finally`` runs on ``close()`` or garbage
    collection, which is what stops the thread.
    """
    prefetcher = _Prefetcher(pages, depth, f"template-prefetch-{site}-{endpoint}")
    prefetcher.thread.start()
    try:
        while True:
            try:
                item = prefetcher.buffer.get(timeout=_PREFETCH_POLL)
            except queue.Empty:
                if not prefetcher.thread.is_alive() and prefetcher.buffer.empty():
                    raise TemplateResponseError(
                        "the prefetch thread ended without a result", site=site, endpoint=endpoint
                    ) from None
                continue
            if item is _PREFETCH_DONE:
                return
            if isinstance(item, _PrefetchError):
                raise item.error
            yield item
    finally:
        if not prefetcher.shut_down():
            logger.debug(
                "site %r, endpoint %r: prefetch thread still finishing a request", site, endpoint
            )
