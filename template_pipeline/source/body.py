"""Reading a response body within its limits: its size after decompression, and its time.

The body is read in chunks from the raw stream (``read1``: whatever one socket read returns, so
a body trickled a byte at a time is seen byte by byte) and inflated here, with ``zlib``'s
``max_length``, never more than the limit plus one byte: a compressed body that inflates to
gigabytes costs at most the limit in memory. Between chunks the deadlines are checked, and the
socket's timeout is set to what the tightest of them leaves (never more than the read timeout),
so a stalled or trickled body ends at its deadline instead of one read timeout per byte.

Only ``gzip`` and ``deflate`` are asked for (``Accept-Encoding``) and read; a server sending
anything else gets a clear error instead of bytes we cannot check.
"""

from __future__ import annotations

import zlib
from typing import Any

from template_pipeline.source.deadline import Budget, Deadline

ACCEPT_ENCODING = "gzip, deflate"
# One socket read at most this much; a 1000-record page (about 250 KB) is a few reads.
_CHUNK = 256 * 1024


class BodyTooLarge(Exception):
    """More than ``limit`` bytes after decompression (``declared``: a Content-Length said so)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(limit)
        self.limit = limit
        self.declared = declared


class BodyDeadline(Exception):
    """``deadline`` passed while the body was read; ``received`` bytes had arrived."""

    def __init__(self, deadline: Deadline, received: int) -> None:
        super().__init__(deadline.scope)
        self.deadline = deadline
        self.received = received


class BodyUnreadable(Exception):
    """A content encoding we did not ask for, or a compressed stream that is corrupt or cut."""

    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class _Inflater:
    """Incremental gzip/deflate decoding with bounded output per call."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> list[bytes]:
        """Inflate ``data`` into at most ``room`` bytes (what is left over stays unread)."""
        out: list[bytes] = []
        buffer = data
        while buffer and room > 0:
            try:
                piece = self._zlib.decompress(buffer, room)
            except zlib.error:
                if self.encoding == "deflate" and not self._started:
                    # "deflate" is zlib-wrapped by the standard, raw by many servers: try both.
                    self._wbits, self._zlib = -zlib.MAX_WBITS, zlib.decompressobj(-zlib.MAX_WBITS)
                    self._started = True
                    continue
                raise BodyUnreadable(f"corrupt {self.encoding} body", transient=False) from None
            self._started = True
            out.append(piece)
            room -= len(piece)
            buffer = self._zlib.unconsumed_tail
            if self._zlib.eof:
                rest = self._zlib.unused_data
                if not rest.strip(b"\0"):
                    break
                # Several gzip members in a row are one body (RFC 1952).
                self._zlib = zlib.decompressobj(self._wbits)
                buffer = rest
        return out

    def finish(self, room: int) -> bytes:
        tail = self._zlib.flush(max(room, 1))
        if not self._zlib.eof:
            raise BodyUnreadable(f"the {self.encoding} body ends early", transient=True)
        return tail


def _inflater(response: Any) -> _Inflater | None:
    encoding = (response.headers.get("Content-Encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflater(encoding)
    raise BodyUnreadable(
        f"the body is encoded as {encoding[:40]!r}, which was not asked for (only "
        f"{ACCEPT_ENCODING})",
        transient=False,
    )


def _declared_length(response: Any) -> int | None:
    try:
        return int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None


def _socket(raw: Any) -> Any:
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    return getattr(connection, "sock", None)


def read_body(
    response: Any, *, limit: int, budget: Budget, read_timeout: float, truncate: bool = False
) -> bytes:
    """The body of ``response`` (opened with ``stream=True``), decompressed.

    Raises :class:`BodyTooLarge` beyond ``limit`` bytes (with ``truncate``: returns the first
    ``limit`` bytes instead, for error bodies read only for their message),
    :class:`BodyDeadline` when ``budget`` runs out, :class:`BodyUnreadable`; the HTTP library's
    own exceptions (a read timeout, a connection cut) pass through.
    """
    inflater = _inflater(response)
    declared = _declared_length(response)
    if inflater is None and declared is not None and declared > limit and not truncate:
        raise BodyTooLarge(limit, declared)
    raw = response.raw
    read = getattr(raw, "read1", None)
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        expired = budget.expired()
        if expired is not None:
            raise BodyDeadline(expired, total)
        sock = _socket(raw)
        if sock is not None:
            sock.settimeout(budget.bound(read_timeout))
        try:
            data = (
                read(_CHUNK, decode_content=False) if read else raw.read(8192, decode_content=False)
            )
        except Exception:
            expired = budget.expired()
            if expired is not None:  # the socket timeout was the deadline's
                raise BodyDeadline(expired, total) from None
            raise
        if not data:
            if inflater is not None:
                chunks.append(inflater.finish(limit - total + 1))
                total += len(chunks[-1])
            break
        pieces = [data] if inflater is None else inflater.feed(data, limit - total + 1)
        chunks.extend(pieces)
        total += sum(map(len, pieces))
    body = b"".join(chunks)
    if len(body) > limit:
        if not truncate:
            raise BodyTooLarge(limit)
        body = body[:limit]
    return body
