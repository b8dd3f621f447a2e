"""The bandwidth cap: RATE's syntax and the token bucket (core/throttle.py), and the upload
reader it throttles (core/images/store.py HashingReader)."""

from __future__ import annotations

import hashlib
import io
import threading
import time

import pytest

from snaptui.core.errors import BadInput
from snaptui.core.images.store import HashingReader
from snaptui.core.throttle import RateLimiter, format_rate, parse_rate

MIB = 1024 * 1024


@pytest.mark.parametrize(("text", "rate"), [
    ("50M", 50 * MIB), ("1G", 1024 * MIB), ("512K", 512 * 1024), ("1048576", MIB),
    ("50m", 50 * MIB), ("50MiB", 50 * MIB), ("50M/s", 50 * MIB), (" 2g ", 2048 * MIB),
    ("1.5M", 3 * MIB // 2), ("1T", 1024 ** 4),
])
def test_parse_rate(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "0", "0M", "-5M", "5X", "1.5.0M", "M", "5 M B"])
def test_parse_rate_refuses(text):
    with pytest.raises(BadInput, match="--bwlimit"):
        parse_rate(text)


def test_format_rate_round_trips():
    for rate in (50 * MIB, 1024 * MIB, 1536, 1000, 3 * MIB // 2):
        assert parse_rate(format_rate(rate)) == rate
    assert format_rate(50 * MIB) == "50M"


def test_no_cap_never_waits():
    """Uncapped, consume returns at once: no clock is even read (no tokens are kept)."""
    limiter = RateLimiter(None)
    for _ in range(1000):
        limiter.consume(MIB)
    assert limiter._tokens == 0.0 and limiter.bytes_per_s is None


def test_threads_share_one_cap():
    """Three threads through one limiter: their sum stays under the cap (chunks larger than
    the bucket included)."""
    cap = 4 * MIB
    limiter = RateLimiter(cap)
    moved = []

    def reader() -> None:
        for _ in range(6):
            limiter.consume(MIB // 2)
            moved.append(MIB // 2)

    started = time.monotonic()
    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert sum(moved) == 9 * MIB
    assert sum(moved) / elapsed <= cap * 1.2


def test_cancel_ends_the_wait():
    limiter = RateLimiter(1024)
    cancel = threading.Event()
    waiter = threading.Thread(target=limiter.consume, args=(100 * 1024, cancel))
    waiter.start()  # 100 s at this rate, unless cancelled
    cancel.set()
    waiter.join(timeout=60)
    assert not waiter.is_alive()


def test_hashing_reader_is_capped_and_whole():
    data = bytes(range(256)) * (6 * MIB // 256)
    cap = 2 * MIB
    started = time.monotonic()
    with HashingReader(io.BytesIO(data), len(data), limiter=RateLimiter(cap)) as reader:
        out = b"".join(iter(lambda: reader.read(64 * 1024), b""))
    elapsed = time.monotonic() - started
    assert out == data
    assert reader.hexdigest() == hashlib.sha512(data).hexdigest()
    assert len(data) / elapsed <= cap * 1.2
