"""Fault-injection helpers for the engine tests on the real lab.

A qemu-img wrapper that fails one subcommand, a small tmpfs, waiting on a job's journal,
stopping Glance and libvirtd by pid and bringing them back, and the shared lab-state checker
that every fault test runs afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from snaptui.core.engine.jobs import get_job
from snaptui.core.engine.journal import TERMINAL_EVENTS, JobRecord, jobs_dir, journal_path
from snaptui.core.engine.journal import read_events as _read_events
from snaptui.core.engine.locks import domain_lock_holder
from snaptui.core.errors import NotFound
from snaptui.core.images.library import ImageLibrary
from snaptui.core.paths import scratch_dir
from snaptui.core.throttle import parse_rate

REPO = Path(__file__).resolve().parent.parent
REAL_QEMU_IMG = "/usr/bin/qemu-img"
LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")
LAB_DIR = Path(os.environ.get("SNAPTUI_LAB_DIR", "/var/tmp/snaptui-lab"))
# A bandwidth cap (--bwlimit) for tests that act in the middle of a convert, block copy or
# upload. Uncapped, 768 MiB of data converts in ~0.2 s on this machine, about one progress
# interval (0.2 s): CI saw a cold job finish between two polls of its journal. At 128 MiB/s
# the step takes ~6 s on any disk. The cap only adds qemu-img's -r, the block copy's bandwidth
# and the upload's limiter; every step and undo of the workflow stays the same.
MID_STEP_RATE = "128M"  # as the CLI and the dialog take it
MID_STEP_BWLIMIT = parse_rate(MID_STEP_RATE)  # as SnapshotRequest and the plan hold it
STATE_NAMES = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
               libvirt.VIR_DOMAIN_SHUTOFF: "shut off"}


# -- injected tools ----------------------------------------------------------------------------

def qemu_img_wrapper(directory: Path, *, fail: str = "convert",
                     message: str = "injected fault: convert refused by the test wrapper") -> Path:
    """A 0755 script running the real qemu-img, except for subcommand ``fail``: that one
    prints ``qemu-img: MESSAGE`` to stderr and exits 1."""
    script = directory / "qemu-img-faulty"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "{fail}" ]; then\n'
        f"  echo 'qemu-img: {message}' >&2\n"
        "  exit 1\n"
        "fi\n"
        f'exec {REAL_QEMU_IMG} "$@"\n'
    )
    script.chmod(0o755)
    return script


class QemuImgFault:
    """A qemu-img for ``SNAPTUI_QEMU_IMG`` that runs the real one, except the first time it is
    called as ``match`` (a subcommand, or ``snapshot -c`` / ``snapshot -d``): then it fails
    (``fail``: prints ``qemu-img: MESSAGE``, exits 1) or waits at a gate until ``release()``
    (``gate``: the job is held inside that step, the real command runs after the release)."""

    def __init__(self, directory: Path, match: str, action: str = "fail",
                 message: str = "injected fault: refused by the test wrapper") -> None:
        self.dir = directory / f"qemu-img-{match.replace(' ', '')}-{action}"
        self.dir.mkdir(parents=True)
        self.match, self.action = match, action
        if action == "fail":
            act = f"  echo 'qemu-img: {message}' >&2\n  exit 1\n"
        elif action == "gate":
            act = (f"  : > {self.dir}/arrived\n  n=0\n"
                   f"  while [ ! -e {self.dir}/release ] && [ $n -lt 1200 ]; do\n"
                   "    sleep 0.05; n=$((n+1))\n  done\n")
        else:
            raise ValueError(action)
        self.path = self.dir / "qemu-img"
        self.path.write_text(
            "#!/bin/sh\n"
            'case "$1" in snapshot) key="$1 $2" ;; *) key="$1" ;; esac\n'
            f'if [ "$key" = "{match}" ] && mkdir {self.dir}/fired 2>/dev/null; then\n'
            f"{act}fi\n"
            f'exec {REAL_QEMU_IMG} "$@"\n')
        self.path.chmod(0o755)

    @property
    def fired(self) -> bool:
        return (self.dir / "fired").exists()

    def wait_arrived(self, job_id: str, timeout: float = 60.0) -> None:
        wait_for(job_id, lambda _job: (self.dir / "arrived").exists(), timeout=timeout,
                 what=f"qemu-img {self.match} at the gate")

    def release(self) -> None:
        (self.dir / "release").touch()


@contextlib.contextmanager
def tmpfs(path: Path, size: str, mode: int = 0o700) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``path`` (made ``mode``: 0711 for a scratch dir QEMU must
    enter) for the duration; always unmounted."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode={mode:04o}", "tmpfs",
                    str(path)],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        proc = subprocess.run(["umount", str(path)], capture_output=True)
        if proc.returncode != 0:  # still busy (a leftover process): detach it anyway
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path, leave_free: int, name: str = "filler") -> Path:
    """Write a file into ``directory`` so that only about ``leave_free`` bytes stay free."""
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    path = directory / name
    chunk = b"\0" * (1 << 20)
    remaining = max(0, free - leave_free)
    with open(path, "wb") as handle:
        while remaining > 0:
            n = min(len(chunk), remaining)
            handle.write(chunk[:n])
            remaining -= n
    return path


# -- waiting ------------------------------------------------------------------------------------

def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *,
               poll: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something true (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
    return value


# -- journal -----------------------------------------------------------------------------------

def journal_events(job_id: str) -> list[dict[str, Any]]:
    return _read_events(journal_path(job_id))


def wait_for(job_id: str, ready: Callable[[JobRecord], bool], *, timeout: float = 60.0,
             what: str = "condition", poll: float = 0.02) -> JobRecord:
    """Poll the job's journal until ``ready(job)``; fail if the job ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(job_id)
        if ready(job):
            return job
        if job.terminal:
            raise AssertionError(f"job {job_id} ended ({job.status}: {job.error}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id}: no {what} within {timeout} s "
                                 f"(steps: {[(s.name, s.state) for s in job.steps]})")
        time.sleep(poll)


def step_running(name: str, *, min_done: float = 0.0) -> Callable[[JobRecord], bool]:
    """Predicate: step ``name`` is running (and its progress reached ``min_done``, if given)."""
    def ready(job: JobRecord) -> bool:
        step = job.step(name)
        if step is None or step.state != "running":
            return False
        if min_done <= 0:
            return True
        progress = step.progress or {}
        done, total = progress.get("done") or 0, progress.get("total")
        return done >= min_done and (total is None or done < total)
    return ready


def wait_terminal(job_id: str, timeout: float = 120.0) -> JobRecord:
    return wait_until(lambda: (job := get_job(job_id)).terminal and job, timeout,
                      f"job {job_id} to end", poll=0.05)


# -- processes ---------------------------------------------------------------------------------

def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_gone(pids: list[int], timeout: float = 15.0) -> None:
    """Wait until none of ``pids`` runs (a zombie counts as gone: it runs nothing)."""
    wait_until(lambda: not any(alive(p) for p in pids), timeout, f"processes {pids} to end")


def children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (a job's group outlives its leader)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def kill_job(job_id: str) -> int:
    """SIGKILL the job's process (only it, as a crash would) and wait until it is gone."""
    job = get_job(job_id)
    assert job.pid, f"job {job_id} has no pid yet"
    os.kill(job.pid, signal.SIGKILL)
    wait_gone([job.pid])
    # The leader turns zombie before its other threads have exited and dropped the domain
    # lock; recover run in that instant would (rightly) skip the job as still locked.
    wait_until(lambda: not domain_lock_holder(job.plan["domain_uuid"]), 10,
               "the killed job's domain lock to be released", poll=0.01)
    return job.pid


# -- Glance and libvirtd -----------------------------------------------------------------------

def glance_pid() -> int:
    """The lab's gunicorn master for Glance (from its run record, checked by `lab status`)."""
    import json

    data = json.loads((LAB_DIR / "run" / "glance.json").read_text())
    pid = int(data["pid"])
    assert alive(pid), "glance is not running"
    return pid


def kill_glance() -> list[int]:
    """SIGKILL Glance's gunicorn master and its workers (a crash, not a shutdown)."""
    master = glance_pid()
    group = [master, *children(master)]
    for pid in group:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(group)
    return group


def lab_up() -> None:
    """`scripts/lab up` (idempotent): restarts whatever of the lab is down."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "lab"), "up"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]


def libvirtd_answers(uri: str) -> bool:
    proc = subprocess.run(["virsh", "-c", uri, "version"], capture_output=True, timeout=30)
    return proc.returncode == 0


def stop_libvirtd() -> int:
    """SIGTERM libvirtd by its pid file and wait until it is gone."""
    pid = int(LIBVIRTD_PIDFILE.read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    wait_gone([pid], timeout=30)
    return pid


def ensure_libvirtd(uri: str) -> None:
    """Start libvirtd (`libvirtd -d`) unless it answers; wait until `virsh version` does."""
    if libvirtd_answers(uri):
        return
    os.makedirs("/run/libvirt", exist_ok=True)
    subprocess.run(["libvirtd", "-d"], check=True, timeout=30)
    wait_until(lambda: libvirtd_answers(uri), 30, "libvirtd to answer again", poll=0.1)


# -- the lab-state checker ---------------------------------------------------------------------

def internal_snapshots(path: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "snapshot", "-l", "-U", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[1] for line in out.splitlines()[2:] if line.split()]


@dataclass(frozen=True)
class Before:
    """What the domain looked like before the fault."""

    state: str
    xml: str
    snapshots: dict[str, list[str]]
    journals: frozenset[str]


def capture(lab: Any) -> Before:
    dom = lab.dom
    return Before(
        state=STATE_NAMES[dom.state()[0]],
        xml=dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
        snapshots={t: internal_snapshots(p) for t, p, _ in lab.disks},
        journals=frozenset(p.name for p in jobs_dir().glob("*.jsonl")),
    )


def image_ids_made(job_id: str) -> list[str]:
    """Every image id the job ever recorded (its undo later sets the fact to None)."""
    return sorted({str(ev["value"]) for ev in journal_events(job_id)
                   if ev.get("event") == "fact" and str(ev.get("key", "")).startswith("image:")
                   and ev.get("value")})


def lab_problems(lab: Any, before: Before, job_id: str | None = None, *,
                 statuses: tuple[str, ...] = ("failed",), error_contains: tuple[str, ...] = (),
                 library: Path | None = None, glance: Any = None,
                 recovered: bool | None = None) -> list[str]:
    """Everything that differs from 'as before the job' (empty list: the lab is clean)."""
    problems: list[str] = []
    dom = lab.dom
    state = STATE_NAMES.get(dom.state()[0], str(dom.state()))
    if state != before.state:
        problems.append(f"guest is {state}, was {before.state}")
    if not dom.isPersistent():
        problems.append("domain is no longer persistent")
    if dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) != before.xml:
        problems.append("inactive domain XML changed")
    if before.state in ("running", "paused") and dom.hasManagedSaveImage(0):
        problems.append("a managed save image is left")
    if dom.isActive():
        for target, _, _ in lab.disks:
            info = dom.blockJobInfo(target, 0)
            if info:
                problems.append(f"block job left on {target}: {info}")
        if dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
            problems.append(f"domain job left: {dom.jobInfo()}")
        with contextlib.suppress(libvirt.libvirtError):  # raises when there is none
            dom.backupGetXMLDesc(0)
            problems.append("backup job (NBD export) left on the domain")
    left = sorted(p.name for p in scratch_dir().iterdir())
    if left:
        problems.append(f"scratch files left: {left}")
    for target, path, _ in lab.disks:
        snaps = internal_snapshots(path)
        if snaps != before.snapshots.get(target, []):
            problems.append(f"internal snapshots on {target}: {snaps}")
    if library is not None and library.exists():
        for image in ImageLibrary(library).iter_images():
            if image.status in ("queued", "saving"):
                problems.append(f"library image {image.id} left {image.status}")
        partial = sorted(p.name for p in library.iterdir() if p.name.endswith(".partial"))
        if partial:
            problems.append(f"partial library files left: {partial}")
    if job_id is None:
        new = {p.name for p in jobs_dir().glob("*.jsonl")} - before.journals
        if new:
            problems.append(f"journal written although nothing should have started: {new}")
        return problems
    if glance is not None:
        for image_id in image_ids_made(job_id):
            try:
                image = glance.show(image_id)
            except NotFound:
                continue
            problems.append(f"glance image {image_id} left {image.status}")
    with contextlib.suppress(libvirt.libvirtError):
        dom.connect().lookupByName(f"snaptui-verify-{job_id}")
        problems.append(f"verify domain snaptui-verify-{job_id} left running")
    job = get_job(job_id)
    if job.facts.get("frozen"):
        problems.append("guest filesystems left frozen")
    terminal = [ev for ev in journal_events(job_id) if ev.get("event") in TERMINAL_EVENTS]
    if not terminal:
        problems.append("journal has no terminal event")
    else:
        last = terminal[-1]
        if last["event"] not in statuses:
            problems.append(f"job ended {last['event']} ({last.get('error')}), "
                            f"expected {'/'.join(statuses)}")
        error = last.get("error") or ""
        for text in error_contains:
            if text.lower() not in error.lower():
                problems.append(f"error {error!r} does not mention {text!r}")
        if recovered is not None and bool(last.get("recovered")) != recovered:
            problems.append(f"terminal event recovered={last.get('recovered')}, "
                            f"expected {recovered}")
    return problems


def assert_lab_clean(lab: Any, before: Before, job_id: str | None = None, **kwargs: Any) -> None:
    """The shared checker: fails with every difference from the state before the fault."""
    problems = lab_problems(lab, before, job_id, **kwargs)
    assert not problems, f"job {job_id}: " + "; ".join(problems)


def timeline(job_id: str, since: float | None = None) -> str:
    """The job's step and undo events with times relative to ``since`` (or the job's start)."""
    events = journal_events(job_id)
    t0 = since if since is not None else events[0]["t"]
    parts = []
    for ev in events:
        kind = ev["event"]
        if kind in ("job", "progress", "fact", "pid"):
            continue
        label = ev.get("step") or ev.get("text") or ev.get("error") or ""
        parts.append(f"{ev['t'] - t0:+.2f} {kind} {label}".rstrip())
    return " | ".join(parts)
