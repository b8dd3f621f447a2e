"""A bandwidth cap (``--bwlimit RATE``): a thread-safe token bucket, and RATE's syntax.

Readers call ``consume(n)`` after (or before) moving ``n`` bytes; it sleeps as long as needed
to keep the long-run rate at or under the cap. A reader may take more than the bucket holds
(a 1 MiB chunk under a 64 KiB/s cap): the bucket goes into debt and the next caller waits it
off, so the cap holds whatever the chunk size. One limiter shared by several threads caps
their sum.
"""

from __future__ import annotations

import re
import threading
import time
from decimal import Decimal

from snaptui.core.errors import BadInput

# Unused capacity a quiet reader may bank, in seconds of the rate: a short burst after a pause,
# never more than this ahead of the cap.
BURST_S = 0.25

# The largest cap the tools below take: qemu-img convert -r and QEMU's block job speed are
# int64 bytes per second.
MAX_RATE = (1 << 63) - 1

_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_RATE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?(?:/S)?")


def parse_rate(text: str, what: str = "--bwlimit") -> int:
    """Bytes per second of ``50M``, ``1G``, ``512K``, ``1048576`` (K/M/G/T are binary;
    ``50MiB``, ``50M/s`` are read the same), read exactly; BadInput (one line, naming ``what``)
    for anything else, 0, or more than the tools below take (``MAX_RATE``)."""
    value = str(text).strip()
    shown = repr(value if len(value) <= 40 else f"{value[:20]}…({len(value)} characters)")
    match = _RATE_RE.fullmatch(value.upper())
    if not match:
        raise BadInput(f"{what}: {shown} is not a rate (bytes per second, e.g. 50M, 1G, "
                       "512K; K/M/G are binary)")
    rate = int(Decimal(match.group(1)) * _UNITS[match.group(2)])
    if rate <= 0:
        raise BadInput(f"{what}: {shown} is not a positive rate")
    if rate > MAX_RATE:
        raise BadInput(f"{what}: {shown} is more than qemu-img and QEMU take "
                       f"({MAX_RATE} bytes per second)")
    return rate


def format_rate(bytes_per_s: int) -> str:
    """The shortest exact ``parse_rate`` spelling of a rate (``52428800`` -> ``50M``)."""
    for suffix in ("T", "G", "M", "K"):
        unit = _UNITS[suffix]
        if bytes_per_s % unit == 0:
            return f"{bytes_per_s // unit}{suffix}"
    return str(bytes_per_s)


class RateLimiter:
    """Token bucket of ``bytes_per_s`` (None: no cap, ``consume`` returns at once)."""

    def __init__(self, bytes_per_s: int | None) -> None:
        if bytes_per_s is not None and bytes_per_s <= 0:
            raise ValueError(f"rate must be positive, not {bytes_per_s}")
        self.bytes_per_s = bytes_per_s
        self._capacity = (bytes_per_s or 0) * BURST_S
        self._tokens = 0.0  # nothing banked at the start: the first chunk already waits
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, n: int, cancel: threading.Event | None = None) -> None:
        """Account for ``n`` bytes, sleeping until they fit under the cap; returns early when
        ``cancel`` is set (the caller then stops on its own)."""
        if self.bytes_per_s is None or n <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity,
                               self._tokens + (now - self._stamp) * self.bytes_per_s)
            self._stamp = now
            self._tokens -= n
            wait = -self._tokens / self.bytes_per_s if self._tokens < 0 else 0.0
        # Sleep outside the lock: the debt is already booked, so a second thread computes its
        # own wait behind this one's and the sum stays under the cap.
        if wait > 0:
            if cancel is not None:
                cancel.wait(wait)
            else:
                time.sleep(wait)
