"""Memory of a streamed upload: the job process's resident set while a running guest's disk
streams into Glance (issue 15: "memory of a streamed 4 GiB upload flat").

    eval "$(python3 scripts/lab env)"
    .venv/bin/python benchmarks/stream_memory.py [--size 4G] [--data 2G] [--format raw]

Makes one running ``snaptui-bench-*`` domain on a qcow2 disk of --size holding --data, runs
``snaptui snapshot DOMAIN --name N --format F --to glance --json`` (auto: streamed), finds the
job process from the journal's ``pid`` event and samples its VmRSS every 50 ms. Prints the RSS
at each quarter of the upload and the peak (VmHWM) to stdout and writes
``results/stream_memory.md``. Removes the domain, its files and the image.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import libvirt
from bench_lab import REPO, Glance, create_bench_domain, h, machine_note, parse_size

SNAPTUI = REPO / ".venv" / "bin" / "snaptui"
RESULTS = REPO / "benchmarks" / "results"


def status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """VmRSS of ``pid`` every 50 ms, tagged with the upload fraction at that moment."""

    def __init__(self, pid: int, progress: list[float]) -> None:
        super().__init__(daemon=True)
        self.pid, self.progress = pid, progress
        self.samples: list[tuple[float, int]] = []
        self.peak_hwm = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss = status_kib(self.pid, "VmRSS")
            if rss is None:
                return
            self.peak_hwm = max(self.peak_hwm, status_kib(self.pid, "VmHWM") or 0)
            self.samples.append((self.progress[0], rss * 1024))
            time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="4G")
    ap.add_argument("--data", default="2G")
    ap.add_argument("--format", default="raw", choices=["raw", "qcow2"])
    args = ap.parse_args()
    conn = libvirt.open(os.environ.get("LIBVIRT_DEFAULT_URI"))
    glance = Glance.connect()
    with tempfile.TemporaryDirectory(prefix="snaptui-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        lab = create_bench_domain(conn, work, size=parse_size(args.size),
                                  data=parse_size(args.data), content="random")
        state = work / "state"
        env = {**os.environ, "SNAPTUI_STATE_DIR": str(state),
               "SNAPTUI_SCRATCH_DIR": str(work / "scratch")}
        argv = [str(SNAPTUI), "snapshot", lab.name, "--name",
                f"snaptui-bench-{uuid.uuid4().hex[:6]}", "--format", args.format,
                "--to", "glance", "--json"]
        progress = [0.0]
        sampler: RssSampler | None = None
        last: dict = {}
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env,
                                    stdin=subprocess.DEVNULL)
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                last = event
                if event.get("event") == "job" and sampler is None:
                    journal = state / "jobs" / f"{event['job_id']}.jsonl"
                    for _ in range(200):
                        pids = [json.loads(x).get("pid") for x in journal.read_text()
                                .splitlines() if '"pid"' in x]
                        if pids:
                            sampler = RssSampler(int(pids[0]), progress)
                            sampler.start()
                            break
                        time.sleep(0.05)
                if event.get("event") == "progress" and event.get("step", "").startswith(
                        "stream") and event.get("total"):
                    progress[0] = event["done"] / event["total"]
            proc.wait()
        finally:
            wall = time.monotonic() - t0
            if sampler is not None:
                sampler.stop.set()
                sampler.join()
            glance.delete(last.get("image_id"))
            lab.remove()
    if last.get("event") != "done" or sampler is None or not sampler.samples:
        print(f"snapshot failed or no samples: {last}", file=sys.stderr)
        return 1
    quarters = []
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        near = [rss for frac, rss in sampler.samples if frac >= q]
        quarters.append(near[0] if near else sampler.samples[-1][1])
    uploaded = (last.get("sizes") or {}).get("uploaded")
    lines = [
        f"# Job process memory while streaming {h(uploaded)} ({args.format}) into Glance",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"{machine_note()}; disk {args.size} with {args.data} of random data; "
        f"{len(sampler.samples)} samples, end to end {wall:.1f} s.",
        "",
        "| upload at | 0 % | 25 % | 50 % | 75 % | 100 % | peak (VmHWM) |",
        "|---|---|---|---|---|---|---|",
        "| job RSS | " + " | ".join(h(x) for x in quarters)
        + f" | {h(sampler.peak_hwm * 1024)} |",
        "",
        "Command: `.venv/bin/python benchmarks/stream_memory.py --size "
        f"{args.size} --data {args.data} --format {args.format}`",
        "",
    ]
    report = "\n".join(lines)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream_memory.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
