"""One workflow per domain at a time, across processes: a flock held by the job process.

The kernel drops the lock when the holder dies, so a crashed job never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from snaptui.core.errors import DomainBusy
from snaptui.core.paths import private_dir, state_dir


def _lock_path(domain_uuid: str) -> Path:
    return private_dir(state_dir() / "locks") / f"domain-{domain_uuid}.lock"


def parse_holder(holder: str) -> tuple[str | None, str]:
    """A lock file's line as (the holder's job kind, "job ID pid N"); no kind in a line an
    older snaptui wrote."""
    kind, sep, rest = holder.partition(": ")
    if sep and kind.isidentifier():
        return kind, rest
    return None, holder


def busy_message(domain_name: str, holder: str | None) -> str:
    """Why a job cannot start on the domain: who holds its lock, and of which kind."""
    kind, who = parse_holder(holder or "")
    job = f"{kind} job" if kind else "job"
    return (f"{domain_name or 'the domain'} already has a {job} running "
            f"({who or 'another process'})")


def locked_by(domain_name: str, domain_uuid: str) -> str | None:
    """Why the domain's files are not touched now: a job of some kind holds its lock (None
    when it is free)."""
    holder = domain_lock_holder(domain_uuid)
    if not holder:
        return None
    kind, who = parse_holder(holder)
    return f"{domain_name} is locked by a {kind or 'running'} job ({who})"


class DomainLock:
    """Exclusive, non-blocking lock on one domain; the file holds the owner's job kind and id
    (``snapshot: job ID pid N``), for the message of a refused job."""

    def __init__(self, domain_uuid: str, owner: str, kind: str = "snapshot"):
        self.path = _lock_path(domain_uuid)
        self.owner = owner
        self.kind = kind
        self._fd: int | None = None

    def acquire(self, domain_name: str = "") -> DomainLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise DomainBusy(busy_message(domain_name, holder)) from None
        try:  # who holds it, for the message of a refused job; a full disk leaves it unsaid
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{self.kind}: job {self.owner} pid {os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DomainLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def domain_lock_holder(domain_uuid: str) -> str | None:
    """Who holds the domain's lock right now (None when free)."""
    path = _lock_path(domain_uuid)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
