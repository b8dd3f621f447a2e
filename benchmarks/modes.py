"""Wall time, guest downtime and peak scratch space of each snapshot mode on the real lab.

    eval "$(python3 scripts/lab up)"; .venv/bin/python benchmarks/modes.py [--size 1G] [--data 768M]

Downtime is taken twice: from the job's journal and from libvirt lifecycle events (suspended/
stopped -> resumed/started) seen by a DomainEventWatcher. Peak scratch is the maximum allocated
size of the scratch directory, sampled every 20 ms. Writes a markdown table to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import humanize
import libvirt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from lab_domains import create_domain  # noqa: E402

from snaptui.core.engine.jobs import follow, launch, prepare  # noqa: E402
from snaptui.core.engine.plan import Mode, SnapshotRequest  # noqa: E402
from snaptui.core.images.factory import open_store  # noqa: E402
from snaptui.core.libvirt.events import DomainEvent, DomainEventWatcher  # noqa: E402
from snaptui.core.paths import scratch_dir  # noqa: E402

DOWN = {("suspended", None), ("stopped", None)}


def allocated(directory: Path) -> int:
    total = 0
    for entry in os.scandir(directory):
        try:
            total += entry.stat().st_blocks * 512
        except FileNotFoundError:
            pass
    return total


class ScratchSampler(threading.Thread):
    def __init__(self, directory: Path):
        super().__init__(daemon=True)
        self.directory, self.peak, self.stop = directory, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, allocated(self.directory))
            time.sleep(0.02)


def event_downtime(events: list[DomainEvent], name: str) -> float:
    """Seconds between the guest going down (suspended/stopped) and coming back."""
    down_at, total = None, 0.0
    for ev in events:
        if ev.domain != name or ev.kind != "lifecycle":
            continue
        if ev.event in ("suspended", "stopped") and down_at is None:
            down_at = ev.monotonic
        elif ev.event in ("resumed", "started") and down_at is not None:
            total += ev.monotonic - down_at
            down_at = None
    return total


def run_mode(conn, workdir: Path, mode: str, size: str, data: str, destination: str) -> dict:
    lab = create_domain(conn, workdir, state="running", size=size, seed=data)
    events: list[DomainEvent] = []
    watcher = DomainEventWatcher(os.environ.get("LIBVIRT_DEFAULT_URI"), events.append)
    watcher.start()
    try:
        disk_alloc = lab.disk_path().stat().st_blocks * 512
        request = SnapshotRequest(domain=lab.name, name=f"bench-{mode}", mode=Mode(mode),
                                  destination=destination)
        plan, steps = asyncio.run(prepare(request))
        sampler = ScratchSampler(scratch_dir())
        sampler.start()
        t0 = time.monotonic()
        job_id = launch(plan, request, steps)
        progress_times: dict[str, list[float]] = {}
        last = {}
        for ev in follow(job_id, poll_s=0.02):
            if ev["event"] == "progress":
                progress_times.setdefault(ev["step"], []).append(ev["t"])
            last = ev
        wall = time.monotonic() - t0
        sampler.stop.set()
        sampler.join()
        time.sleep(0.3)  # let the last lifecycle events arrive
        if last.get("event") != "done":
            raise SystemExit(f"{mode}: job {job_id} ended {last}")
        rates = [len(ts) / max(ts[-1] - ts[0], 1e-9) for ts in progress_times.values()
                 if len(ts) > 2]
        open_store(destination).delete(last["image_id"])
        return {
            "mode": mode, "wall_s": wall, "downtime_journal_s": last["downtime_s"],
            "downtime_events_s": event_downtime(events, lab.name), "peak_scratch": sampler.peak,
            "disk_allocated": disk_alloc, "min_progress_rate": min(rates) if rates else 0.0,
        }
    finally:
        watcher.stop()
        lab.remove()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="1G")
    parser.add_argument("--data", default="768M")
    parser.add_argument("--to", default="glance", choices=["glance", "library"])
    parser.add_argument("--modes", default="cold,internal,live,backup")
    args = parser.parse_args()
    conn = libvirt.open(os.environ.get("LIBVIRT_DEFAULT_URI"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="snaptui-bench-", dir="/var/tmp") as tmp:
        Path(tmp).chmod(0o711)  # QEMU runs as libvirt-qemu, as on a stock host: it must enter
        os.environ.setdefault("SNAPTUI_STATE_DIR", str(Path(tmp) / "state"))
        os.environ.setdefault("SNAPTUI_SCRATCH_DIR", str(Path(tmp) / "scratch"))  # 0711
        for mode in args.modes.split(","):
            rows.append(run_mode(conn, Path(tmp), mode, args.size, args.data, args.to))
            print(rows[-1], file=sys.stderr)

    def h(n: int) -> str:
        return humanize.naturalsize(n, binary=True)

    lines = [
        f"# Snapshot modes: {args.size} qcow2 disk with {args.data} of data, to {args.to}",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on the lab "
        f"({'KVM' if os.path.exists('/dev/kvm') else 'TCG'}, {os.cpu_count()} cores).",
        "",
        "| mode | wall time | downtime (journal) | downtime (libvirt events) | peak scratch "
        "| scratch / allocated | progress updates/s (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['wall_s']:.2f} s | {r['downtime_journal_s']:.2f} s "
            f"| {r['downtime_events_s']:.2f} s | {h(r['peak_scratch'])} "
            f"| {r['peak_scratch'] / r['disk_allocated']:.2f}× "
            f"| {r['min_progress_rate']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    out = REPO / "benchmarks" / "results" / "modes.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
