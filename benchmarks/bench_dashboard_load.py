"""Real background load for benchmarks/dashboard.py, on the lab: snaptui snapshot jobs
(``snaptui snapshot … --detach``, the same state dir as the dashboard), a plain ``qemu-img
convert`` loop and a glanceclient upload loop; and the five-snapshots-at-once scenario.

Every domain is ``snaptui-bench-*``; every Glance image made here (or by the jobs) is deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench_lab import BENCH_PREFIX, Glance, LabDomain, create_bench_domain, make_seeded_qcow2

from snaptui.core.engine.journal import JobRecord, load_job
from snaptui.core.priority import apply_priority

REPO = Path(__file__).resolve().parent.parent
SNAPTUI = str(REPO / ".venv" / "bin" / "snaptui")
MiB = 1024 * 1024
# "lock" as a word ("block_job" is not one) or snaptui's own refusal.
LOCK_ERROR = re.compile(r"\block(ed|s|ing)?\b|already has a snapshot job running", re.I)


@dataclass
class Activity:
    """Wall-clock (time.time()) intervals during which one kind of work was running."""

    name: str
    intervals: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    runs: int = 0

    def covered(self, t0: float, t1: float) -> list[tuple[float, float]]:
        return [(max(a, t0), min(b, t1)) for a, b in self.intervals if b > t0 and a < t1]


def overlap_share(convert: list[Activity], upload: list[Activity], t0: float,
                  t1: float) -> float:
    """Share of [t0, t1] during which some convert and some upload were both running."""
    if t1 <= t0:
        return 0.0
    step, both, t = 0.05, 0, t0
    conv = [iv for a in convert for iv in a.covered(t0, t1)]
    upl = [iv for a in upload for iv in a.covered(t0, t1)]
    n = 0
    while t < t1:
        n += 1
        if any(a <= t < b for a, b in conv) and any(a <= t < b for a, b in upl):
            both += 1
        t += step
    return both / n


# What --priority means (core/priority.py), for the plain qemu-img loop: nice and ionice.
PRIORITY_ARGV = {"normal": [], "low": ["nice", "-n", "10", "ionice", "-c", "2", "-n", "7"],
                 "idle": ["nice", "-n", "19", "ionice", "-c", "3"]}


def snapshot_detached(domain: str, name: str, mode: str, env: dict[str, str],
                      priority: str = "low") -> str:
    """``snaptui snapshot DOMAIN --name NAME --mode MODE --to glance --priority P --detach``;
    the job id."""
    proc = subprocess.run([SNAPTUI, "snapshot", domain, "--name", name, "--mode", mode,
                           "--to", "glance", "--priority", priority, "--detach"],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"snaptui snapshot {domain}: {proc.stderr.strip()[-400:]}")
    return proc.stdout.strip().splitlines()[-1]


def wait_job(job_id: str, timeout: float = 900) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = load_job(job_id)
        if job.terminal:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not end in {timeout:.0f} s")


def job_image_ids(job: JobRecord) -> list[str]:
    ids = [i.get("image_id") for i in job.result.get("images") or []]
    return [i for i in [job.result.get("image_id"), *ids] if i]


def job_intervals(job: JobRecord) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(convert-like, upload) step intervals of a job from its journal (wall clock)."""
    conv, upl = [], []
    for step in job.steps:
        if not step.started:
            continue
        span = (step.started, step.finished or time.time())
        if step.name.startswith("upload"):
            upl.append(span)
        elif step.name.split(":")[0] in ("convert", "copy", "backup", "extract"):
            conv.append(span)
    return conv, upl


class BackgroundLoad:
    """Keeps a plain qemu-img convert and a Glance upload running until ``stop()`` (with
    ``with_job``, also a snaptui snapshot job); each in a loop, so they overlap for the whole
    measurement. All of them run at ``priority`` (snaptui's --priority: the convert under
    nice/ionice, the upload thread lowered as a job process lowers itself)."""

    def __init__(self, conn, workdir: Path, env: dict[str, str], *, disk: int,
                 data: int, with_job: bool = True, priority: str = "low") -> None:
        self.conn, self.workdir, self.env = conn, workdir, env
        self.with_job = with_job
        self.priority = priority
        self.disk, self.data = disk, data
        self.stop_event = threading.Event()
        self.job = Activity("snaptui job (cold → glance)")
        self.job_convert = Activity("snaptui job: convert step")
        self.job_upload = Activity("snaptui job: upload step")
        self.convert = Activity("qemu-img convert")
        self.upload = Activity("glanceclient upload")
        self.domain: LabDomain | None = None
        self.glance = Glance.connect()
        self.jobs: list[JobRecord] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.with_job:
            self.domain = create_bench_domain(self.conn, self.workdir, size=self.disk,
                                              data=self.data, content="mixed")
        src = make_seeded_qcow2(self.workdir / f"{BENCH_PREFIX}convert-src.qcow2", self.disk,
                                self.data, "mixed")
        blob = self.workdir / f"{BENCH_PREFIX}upload.raw"
        with open(blob, "wb") as out:
            for _ in range(self.data // MiB):
                out.write(os.urandom(MiB))
        loops = [(self._convert_loop, (src,)), (self._upload_loop, (blob,))]
        if self.with_job:
            loops.append((self._job_loop, ()))
        for target, args in loops:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    def running(self) -> bool:
        """A job step, a convert and an upload have each started at least once."""
        return bool(self.convert.runs and self.upload.runs and
                    (self.job.runs or not self.with_job))

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=900)

    def close(self) -> None:
        self.stop()
        if self.domain is not None:
            self.domain.remove()

    def _job_loop(self) -> None:
        assert self.domain is not None
        while not self.stop_event.is_set():
            t0 = time.time()
            try:
                job_id = snapshot_detached(self.domain.name, f"{BENCH_PREFIX}dash-{self.job.runs}",
                                           "cold", self.env, self.priority)
                self.job.runs += 1
                job = wait_job(job_id)
                self.jobs.append(job)
                conv, upl = job_intervals(job)
                self.job_convert.intervals += conv
                self.job_upload.intervals += upl
                if job.status != "done":
                    self.job.errors.append(f"{job_id}: {job.status} {job.error}")
                for image_id in job_image_ids(job):
                    self.glance.delete(image_id)
            except Exception as err:  # noqa: BLE001 - recorded, reported
                self.job.errors.append(str(err))
                self.stop_event.wait(2)
            self.job.intervals.append((t0, time.time()))

    def _convert_loop(self, src: Path) -> None:
        dst = self.workdir / f"{BENCH_PREFIX}convert-dst.qcow2"
        while not self.stop_event.is_set():
            t0 = time.time()
            proc = subprocess.run([*PRIORITY_ARGV[self.priority], "qemu-img", "convert", "-f",
                                   "qcow2", "-O", "qcow2", str(src), str(dst)],
                                  capture_output=True, text=True)
            self.convert.intervals.append((t0, time.time()))
            self.convert.runs += 1
            if proc.returncode:
                self.convert.errors.append(proc.stderr.strip()[-200:])
                self.stop_event.wait(2)
            dst.unlink(missing_ok=True)

    def _upload_loop(self, blob: Path) -> None:
        apply_priority(self.priority, [threading.get_native_id()])  # this thread only
        while not self.stop_event.is_set():
            t0 = time.time()
            try:
                image_id, _ = self.glance.create_upload(
                    f"{BENCH_PREFIX}upload-{uuid.uuid4().hex[:6]}", blob, "raw")
                self.glance.delete(image_id)
            except Exception as err:  # noqa: BLE001 - recorded, reported
                self.upload.errors.append(str(err)[:200])
                self.stop_event.wait(2)
            self.upload.intervals.append((t0, time.time()))
            self.upload.runs += 1


@dataclass
class FiveSnapshots:
    """Five different lab domains snapshotted at once (cold/live mix) -- issue 7 "Load"."""

    domains: list[LabDomain] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)
    launch_errors: list[str] = field(default_factory=list)
    t_launch: float = 0.0
    t_done: float = 0.0

    PLAN = (("running", "cold"), ("running", "live"), ("shut off", "cold"),
            ("running", "live"), ("paused", "cold"))

    def create(self, conn, workdir: Path, disk: int, data: int) -> None:
        for state, mode in self.PLAN:
            lab = create_bench_domain(conn, workdir, size=disk, data=data, content="mixed")
            self.domains.append(lab)
            self.modes.append(mode)
            if state != "running":
                lab.set_state(state)

    def launch_all(self, env: dict[str, str]) -> None:
        """Start the five ``snaptui snapshot --detach`` commands at the same moment."""
        self.t_launch = time.time()
        procs = [subprocess.Popen(  # noqa: S603 - argv list
            [SNAPTUI, "snapshot", lab.name, "--name", f"{lab.name}-load", "--mode", mode,
             "--to", "glance", "--detach"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env) for lab, mode in zip(self.domains, self.modes, strict=True)]
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            if proc.returncode:
                self.launch_errors.append(err.strip()[-400:])
            else:
                self.job_ids.append(out.strip().splitlines()[-1])

    def wait(self) -> None:
        self.jobs = [wait_job(j) for j in self.job_ids]
        self.t_done = max((j.finished or time.time() for j in self.jobs), default=time.time())

    def lock_errors(self, jobs_dir: Path) -> list[str]:
        """Lines of the jobs' journals and logs (and launch errors) that report a lock:
        snaptui's domain lock, a QEMU image write lock, or Glance's "database is locked"."""
        found = [e for e in self.launch_errors if LOCK_ERROR.search(e)]
        for job_id in self.job_ids:
            for path in (jobs_dir / f"{job_id}.jsonl", jobs_dir / f"{job_id}.log"):
                with contextlib.suppress(OSError):
                    found += [f"{path.name}: {line.strip()[:200]}"
                              for line in path.read_text(errors="replace").splitlines()
                              if LOCK_ERROR.search(line) and '"event": "job"' not in line]
        return found

    def cleanup(self, glance: Glance) -> None:
        for job in self.jobs:
            for image_id in job_image_ids(job):
                glance.delete(image_id)
        for lab in self.domains:
            lab.remove()
