"""Validation in a second process: the second core for the pages of a large endpoint.

A large site's sync is bound by one Python thread: pydantic validation is about half of its CPU,
and the GIL keeps the fetch thread, the hashing and the COPY formatting on the same core. A
:class:`ValidationPool` validates pages in one worker process (``spawn``: nothing of the
parent's threads, connections or Dagster state is inherited), a few pages ahead, while the
caller keeps fetching, hashing and copying; when the worker is not up yet or lags behind, the
caller validates the page itself instead of waiting. The worker sends the rows back as the
staging table's values (:func:`~.staging.prepare_batch`): lists of plain values unpickle several
times faster than row dicts, and their JSON columns are encoded there. The batches come back in
page order, so the rows are staged exactly as without it (the ordinals, "the later duplicate
wins", the rejects, the counts and the preview are the same).

A worker costs its start (about half a second of CPU on the other core) and a pickle of each
page each way: it is used only for endpoints whose stats announce at least
:data:`OFFLOAD_MIN_RECORDS` records. An exception raised while validating a page reaches the
caller as itself (the same error as in-process); a worker that dies (killed, out of memory) is a
:class:`ValidationWorkerError` naming the site and the endpoint. Either way the caller's stream
ends there, and the write it feeds rolls back.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from template_pipeline.domain.batches import ValidatedBatch
from template_pipeline.domain.validation import validate_records
from template_pipeline.store.staging import prepare_batch
from template_pipeline.store.tables import table_spec

# An endpoint announcing at least this many records is validated in the worker process.
OFFLOAD_MIN_RECORDS = 20_000
# A page with fewer records to validate than this is validated in the caller's process, and
# does not start the worker: an unchanged re-sync's pages hold only the site's invalid records
# (3 % in the benchmark), which cost less here than the worker's start and the threads feeding
# it (measured: no faster with the worker, 0.8 s more CPU).
OFFLOAD_MIN_PAGE = 100
# Pages handed to the worker ahead of the one the caller is staging (memory: a few pages).
DEPTH = 4

Page = tuple[list[Any], Sequence[int | None] | None]  # records to validate, their hashes


class ValidationWorkerError(RuntimeError):
    """The validation worker process ended while it held pages of ``endpoint`` of ``site``."""

    def __init__(self, site: str, endpoint: str, detail: str) -> None:
        super().__init__(
            f"site {site!r}, endpoint {endpoint!r}: the validation worker process ended "
            f"abruptly ({detail}); nothing of this endpoint was written"
        )
        self.site = site
        self.endpoint = endpoint


def _validate(
    entity: str,
    records: list[Any],
    base_url: str | None,
    hashes: Sequence[int | None] | None,
    site: str,
) -> ValidatedBatch:
    batch = validate_records(entity, records, base_url=base_url, hashes=hashes)
    return prepare_batch(table_spec(entity), site, batch)


def _ready() -> int:
    return os.getpid()


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent decides what an interrupt stops (its
    # pool closes and the worker goes with it), the worker must not die of it first and turn
    # the interrupt into a ValidationWorkerError. Once the parent is gone, the worker's call
    # queue ends and it exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


Pending = Future[ValidatedBatch] | ValidatedBatch


class ValidationPool:
    """One worker process, started by :meth:`start` (or on first use), until :meth:`close`.

    The caller's thread never waits for the worker while it could work itself: a page goes to
    the worker only once the worker is up and has fewer than ``depth`` pages to do; otherwise
    it is validated in the caller's process (before the worker's start, when the worker lags
    behind). Both cores validate, whatever their speeds. At most ``2 * depth`` pages wait to be
    staged (bounded memory).
    """

    def __init__(self, depth: int = DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth
        self._executor: ProcessPoolExecutor | None = None
        self._up: Future[int] | None = None

    def __enter__(self) -> ValidationPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def started(self) -> bool:
        return self._executor is not None

    def start(self) -> None:
        """Start the worker now (its imports overlap with whatever the caller does next)."""
        if self._executor is None:
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(
                max_workers=1, mp_context=context, initializer=_worker_init
            )
            self._up = self._executor.submit(_ready)

    def wait_ready(self, timeout: float = 60.0) -> int:
        """Start the worker and wait until it is up; its process id."""
        self.start()
        assert self._up is not None
        return self._up.result(timeout)

    @property
    def ready(self) -> bool:
        return self._up is not None and self._up.done() and self._up.exception() is None

    def close(self) -> None:
        executor, self._executor, self._up = self._executor, None, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def validated(
        self, entity: str, pages: Iterable[Page], *, base_url: str | None, site: str
    ) -> Iterator[ValidatedBatch]:
        """``validate_records`` of each page (in the worker or here), in page order."""
        pending: deque[Pending] = deque()
        try:
            for records, hashes in pages:
                if len(records) >= OFFLOAD_MIN_PAGE and self._has_room(pending):
                    pending.append(self._submit(entity, records, base_url, hashes, site))
                else:
                    pending.append(
                        validate_records(entity, records, base_url=base_url, hashes=hashes)
                    )
                while pending and (_done(pending[0]) or len(pending) >= 2 * self.depth):
                    yield _result(pending.popleft(), site, entity)
            while pending:
                yield _result(pending.popleft(), site, entity)
        finally:
            for item in pending:
                if isinstance(item, Future):
                    item.cancel()

    def _has_room(self, pending: deque[Pending]) -> bool:
        if not self.ready:
            self.start()  # on the first page worth it; this page is validated here meanwhile
            return False
        busy = sum(1 for item in pending if isinstance(item, Future) and not item.done())
        return busy < self.depth

    def _submit(
        self,
        entity: str,
        records: list[Any],
        base_url: str | None,
        hashes: Sequence[int | None] | None,
        site: str,
    ) -> Future[ValidatedBatch]:
        assert self._executor is not None
        try:
            return self._executor.submit(_validate, entity, records, base_url, hashes, site)
        except BrokenProcessPool as exc:  # died between two pages
            raise ValidationWorkerError(site, entity, str(exc) or "broken pool") from None


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's cpuset, ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _done(item: Pending) -> bool:
    return not isinstance(item, Future) or item.done()


def _result(
    item: Future[ValidatedBatch] | ValidatedBatch, site: str, entity: str
) -> ValidatedBatch:
    if not isinstance(item, Future):
        return item
    try:
        return item.result()
    except BrokenProcessPool as exc:
        raise ValidationWorkerError(site, entity, str(exc) or "broken pool") from None
