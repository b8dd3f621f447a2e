"""What ``schedule list|pause|resume`` and the dashboard's Schedules screen share: each
schedule's row (next run from ``systemd-analyze calendar``, last run and its result, running
or not), pausing and resuming, and starting ``schedule run NAME`` detached.

A run holds ``<state>/schedules/NAME.running`` locked (flock) while it runs: a second run of
the same schedule is refused, and "running" is the lock being held, so a run that died leaves
nothing that says it still runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from snaptui.core.errors import BadInput, SnaptuiError
from snaptui.core.keep import schedules, systemd_units
from snaptui.core.keep.schedules import check_name


@dataclass
class ScheduleRow:
    """One schedule as ``schedule list`` shows it."""

    name: str
    on: str = ""
    paused: bool = False
    guests: list[str] = field(default_factory=list)
    keep: str = ""
    verify: str = ""  # "each new image", "stale after 7d (budget 1h)", both, or ""
    next: str | None = None  # systemd-analyze's "Next elapse"; None: paused or never
    last_run: str | None = None  # when the last run started (ISO, UTC)
    last_result: str | None = None  # ok | N of M failed | prune failed | paused
    timer: str | None = None  # its timer unit's path, when written
    running: str | None = None  # when the run going on now started
    problem: str | None = None  # why its definition does not load

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def row(name: str) -> ScheduleRow:
    """The schedule's row; a definition that does not load is a row with its ``problem``."""
    timer = systemd_units.unit_dir() / systemd_units.unit_names(name)[0]
    last = schedules.last_run(name) or {}
    found = ScheduleRow(name, last_run=last.get("started"), last_result=last.get("result"),
                        timer=str(timer) if timer.exists() else None, running=running(name))
    try:
        schedule = schedules.load(name)
    except (SnaptuiError, OSError) as err:
        found.problem = " ".join(str(err).split())
        return found
    found.on, found.paused = schedule.on, schedule.paused
    found.guests = ["--all", *(f"--exclude {x}" for x in schedule.exclude)] \
        if schedule.all_domains else list(schedule.domains)
    found.keep = schedule.rules.text() if schedule.keep else ""
    found.verify = verify_text(schedule)
    if not schedule.paused:
        try:
            found.next = systemd_units.check_calendar(schedule.on).next_elapse
        except SnaptuiError:
            found.next = None
    return found


def verify_text(schedule: schedules.Schedule) -> str:
    """What a schedule verifies: each new image (``--verify``), stale ones (``--verify-stale``)."""
    parts = ["each new image"] if schedule.verify else []
    if schedule.verify_stale:
        budget = f" (budget {schedule.verify_budget})" if schedule.verify_budget else ""
        parts.append(f"stale after {schedule.verify_stale}{budget}")
    return ", ".join(parts)


def rows() -> list[ScheduleRow]:
    return [row(name) for name in schedules.names()]


def set_paused(name: str, paused: bool, *, user: bool = False) -> None:
    """Pause (or resume) the schedule: its TOML says so (``schedule run`` then runs nothing),
    and its timer is disabled (enabled) where systemd runs."""
    schedule = schedules.load(name)
    schedule.paused = paused
    schedules.save(schedule)
    timer = systemd_units.unit_names(name)[0]
    if systemd_units.systemd_running() and (systemd_units.unit_dir(user) / timer).exists():
        systemd_units.systemctl("disable" if paused else "enable", "--now", timer, user=user)


# -- a run in progress --------------------------------------------------------------------------


def _marker(name: str) -> str:
    return str(schedules.runs_dir() / f"{check_name(name)}.running")


@contextmanager
def run_lock(name: str) -> Iterator[None]:
    """Held for the whole of a run; BadInput when another run of ``name`` holds it."""
    fd = os.open(_marker(name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(f"schedule {name} is running already (started "
                           f"{running(name) or '?'})") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "started": datetime.now(UTC).isoformat(
            timespec="seconds")}).encode())
        yield
    finally:
        os.close(fd)  # the lock goes with it


def running(name: str) -> str | None:
    """When the run of ``name`` going on now started; None when none runs."""
    try:
        fd = os.open(_marker(name), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
                return str(json.loads(text).get("started") or "?")
            except (OSError, ValueError, AttributeError):
                return "?"
        return None
    finally:
        os.close(fd)


def log_path(name: str) -> str:
    """Where a run started by ``start_detached`` writes its lines."""
    return str(schedules.runs_dir() / f"{check_name(name)}.log")


def start_detached(name: str) -> int:
    """Start ``snaptui schedule run NAME`` as its timer would: its own session, no terminal,
    its lines appended to ``log_path(name)``; its pid. The run records its result for
    ``schedule list`` as every run does."""
    from snaptui.core.keep.schedule_run import snaptui_command

    schedules.load(name)  # NotFound / BadInput here, not in a process nobody watches
    if running(name):
        raise BadInput(f"schedule {name} is running already")
    fd = os.open(log_path(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log: IO[bytes] = os.fdopen(fd, "ab")
    try:
        proc = subprocess.Popen(  # noqa: S603 - an argv list, no shell
            [*snaptui_command(), "schedule", "run", name], stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, start_new_session=True, close_fds=True)
    finally:
        log.close()
    # Reaped by a thread, so a finished run leaves no zombie behind in a long-lived dashboard.
    threading.Thread(target=proc.wait, name=f"schedule-{name}", daemon=True).start()
    return proc.pid
