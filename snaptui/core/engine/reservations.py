"""Host-wide limit on concurrent jobs, and their scratch space reserved together.

Preflight ends by reserving the job's peak scratch need in one file under the state dir,
under an exclusive ``fcntl`` lock: the space check and the reservation are one step, so two
jobs never both pass the check for the same free space. A job's claim on the free space is
what it reserved minus what its scratch files already hold (that part is no longer free).

A reservation counts while its job lives: before launch, while the process that reserved it
(the CLI or the dashboard) runs; once launched, while the job is not terminal and its process
(``job_main JOB_ID``, or an inline job of this process) runs. The job releases it when it ends;
one left by a killed job is ignored, and dropped the next time the file is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from snaptui.core.engine.job_processes import job_processes
from snaptui.core.engine.journal import JOB_ID_RE, journal_path, load_job
from snaptui.core.engine.liveness import pid_runs_job
from snaptui.core.errors import BadInput, SnaptuiError
from snaptui.core.paths import private_dir, state_dir, sync_dir
from snaptui.core.present import size_text
from snaptui.core.settings import MAX_CONCURRENT_KEY, config_path, max_concurrent_jobs

log = logging.getLogger(__name__)

RESERVATIONS = "reservations.json"
# A launched job whose process has not yet shown up (between the journal's header and the
# spawn) still counts this long after the journal was last written, while its launcher runs.
LAUNCH_GRACE_S = 30.0


def _path() -> Path:
    return private_dir(state_dir()) / RESERVATIONS


@contextlib.contextmanager
def _locked() -> Iterator[dict[str, dict[str, Any]]]:
    """The reservations, read and written back under the host-wide lock."""
    path = _path()
    lock_fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            entries = {}
        if not isinstance(entries, dict):
            entries = {}
        before = json.dumps(entries, sort_keys=True)
        yield entries
        if json.dumps(entries, sort_keys=True) != before:
            tmp = path.with_name(f".{RESERVATIONS}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(entries, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
            sync_dir(path.parent)
    finally:
        os.close(lock_fd)  # releases the flock


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _job_processes() -> set[str]:
    """Job ids of the running job processes (core/engine/job_processes.py)."""
    return {found.job_id for found in job_processes()}


def _live(job_id: str, entry: dict[str, Any], job_processes: set[str]) -> bool:
    if not JOB_ID_RE.fullmatch(job_id):
        return False  # no job of ours is named so: drop the entry
    launcher_runs = bool(entry.get("pid")) and _start_time(entry["pid"]) == entry.get("start")
    journal = journal_path(job_id)
    if not journal.exists():
        return launcher_runs or job_id in job_processes
    try:
        job = load_job(job_id)
    except (OSError, SnaptuiError, ValueError):
        return False
    if job.terminal:
        return False
    if job_id in job_processes or pid_runs_job(job.pid, job_id):
        return True
    try:
        quiet_s = time.time() - journal.stat().st_mtime
    except OSError:
        return False
    return job.pid is None and launcher_runs and quiet_s < LAUNCH_GRACE_S


def _used(job_id: str, entry: dict[str, Any]) -> int:
    """Bytes the job's scratch files (named after it) already take."""
    used = 0
    for path in Path(entry.get("dir", "")).glob(f"{job_id}*"):
        files = path.rglob("*") if path.is_dir() else [path]
        for one in files:
            with contextlib.suppress(OSError):
                if one.is_file():
                    used += one.stat().st_blocks * 512
    return used


def reserve(job_id: str, domain: str, scratch: Path, needed: int,
            limit: int | None = None, *, hold: bool = True) -> None:
    """Check the host's job limit and the scratch space left by the other live jobs, and
    reserve ``needed`` bytes of ``scratch`` for ``job_id`` (with ``hold`` False, only check:
    a dry run); one BadInput line when over the limit or short of space (nothing reserved)."""
    limit = max_concurrent_jobs() if limit is None else limit
    device = os.stat(scratch).st_dev
    with _locked() as entries:
        processes = _job_processes()
        for other in [j for j, e in entries.items() if not _live(j, e, processes)]:
            del entries[other]  # its job ended or died: the space is free again
        others = {j: e for j, e in entries.items() if j != job_id}
        if len(others) >= limit:
            running = ", ".join(f"{j} ({e.get('domain', '?')})" for j, e in sorted(others.items()))
            jobs = f"{len(others)} snapshot job" + ("s" if len(others) != 1 else "")
            raise BadInput(f"{jobs} already running on this host ({running}); the limit is "
                           f"{MAX_CONCURRENT_KEY} = {limit} in {config_path()}")
        claimed = {j: max(0, int(e.get("bytes", 0)) - _used(j, e))
                   for j, e in others.items() if e.get("dev") == device}
        free = shutil.disk_usage(scratch).free
        if needed > free - sum(claimed.values()):
            held = ", ".join(f"{j} {size_text(n)}" for j, n in sorted(claimed.items()) if n)
            raise BadInput(f"not enough space in {scratch} for the extracted image: need "
                           f"{size_text(needed)}, {size_text(free)} free"
                           + (f" of which running jobs reserved {held}" if held else ""))
        if not hold:
            return
        entries[job_id] = {"domain": domain, "bytes": needed, "dir": str(scratch),
                           "dev": device, "pid": os.getpid(),
                           "start": _start_time(os.getpid()), "t": round(time.time(), 3)}


def release(job_id: str) -> None:
    """Drop the job's reservation (its end, or a dry run's preflight). On a full disk it
    stays in the file, where it counts no more once its job has ended."""
    try:
        with _locked() as entries:
            entries.pop(job_id, None)
    except OSError as err:
        log.warning("could not release the scratch reservation of job %s: %s", job_id,
                    err.strerror or err)


def reserved() -> dict[str, dict[str, Any]]:
    """The live reservations by job id (for ``snaptui jobs`` and tests)."""
    with _locked() as entries:
        processes = _job_processes()
        return {j: dict(e) for j, e in entries.items() if _live(j, e, processes)}
