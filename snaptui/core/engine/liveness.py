"""Which jobs are still alive: active markers, the job's process, and the jobs run inline.

Kept apart from ``jobs`` (start, follow, cancel) and ``recover`` (undo dead jobs) so that each
of those can use it without importing the other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from snaptui.core.engine.job_processes import pid_names_job
from snaptui.core.engine.journal import JournalWriter, check_job_id, jobs_dir, load_job
from snaptui.core.paths import private_dir, sync_dir

if TYPE_CHECKING:
    from snaptui.core.engine.context import JobContext

INLINE: dict[str, JobContext] = {}  # jobs running in a thread of this process (demo lab)


def active_dir() -> Path:
    """One marker file per job not yet finished; recover looks only here."""
    return private_dir(jobs_dir() / "active")


def mark_active(job_id: str) -> None:
    (active_dir() / check_job_id(job_id)).touch(mode=0o600)
    sync_dir(active_dir())  # after a power cut, recover must still find the job


def clear_active(job_id: str) -> None:
    (active_dir() / check_job_id(job_id)).unlink(missing_ok=True)


def close_job(job_id: str, journal: JournalWriter) -> None:
    """The job reached its end: close the journal; drop its active marker unless an undo
    failed (then ``recover`` retries that undo later, e.g. once Glance answers again) or its
    end could not be written (a full disk: ``recover`` ends it)."""
    journal.close()
    job = load_job(job_id)
    if job.terminal and not job.undo_failed:
        clear_active(job_id)
    INLINE.pop(job_id, None)


def pid_runs_job(pid: int | None, job_id: str) -> bool:
    """True when ``pid`` is alive and is the process of that job (or this process, inline)."""
    if not pid:
        return False
    if pid == os.getpid():
        return job_id in INLINE
    return pid_names_job(pid, job_id)
