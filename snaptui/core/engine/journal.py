"""The job journal: one JSON object per line, appended before and after every step.

The journal is the single source of truth about a job: the CLI's progress display, the
dashboard's jobs panel and ``recover`` all read it. Step boundaries and facts are fsynced so a
SIGKILL loses at most a progress line.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from snaptui.core.engine.facts import Fact
from snaptui.core.engine.journal_writer import JournalWriter as JournalWriter  # re-exported
from snaptui.core.engine.states import TERMINAL, JobStatus, StepState
from snaptui.core.errors import BadInput, SnaptuiError
from snaptui.core.paths import private_dir, state_dir

log = logging.getLogger(__name__)

TERMINAL_EVENTS = tuple(str(s) for s in JobStatus if s in TERMINAL)  # their event names
# The journal's format, written in the header. A journal without one (written before formats
# were numbered) is format 1; a higher one is a newer snaptui's and is left alone.
JOURNAL_FORMAT = 1
# A job id names files (journal, log, active marker) and travels in argv: letters, digits and
# dashes only (preflight makes ``YYYYmmdd-HHMMSS-hex6``), never a path.
JOB_ID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")
# A last line without its newline is a writer mid-line for this long; older, it is torn.
TORN_AFTER_S = 2.0


class JournalError(SnaptuiError, ValueError):
    """A journal this snaptui cannot read (a newer format, or a header without a plan)."""


def check_job_id(job_id: str) -> str:
    """``job_id`` when it is one snaptui could have made; else BadInput (exit 2) in one line.
    Every job id from the operator, argv or a file name passes here before it names a file."""
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        shown = repr(job_id)[:80]
        raise BadInput(f"bad job id {shown}: a job id is letters, digits and dashes "
                       "(e.g. 20260101-120000-a1b2c3)")
    return job_id


def jobs_dir() -> Path:
    return private_dir(state_dir() / "jobs")


def journal_path(job_id: str) -> Path:
    return jobs_dir() / f"{check_job_id(job_id)}.jsonl"


_warned: set[tuple[str, str]] = set()  # (journal, what): each problem is said once a process


def _warn_once(path: Path, what: str, message: str) -> None:
    if (str(path), what) not in _warned:
        _warned.add((str(path), what))
        log.warning("journal %s: %s", path.name, message)


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """One journal line as its event, or None when it is not one (undecodable, not JSON, not
    an object)."""
    try:
        event = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return None
    return event if isinstance(event, dict) else None


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading when it is a regular file; else OSError (a FIFO would
    block its reader forever, a device is no journal). Opened non-blocking, then checked."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events of a journal. A torn last line (a crash or a full disk cut it, even
    inside a UTF-8 character) and undecodable lines are skipped, and said once (a warning)."""
    events = []
    bad = 0
    with open_regular(path) as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                # a writer mid-line, unless the line was left like this a while ago
                if time.time() - os.fstat(handle.fileno()).st_mtime > TORN_AFTER_S:
                    _warn_once(path, "torn", "ignored its torn last line (cut off by a "
                               "crash or a full disk)")
                break
            event = parse_line(raw)
            if event is None:
                bad += 1
                continue
            events.append(event)
    if bad:
        _warn_once(path, "bad", f"ignored {bad} unreadable line(s)")
    return events


@dataclass
class StepRecord:
    """How far one step has come, folded from the journal."""

    name: str
    title: str
    state: StepState = StepState.PENDING
    started: float | None = None
    finished: float | None = None
    progress: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class JobRecord:
    """A job as its journal tells it."""

    job_id: str
    path: Path
    plan: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pid: int | None = None
    started: float | None = None
    finished: float | None = None
    status: JobStatus = JobStatus.PENDING
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False
    events: int = 0
    format_error: str | None = None  # set when the journal's format is unknown (not folded)

    @property
    def domain(self) -> str:
        return str(self.plan.get("domain_name") or self.request.get("domain", "?"))

    @property
    def mode(self) -> str:
        return str(self.plan.get("mode", "?"))

    @property
    def kind(self) -> str:
        """The job's kind (core/engine/job_kinds.py): ``snapshot`` when its plan names none."""
        return str(self.plan.get("kind") or "snapshot")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.name == name), None)

    def check_format(self) -> None:
        """Raise the one-line JournalError when this journal could not be read."""
        if self.format_error:
            raise JournalError(self.format_error)

    @property
    def undo_failed(self) -> bool:
        return any(s.state == StepState.UNDO_FAILED for s in self.steps)

    @property
    def current_step(self) -> StepRecord | None:
        running = [s for s in self.steps if s.state in (StepState.RUNNING, StepState.UNDOING)]
        return running[-1] if running else None

    @property
    def downtime_s(self) -> float | None:
        if "downtime_s" in self.result:
            return _number(self.result["downtime_s"])
        stopped = _number(self.facts.get(Fact.GUEST_STOPPED_AT))
        if stopped is None:
            return None
        resumed = _number(self.facts.get(Fact.GUEST_RESUMED_AT)) or self.finished or time.time()
        return max(0.0, resumed - stopped)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "domain": self.domain,
            "mode": self.mode,
            "status": self.status,
            "pid": self.pid,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "recovered": self.recovered,
            "downtime_s": self.downtime_s,
            "image_name": self.request.get("name"),
            "steps": [
                {"name": s.name, "title": s.title, "state": s.state, "error": s.error}
                for s in self.steps
            ],
            "result": self.result,
        }


def format_problem(job_id: str, header: dict[str, Any]) -> str | None:
    """Why a journal header cannot be read by this snaptui, or None when it can."""
    version = header.get("format", 1)
    if type(version) is int and 1 <= version <= JOURNAL_FORMAT:
        return None
    return (f"the journal of job {job_id} has format {version!r}, this snaptui reads formats "
            f"1 to {JOURNAL_FORMAT}; use the snaptui that started the job")


def _number(value: Any) -> float | None:
    """A finite number from an event, or None (events may come from another host)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# A progress event's numbers, and the largest each may be (an ETA past this is no ETA).
PROGRESS_BOUNDS = {"done": 2.0 ** 63, "total": 2.0 ** 63, "read": 2.0 ** 63, "rate": 2.0 ** 63,
                   "eta_s": 1e9}


def _progress(ev: dict[str, Any]) -> dict[str, Any]:
    """A progress event's fields; a number out of range or of the wrong type is left out."""
    progress = {}
    for key, value in ev.items():
        if key in ("event", "step"):
            continue
        if key in PROGRESS_BOUNDS:
            number = _number(value)
            if number is None or not 0 <= number <= PROGRESS_BOUNDS[key]:
                continue
        elif key == "unit" and not isinstance(value, str):
            continue
        progress[key] = value
    return progress


def fold(job_id: str, path: Path, events: list[dict[str, Any]]) -> JobRecord:
    """Replay events into a JobRecord; an unknown format stops at the header (format_error).
    Any event is taken without raising (a remote host's or a damaged journal's): a field of
    the wrong type counts as missing."""
    job = JobRecord(job_id=job_id, path=path, events=len(events))
    for ev in events:
        if not isinstance(ev, dict):
            continue
        kind = ev.get("event")
        t = _number(ev.get("t"))
        step = job.step(str(ev.get("step"))) if "step" in ev else None
        if kind == "job":
            job.format_error = format_problem(job_id, ev)
            if job.format_error:
                job.error = job.format_error
                return job
            job.plan = _dict(ev.get("plan"))
            job.request = _dict(ev.get("request"))
            steps = ev.get("steps")
            job.steps = [StepRecord(str(s.get("name", "?")), str(s.get("title") or s.get("name")))
                         for s in (steps if isinstance(steps, list) else [])
                         if isinstance(s, dict)]
            job.started = t
            job.status = JobStatus.PENDING
        elif kind == "pid":
            pid = ev.get("pid")
            job.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 \
                else None
            job.status = JobStatus.RUNNING
        elif kind == "fact" and isinstance(ev.get("key"), str):
            job.facts[ev["key"]] = ev.get("value")
        elif kind == "note":
            job.notes.append(str(ev.get("text", "")))
        elif step is not None and kind == "step_started":
            step.state, step.started = StepState.RUNNING, t
        elif step is not None and kind == "progress":
            step.progress = _progress(ev)
        elif step is not None and kind == "step_finished":
            step.state, step.finished = StepState.DONE, t
        elif step is not None and kind == "step_failed":
            step.state, step.finished, step.error = StepState.FAILED, t, _text(ev.get("error"))
        elif step is not None and kind == "undo_started":
            step.state = StepState.UNDOING
        elif step is not None and kind == "step_undone":
            step.state = StepState.UNDONE
        elif step is not None and kind == "undo_failed":
            step.state, step.error = StepState.UNDO_FAILED, _text(ev.get("error"))
        elif kind == "recovering":
            job.recovered = True
        elif kind in TERMINAL_EVENTS:
            job.status, job.finished = JobStatus(kind), t
            job.error = _text(ev.get("error"))
            job.result = {k: v for k, v in ev.items() if k not in ("t", "event")}
    return job


def load_job(job_id: str) -> JobRecord:
    path = journal_path(job_id)
    return fold(job_id, path, read_events(path))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def iter_jobs() -> Iterator[JobRecord]:
    """Every job in the journal directory, newest first; a file that is not a job's journal
    (a name no job has, a directory, unreadable) is skipped and said once."""
    paths = sorted(jobs_dir().glob("*.jsonl"), key=_mtime, reverse=True)
    for path in paths:
        if not JOB_ID_RE.fullmatch(path.stem):
            _warn_once(path, "name", "skipped: not named like a job")
            continue
        try:
            events = read_events(path)
        except OSError as err:
            _warn_once(path, "unreadable", f"skipped: {err.strerror or err}")
            continue
        yield fold(path.stem, path, events)
