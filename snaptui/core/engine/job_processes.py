"""The one place that knows what a job process looks like on this host.

A detached job runs as ``python -m snaptui.core.engine.job_main JOB_ID`` in a session of its
own. Reservations, cleanup, liveness and recover all ask this module which processes those are,
read from ``/proc`` (argv, uids); none of them spells the module name or scans ``/proc`` itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from snaptui.core.engine.journal import JOB_ID_RE

JOB_MAIN_MODULE = "snaptui.core.engine.job_main"
PROC = Path("/proc")


def job_main_argv(job_id: str, *extra: str) -> list[str]:
    """The argv that starts the process of job ``job_id`` with this Python."""
    return [sys.executable, "-m", JOB_MAIN_MODULE, job_id, *extra]


def cmdline(pid: int) -> list[bytes]:
    """``pid``'s argv ([] when it is gone or unreadable)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return raw.rstrip(b"\0").split(b"\0") if raw else []


def runs_as_us(pid: int) -> bool:
    """The process's real, effective, saved and filesystem uids are all ours: anything else
    (another local user) chooses its own argv and environment, so names nothing of ours."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return set(line.split()[1:]) == {str(os.geteuid())}
    return False


def environ(pid: int) -> dict[bytes, bytes]:
    """``pid``'s environment ({} when unreadable)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)


@dataclass(frozen=True)
class JobProcessInfo:
    job_id: str
    pid: int


def job_process_of(pid: int) -> JobProcessInfo | None:
    """The job ``pid`` runs, when it is a job process (its argv names a valid job id)."""
    argv = cmdline(pid)
    module = JOB_MAIN_MODULE.encode()
    if module not in argv:
        return None
    at = argv.index(module) + 1
    if at >= len(argv):
        return None
    job_id = argv[at].decode(errors="replace")
    return JobProcessInfo(job_id, pid) if JOB_ID_RE.fullmatch(job_id) else None


def job_processes(*, ours_only: bool = False) -> Iterator[JobProcessInfo]:
    """Every running job process on this host (``ours_only``: run by this uid alone)."""
    for proc in PROC.glob("[0-9]*"):
        with contextlib.suppress(ValueError):
            pid = int(proc.name)
            found = job_process_of(pid)
            if found is not None and (not ours_only or runs_as_us(pid)):
                yield found


def pid_names_job(pid: int, job_id: str) -> bool:
    """``pid`` is alive and its argv names ``job_id`` (the job's process, or one it left)."""
    return any(job_id.encode() in word for word in cmdline(pid))


def session_members(leader: int) -> Iterator[int]:
    """Processes (other than this one) in the session ``leader`` started."""
    for proc in PROC.glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(proc.name)
            if pid != os.getpid() and os.getsid(pid) == leader:
                yield pid
