"""The states a step and a job go through, and how every front end shows them.

Both are ``StrEnum``: the journal keeps the same plain strings it always had, and a state read
back from an older journal compares equal to its member. ``LOOK`` is the one table of glyph and
colour (a Rich style string, no Rich import needed) used by the CLI and the dashboard alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from snaptui.core.present import duration_text, size_text


class StepState(StrEnum):
    """How far one step has come (folded from the journal)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    UNDOING = "undoing"
    UNDONE = "undone"
    UNDO_FAILED = "undo-failed"


class JobStatus(StrEnum):
    """Where a job stands. The terminal ones are also the names of their journal events."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
    LOST = "lost"  # never journaled: shown while a job's process is gone and not yet recovered

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED,
                      JobStatus.ABANDONED})


# state -> (glyph, Rich style); a state missing here (a newer journal's) shows as UNKNOWN.
LOOK: dict[str, tuple[str, str]] = {
    StepState.PENDING: ("·", "dim"),
    StepState.RUNNING: ("▶", "bold"),
    StepState.DONE: ("✔", "green"),
    StepState.FAILED: ("✘", "bold red"),
    StepState.UNDOING: ("↺", "yellow"),
    StepState.UNDONE: ("↩", "yellow"),
    StepState.UNDO_FAILED: ("‼", "bold red"),
    JobStatus.CANCELLED: ("↩", "yellow"),
    JobStatus.ABANDONED: ("?", "red"),
    JobStatus.LOST: ("?", "red"),
}
UNKNOWN = ("?", "")


def look(state: str) -> tuple[str, str]:
    """(glyph, style) of a step state or job status."""
    return LOOK.get(state, UNKNOWN)


def progress_text(p: Mapping[str, Any]) -> str:
    """A step's progress for people, the same in the CLI and the dashboard:
    '45.0 %' or '1.2 GiB / 4.0 GiB · 98.0 MiB/s · ETA 30.0 s'."""
    done, total, unit = p.get("done") or 0, p.get("total"), p.get("unit")
    if unit == "%":
        text = f"{done:.1f} %"
    elif unit == "s":  # a wait with a deadline (the verify boot)
        text = f"{done:.0f} s" + (f" of {total:.0f} s" if total else "")
    else:
        text = size_text(done)
        if total:
            text += f" / {size_text(total)}"
        if p.get("read") is not None:  # a streamed disk: sent of total, and read over NBD
            text += f" sent, {size_text(p['read'])} read"
    if p.get("rate"):
        text += f" · {size_text(p['rate'])}/s"
    if p.get("eta_s") is not None:
        text += f" · ETA {duration_text(p['eta_s'])}"
    return text
