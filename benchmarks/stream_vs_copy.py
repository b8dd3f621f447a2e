"""Streamed snapshot vs the copy path on the same running guest (issue 15).

``snaptui snapshot --stream`` (pull-mode backup read over NBD straight into Glance) against the
copy paths a running guest had before (``--mode live`` and ``--mode backup``: extract to scratch,
then upload), raw (or ``--format qcow2``) output, in rotated order each round. Per run: end to
end (the CLI's wall time), peak scratch (allocated bytes sampled every 20 ms), guest pauses and
downtime from libvirt lifecycle events.

    .venv/bin/python benchmarks/stream_vs_copy.py                 # 2 GiB disk, 1 GiB data, 3 rounds
    .venv/bin/python benchmarks/stream_vs_copy.py --size 256M --data 128M --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import libvirt
from bench_lab import (
    EventLog,
    Glance,
    ScratchSampler,
    create_bench_domain,
    evict,
    h,
    machine_note,
    median,
    parse_size,
)
from bench_runs import SNAPTUI

VARIANTS = {
    "stream": ["--mode", "backup", "--stream"],
    "live (copy)": ["--mode", "live", "--no-stream"],
    "backup (copy)": ["--mode", "backup", "--no-stream"],
}


def run_once(label: str, lab: Any, state: Path, glance: Glance, events: EventLog,
             fmt: str) -> dict:
    evict(lab.disk_path())
    scratch = state / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    argv = [str(SNAPTUI), "snapshot", lab.name, "--name", f"snaptui-bench-{uuid.uuid4().hex[:6]}",
            "--format", fmt, "--to", "glance", "--json", *VARIANTS[label]]
    env = {**os.environ, "SNAPTUI_STATE_DIR": str(state), "SNAPTUI_SCRATCH_DIR": str(scratch)}
    with ScratchSampler(scratch) as sampler:
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL)
        t1 = time.monotonic()
    evs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    last = evs[-1] if evs else {}
    glance.delete(last.get("image_id"))
    if proc.returncode != 0 or last.get("event") != "done":
        raise RuntimeError(f"{label} failed: {last} {proc.stderr.strip()}")
    win = events.window(lab.name, t0, t1)
    steps = {e["step"]: e["seconds"] for e in evs if e.get("event") == "step_finished"}
    return {"wall": t1 - t0, "peak": sampler.peak, "pauses": win["pauses"],
            "downtime": win["downtime_s"], "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="2G")
    ap.add_argument("--data", default="1G")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--format", dest="fmt", choices=("raw", "qcow2"), default="raw")
    args = ap.parse_args()
    size, data = parse_size(args.size), parse_size(args.data)
    work = Path(tempfile.mkdtemp(prefix="snaptui-bench-stream-", dir="/var/tmp"))
    conn = libvirt.open(os.environ.get("LIBVIRT_DEFAULT_URI"))
    glance = Glance.connect()
    results: dict[str, list[dict]] = {k: [] for k in VARIANTS}
    lab = create_bench_domain(conn, work, size=size, data=data, content="mixed")
    try:
        with EventLog(os.environ.get("LIBVIRT_DEFAULT_URI")) as events:
            labels = list(VARIANTS)
            for round_ in range(args.runs):  # rotated: no variant always runs first
                for label in labels[round_ % 3:] + labels[:round_ % 3]:
                    results[label].append(run_once(label, lab, work / "state", glance, events,
                                                   args.fmt))
    finally:
        lab.remove()
        shutil.rmtree(work, ignore_errors=True)
    print(f"# {args.size} disk, {args.data} data, {args.fmt}, {args.runs} rounds; "
          f"{machine_note()}")
    base = median(r["wall"] for r in results["live (copy)"])
    for label, runs in results.items():
        wall = median(r["wall"] for r in runs)
        each = ", ".join(f"{r['wall']:.2f}" for r in runs)
        print(f"{label:14} end to end {wall:6.2f} s (runs {each})"
              f"  ×{wall / base:.2f} of live  peak scratch {h(max(r['peak'] for r in runs))}"
              f"  pauses {sum(r['pauses'] for r in runs)}"
              f"  downtime {max(r['downtime'] for r in runs):.3f} s")
        for r in runs:
            slow = [f"{k} {v:.2f}" for k, v in r["steps"].items() if v >= 0.5]
            print(f"    {r['wall']:.2f} s: " + ", ".join(slow))


if __name__ == "__main__":
    main()
