"""Which ``qemu-img convert`` options are fastest here, and is an NBD read as fast as a file read?

    .venv/bin/python benchmarks/convert_options.py [--size 2G] [--data 1G] [--runs 3] [--quick]

Converts one seeded qcow2 source (--size virtual, --data of half-compressible data) to raw,
qcow2 and compressed qcow2 with each option set (default, -m 1/4, -W, -t none/writeback,
-T none, -S 0, zlib vs zstd), alternating all of them round by round, and reads the source's
guest view through a read-only NBD export (qemu-nbd, qemu-storage-daemon) against a file read.
Writes benchmarks/results/convert_options.md with medians and a recommendation. Needs no lab
services (only qemu-img, qemu-nbd, qemu-storage-daemon). Removes every file it makes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_lab import (
    REPO,
    allocated,
    evict,
    h,
    machine_note,
    make_seeded_qcow2,
    mbps,
    median,
    parse_size,
    read_direct,
    spread,
)
from bench_nbd import nbd_export, python_read

DEFAULTS = "-m 8, -t unsafe (no flush), -T writeback, -S 4k"
OUTPUTS = {"raw": ["-O", "raw"], "qcow2": ["-O", "qcow2"],
           "qcow2+c zstd": ["-O", "qcow2", "-c", "-o", "compression_type=zstd"]}
OPTIONS = {
    "default": [], "-m 1": ["-m", "1"], "-m 4": ["-m", "4"], "-W": ["-W"],
    "-W -m 16": ["-W", "-m", "16"], "-t none": ["-t", "none"],
    "-t writeback": ["-t", "writeback"], "-T none": ["-T", "none"], "-S 0": ["-S", "0"],
}


@dataclass
class Case:
    output: str
    option: str
    argv: list[str]
    seconds: list[float] = field(default_factory=list)
    fsync_s: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    error: str | None = None


def cases() -> list[Case]:
    out = [Case(o, opt, ["qemu-img", "convert", "-f", "qcow2", *oargs, *args])
           for o, oargs in OUTPUTS.items() for opt, args in OPTIONS.items()]
    out.append(Case("qcow2+c zlib", "default",
                    ["qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", "-c", "-o",
                     "compression_type=zlib"]))
    return out


def run_case(case: Case, src: Path, out: Path) -> None:
    if case.error:
        return
    evict(src)
    t0 = time.monotonic()
    proc = subprocess.run([*case.argv, str(src), str(out)], capture_output=True, text=True)
    secs = time.monotonic() - t0
    try:
        if proc.returncode != 0:
            case.error = proc.stderr.strip().replace("\n", " ")
            return
        case.seconds.append(secs)
        case.sizes.append(allocated(out))
        fd = os.open(out, os.O_RDONLY)
        t0 = time.monotonic()
        os.fsync(fd)
        case.fsync_s.append(time.monotonic() - t0)
        os.close(fd)
    finally:
        out.unlink(missing_ok=True)


def read_methods(src: Path, work: Path, virtual: int, data: int) -> dict[str, tuple[int, float]]:
    """One round of every way of reading the source: {label: (bytes, seconds)}."""
    null = ["--target-image-opts", f"driver=null-co,size={virtual}"]
    res: dict[str, tuple[int, float]] = {}

    def timed(argv: list[str]) -> float:
        t0 = time.monotonic()
        subprocess.run(argv, check=True, capture_output=True)
        return time.monotonic() - t0

    evict(src)
    res["file: qemu-img convert qcow2 → null"] = (
        data, timed(["qemu-img", "convert", "-n", "-f", "qcow2", str(src), *null]))
    evict(src)
    res["file: python O_DIRECT read of the qcow2 file"] = read_direct(src)
    for server in ("qemu-nbd", "qemu-storage-daemon"):
        sock = work / f"{server}.sock"
        evict(src)
        with nbd_export(server, src, "qcow2", sock) as url:
            res[f"NBD {server}: qemu-img convert → null"] = (
                data, timed(["qemu-img", "convert", "-n", "-f", "raw", url, *null]))
        evict(src)
        with nbd_export(server, src, "qcow2", sock):
            res[f"NBD {server}: python, 4 MiB reads, 1 in flight"] = (
                data, python_read(sock, "" if server == "qemu-nbd" else "src", data))
    return res


def recommend(by_out: dict[str, list[Case]], ranges: bool) -> list[str]:
    """Per output: options measurably faster than default (min-max ranges apart)."""
    lines = []
    for output, cs in by_out.items():
        base = next(c for c in cs if c.option == "default")
        bmed = median(base.seconds)
        if not bmed:
            continue
        faster, slower = [], []
        for c in cs:
            m = median(c.seconds)
            if c is base or not m:
                continue
            apart = (max(c.seconds) < min(base.seconds)) if ranges else m < bmed * 0.9
            behind = (min(c.seconds) > max(base.seconds)) if ranges else m > bmed * 1.1
            text = f"`{c.option}` {m:.2f} s vs {bmed:.2f} s ({(m / bmed - 1) * 100:+.0f} %)"
            if apart:
                faster.append(text)
            elif behind:
                slower.append(text)
        lines.append(f"- **{output}**: faster than default: {', '.join(faster) or 'none'}; "
                     f"slower: {', '.join(slower) or 'none'}.")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="2G")
    parser.add_argument("--data", default="1G")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--content", default="mixed", choices=["mixed", "random", "pattern"])
    parser.add_argument("--quick", action="store_true", help="256M/128M, 1 round, *-quick.md")
    args = parser.parse_args()
    if args.quick:
        args.size, args.data, args.runs = "256M", "128M", 1
    size, data = parse_size(args.size), parse_size(args.data)
    load_start = machine_note()
    all_cases = cases()
    reads: list[dict[str, tuple[int, float]]] = []
    with tempfile.TemporaryDirectory(prefix="snaptui-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        src = make_seeded_qcow2(work / "source.qcow2", size, data, args.content)
        src_alloc = allocated(src)
        for rnd in range(args.runs):
            reads.append(read_methods(src, work, size, data))
            # The first convert of a round ran slower whatever it was: run one and discard it,
            # and start each round at a different case so no option always goes first.
            run_case(Case("warm-up", "default", cases()[0].argv), src, work / "out.img")
            start = rnd * len(all_cases) // max(args.runs, 1)
            for case in all_cases[start:] + all_cases[:start]:
                run_case(case, src, work / "out.img")
                last = f"{case.seconds[-1]:.2f} s" if case.seconds else case.error
                print(f"round {rnd + 1}: {case.output} {case.option}: {last}", file=sys.stderr)
    version = subprocess.run(["qemu-img", "--version"], capture_output=True,
                             text=True).stdout.split()[2]
    by_out: dict[str, list[Case]] = {}
    for c in all_cases:
        by_out.setdefault(c.output, []).append(c)

    lines = [
        f"# qemu-img convert options: {args.size} qcow2 source holding {args.data} of "
        f"{args.content} data",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, qemu-img {version}, "
        f"{os.cpu_count()} cores, {args.runs} rounds (every case once per round, in turn, "
        "each round starting at a different case after one discarded warm-up convert), "
        "medians (min–max). "
        f"Source allocated {h(src_alloc)}; its pages are evicted "
        "before every run (fsync + POSIX_FADV_DONTNEED on the file).",
        f"Machine at start: {load_start}. At end: {machine_note()}. The machine is shared "
        "with other engineers' test runs: differences under ~10 % are noise.",
        "",
        f"qemu-img convert defaults: {DEFAULTS}. 'then fsync' is the time an fsync of the "
        "output took after qemu-img exited (the default -t unsafe leaves the data in the "
        "page cache; -t none/writeback flush before exiting).",
        "",
        "## Convert time",
        "",
        "| output | options | seconds | range | rate (source allocated/s) | then fsync "
        "| output allocated |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in all_cases:
        m = median(c.seconds)
        if c.error or not m:
            lines.append(f"| {c.output} | `{c.option}` | fails | | {c.error} | | |")
            continue
        lines.append(
            f"| {c.output} | `{c.option}` | {m:.2f} | {spread(c.seconds)} "
            f"| {mbps(src_alloc / m)} | {median(c.fsync_s):.2f} s | {h(median(c.sizes))} |")
    read_med = {k: median(r[k][1] for r in reads) for k in reads[0]}
    lines += [
        "",
        "## Reading the source: file vs read-only NBD export",
        "",
        "Guest view of the source read to nowhere; rate = bytes read (the data, or the whole "
        "qcow2 file for the O_DIRECT read) / seconds. NBD over a unix socket; `qemu-img` uses "
        "block status, so it skips unallocated areas like the file read does. The Python reader "
        "(benchmarks/bench_nbd.py) asks for the data range only, one 4 MiB request at a time.",
        "",
        "| how | seconds | rate |",
        "|---|---|---|",
    ]
    for k, secs in read_med.items():
        nbytes = reads[0][k][0]
        lines.append(f"| {k} | {secs:.2f} | {mbps(nbytes / secs if secs else None)} |")
    lines += ["", "## Recommendation (computed from the table above)", "",
              *recommend(by_out, ranges=args.runs > 1)]
    zs = median(next(c for c in all_cases if c.output == "qcow2+c zstd"
                     and c.option == "default").seconds)
    zl = median(next(c for c in all_cases if c.output == "qcow2+c zlib").seconds)
    if zs and zl:
        lines.append(f"- **compression**: zstd {zs:.2f} s vs zlib {zl:.2f} s "
                     f"({zl / zs:.1f}× faster with zstd).")
    lines += ["", "Command: `.venv/bin/python benchmarks/convert_options.py"
              + ("" if (args.size, args.data, args.runs) == ("2G", "1G", 3) else
                 f" --size {args.size} --data {args.data} --runs {args.runs}") + "`", ""]
    text = "\n".join(lines)
    out = REPO / "benchmarks" / "results" / (
        "convert_options-quick.md" if args.quick else "convert_options.md")
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
