"""Throughput of snaptui's streaming qcow2 writer (snaptui/core/disk/qcow2_stream.py) against
``qemu-img convert -O qcow2`` and a plain copy of the same data, on one raw source.

    .venv/bin/python benchmarks/bench_qcow2_stream.py           # 2 GiB disk, 1 GiB data, 3 rounds
    .venv/bin/python benchmarks/bench_qcow2_stream.py --quick   # 256 MiB / 128 MiB, 1 round

Needs no lab services. The source is a sparse raw file with random data in every other 32 MiB
(its allocation map from ``qemu-img map``), read from the page cache (it is read once before the
rounds), after one warm-up round that is not counted. Each round runs every variant once, in turn
(the order rotates from round to round):

- **writer → null**: ``Qcow2Stream.chunks`` with ``os.pread`` on the source, output discarded —
  the writer's own ceiling;
- **writer → file**: the same, written to a file in the bench directory;
- **copy → file**: ``os.pread`` + ``write`` of the data extents in 4 MiB reads (the floor: no
  qcow2 at all);
- **qemu-img convert**: ``qemu-img convert -f raw -O qcow2`` to a file (default options).

Rates are guest data bytes (the source's allocated size) per second, before and after an
``fsync`` of the output. Every output of the writer is checked with ``qemu-img check`` and
``qemu-img compare`` once. Writes ``results/qcow2_stream.md`` (``--quick``:
``results/qcow2_stream-quick.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from snaptui.core.disk.qcow2_stream import MAX_READ, Extent, Qcow2Stream  # noqa: E402

MiB = 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results"


def make_source(path: Path, size: int, data: int) -> None:
    """A sparse raw file of ``size`` bytes with ``data`` bytes of random data in 32 MiB runs."""
    piece = 32 * MiB
    with path.open("wb") as f:
        f.truncate(size)
        stride = size // max(1, data // piece)
        for n in range(data // piece):
            f.seek(n * stride)
            for _ in range(piece // (4 * MiB)):
                f.write(os.urandom(4 * MiB))
        f.flush()
        os.fsync(f.fileno())


def allocation_map(path: Path) -> list[Extent]:
    out = subprocess.run(
        ["qemu-img", "map", "--output=json", "-f", "raw", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return [Extent(e["start"], e["length"], e["data"]) for e in json.loads(out.stdout)]


def timed_output(out: Path, produce: Callable[[int], None]) -> tuple[float, float]:
    """Seconds to produce ``out`` and seconds until it is also fsynced."""
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        produce(fd)
        written = time.perf_counter() - start
        os.fsync(fd)
    finally:
        os.close(fd)
    return written, time.perf_counter() - start


def run_round(
    src: Path, work: Path, extents: list[Extent], size: int, first: int
) -> dict[str, tuple[float, float]]:
    """Every variant once, starting with variant number ``first`` (the order rotates per round)."""
    src_fd = os.open(src, os.O_RDONLY)

    def read(offset: int, length: int) -> bytes:
        return os.pread(src_fd, length, offset)

    def to_null() -> tuple[float, float]:
        start = time.perf_counter()
        stream = Qcow2Stream(size, extents)
        total = sum(len(chunk) for chunk in stream.chunks(read))
        assert total == stream.size
        elapsed = time.perf_counter() - start
        return elapsed, elapsed

    def write_stream(fd: int) -> None:
        for chunk in Qcow2Stream(size, extents).chunks(read):
            os.write(fd, chunk)

    def copy(fd: int) -> None:
        for e in extents:
            pos, end = e.offset, e.offset + e.length
            while e.data and pos < end:
                n = min(MAX_READ, end - pos)
                os.write(fd, os.pread(src_fd, n, pos))
                pos += n

    def convert(fd: int) -> None:
        out = work / "convert.qcow2"
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(src), str(out)], check=True
        )

    variants: list[tuple[str, Callable[[], tuple[float, float]]]] = [
        ("writer → null", to_null),
        ("writer → file", lambda: timed_output(work / "stream.qcow2", write_stream)),
        ("copy → file", lambda: timed_output(work / "copy.raw", copy)),
        ("qemu-img convert → file", lambda: timed_output(work / "convert.qcow2", convert)),
    ]
    results: dict[str, tuple[float, float]] = {}
    try:
        for name, variant in variants[first:] + variants[:first]:
            results[name] = variant()
    finally:
        os.close(src_fd)
    return {name: results[name] for name, _ in variants}


def verify(src: Path, out: Path) -> None:
    check = subprocess.run(["qemu-img", "check", "-f", "qcow2", str(out)], capture_output=True)
    compare = subprocess.run(
        ["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(out), str(src)], capture_output=True
    )
    if check.returncode or compare.returncode:
        raise SystemExit(f"writer output is bad: {check.stdout!r} {compare.stdout!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="virtual size, MiB")
    parser.add_argument("--data", type=int, default=1024, help="data, MiB (multiple of 32)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.size, args.data, args.runs = 256, 128, 1
    work = Path(tempfile.mkdtemp(prefix="snaptui-bench-qcow2-", dir="/var/tmp"))
    try:
        src = work / "source.raw"
        size = args.size * MiB
        make_source(src, size, args.data * MiB)
        extents = allocation_map(src)
        data = Qcow2Stream(size, extents).data_bytes
        with src.open("rb") as f:  # into the page cache: every variant reads it from there
            while f.read(16 * MiB):
                pass
        # One warm-up round, not counted: on this machine the first round's writes into a fresh
        # directory ran 2-5x slower than any later round's.
        run_round(src, work, extents, size, 0)
        load_start = os.getloadavg()[0]
        rounds = []
        for n in range(args.runs):
            rounds.append(run_round(src, work, extents, size, n % 4))
            if n == 0:
                verify(src, work / "stream.qcow2")
            times = ", ".join(f"{k} {v[1]:.2f} s" for k, v in rounds[-1].items())
            print(f"round {n + 1}/{args.runs}: {times}", flush=True)
        lines = [
            f"Source: raw, {args.size} MiB virtual, {data // MiB} MiB data (random, 32 MiB runs), "
            f"in the page cache; {args.runs} rounds; {os.cpu_count()} CPUs, load average "
            f"{load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
            f"{subprocess.run(['qemu-img', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}.",  # noqa: E501
            "",
            "| variant | median s | MiB/s (written) | MiB/s (+fsync) | min–max MiB/s (+fsync) |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in rounds[0]:
            written = [r[name][0] for r in rounds]
            synced = [r[name][1] for r in rounds]
            rate = data / MiB
            lines.append(
                f"| {name} | {statistics.median(synced):.2f} | "
                f"{rate / statistics.median(written):.0f} | "
                f"{rate / statistics.median(synced):.0f} | "
                f"{rate / max(synced):.0f}–{rate / min(synced):.0f} |"
            )
        text = "\n".join(lines) + "\n"
        print(text)
        RESULTS.mkdir(exist_ok=True)
        name = "qcow2_stream-quick.md" if args.quick else "qcow2_stream.md"
        (RESULTS / name).write_text("# Streaming qcow2 writer\n\n" + text)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
