"""CPU and I/O priority of a job process (``--priority normal|low|idle``).

A job shares its host with other people's guests and with the dashboard: by default (``low``)
it runs at nice 10 and best-effort I/O level 7, ``idle`` at nice 19 and the idle I/O class
(it gets the disk only when nobody else wants it), ``normal`` leaves both as they are.

The job process is started at it (``spawn_prefix``: its argv goes through ``ionice`` and
``nice``, which set the priority and exec it, so not even Python's start-up runs at the
launcher's priority), and applies it again itself before it starts anything, so every child
(qemu-img, the upload's threads) inherits it. On Linux both nice and the I/O priority belong
to a thread, not a process, so every thread that already exists gets it too. In the job the
I/O priority is set with psutil (already a dependency of openstacksdk), which calls
ioprio_set(2) itself: no architecture-specific syscall numbers here.
A priority is only ever lowered: a process already nicer than asked keeps its own.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

PRIORITIES = ("normal", "low", "idle")
DEFAULT_PRIORITY = "low"


@dataclass(frozen=True)
class PriorityLevel:
    """What one ``--priority`` choice means: a nice value and an I/O class (and level)."""

    nice: int | None  # None: unchanged
    io_class: int | None  # psutil.IOPRIO_CLASS_*; None: unchanged
    io_level: int = 0


LEVELS = {
    "normal": PriorityLevel(None, None),
    "low": PriorityLevel(10, psutil.IOPRIO_CLASS_BE, 7),
    "idle": PriorityLevel(19, psutil.IOPRIO_CLASS_IDLE),
}


def _threads() -> list[int]:
    try:
        return sorted(int(tid) for tid in os.listdir("/proc/self/task"))
    except OSError:
        return [os.getpid()]


def _lower_io(tid: int, level: PriorityLevel) -> None:
    proc = psutil.Process(tid)
    current = proc.ionice()
    io_class, io_level = int(current.ioclass), int(current.value)
    if io_class == psutil.IOPRIO_CLASS_IDLE:
        return  # already the lowest class
    if (level.io_class == psutil.IOPRIO_CLASS_BE and io_class == psutil.IOPRIO_CLASS_BE
            and io_level >= level.io_level):
        return
    if level.io_class == psutil.IOPRIO_CLASS_IDLE:
        proc.ionice(psutil.IOPRIO_CLASS_IDLE)
    else:
        proc.ionice(level.io_class, level.io_level)


def apply_priority(choice: str, tids: list[int] | None = None) -> str:
    """Lower this process's (every thread's, or only ``tids``') CPU and I/O priority as
    ``choice`` says; returns what was done, for the job's journal. Failures are logged, never
    fatal: a job that cannot be made nicer still runs."""
    level = LEVELS.get(choice)
    if level is None:
        raise ValueError(f"unknown priority {choice!r} (one of {', '.join(PRIORITIES)})")
    if level.nice is None and level.io_class is None:
        return "priority normal (unchanged)"
    for tid in tids if tids is not None else _threads():
        try:
            if level.nice is not None and os.getpriority(os.PRIO_PROCESS, tid) < level.nice:
                os.setpriority(os.PRIO_PROCESS, tid, level.nice)
            if level.io_class is not None:
                _lower_io(tid, level)
        except (OSError, psutil.Error) as err:
            if Path(f"/proc/self/task/{tid}").exists():  # a thread that ended is no matter
                log.warning("could not lower the priority of thread %s: %s", tid, err)
    io = "idle I/O" if level.io_class == psutil.IOPRIO_CLASS_IDLE else \
        f"best-effort I/O level {level.io_level}"
    nice = os.getpriority(os.PRIO_PROCESS, (tids or [0])[0])
    return f"priority {choice}: nice {nice}, {io}"


def spawn_prefix(choice: str) -> list[str]:
    """argv words (``ionice``, ``nice``: they set the priority, then exec the rest) that start
    a child already at ``choice``'s priority, so none of its start-up runs at ours. Only ever
    lower: what this process already is, the child inherits and keeps. Empty when the tools
    are missing (the child then lowers itself with ``apply_priority``, as before)."""
    level = LEVELS.get(choice)
    if level is None:
        raise ValueError(f"unknown priority {choice!r} (one of {', '.join(PRIORITIES)})")
    words: list[str] = []
    ionice, nice = shutil.which("ionice"), shutil.which("nice")
    if level.io_class is not None and ionice and _io_would_lower(level):
        if level.io_class == psutil.IOPRIO_CLASS_IDLE:
            words += [ionice, "-c", "3"]
        else:
            words += [ionice, "-c", str(level.io_class), "-n", str(level.io_level)]
    if level.nice is not None and nice:
        raise_by = level.nice - os.getpriority(os.PRIO_PROCESS, 0)
        if raise_by > 0:
            words += [nice, "-n", str(raise_by)]
    return words


def _io_would_lower(level: PriorityLevel) -> bool:
    try:
        current = psutil.Process().ionice()
    except psutil.Error:
        return True
    io_class, io_level = int(current.ioclass), int(current.value)
    if io_class == psutil.IOPRIO_CLASS_IDLE:
        return False
    return not (level.io_class == psutil.IOPRIO_CLASS_BE and io_class == psutil.IOPRIO_CLASS_BE
                and io_level >= level.io_level)
