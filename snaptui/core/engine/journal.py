"""The job journal: one JSON object per line, appended before and after every step.

The journal is the single source of truth about a job: the CLI's progress display, the
dashboard's jobs panel and ``recover`` all read it. Step boundaries and facts are fsynced so a
SIGKILL loses at most a progress line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snaptui.core.paths import private_dir, state_dir

TERMINAL_EVENTS = ("done", "failed", "cancelled", "abandoned")


def jobs_dir() -> Path:
    return private_dir(state_dir() / "jobs")


def journal_path(job_id: str) -> Path:
    return jobs_dir() / f"{job_id}.jsonl"


class JournalWriter:
    """Appends events to one job's journal; thread-safe (progress comes from worker threads)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def append(self, event: str, *, sync: bool = True, **fields: Any) -> dict[str, Any]:
        record = {"t": round(time.time(), 3), "event": event, **fields}
        line = json.dumps(record, default=str, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
        return record

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events of a journal (a torn last line from a crash is ignored)."""
    events = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


@dataclass
class StepState:
    """How far one step has come, folded from the journal."""

    name: str
    title: str
    state: str = "pending"  # pending | running | done | failed | undoing | undone | undo-failed
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
    steps: list[StepState] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pid: int | None = None
    started: float | None = None
    finished: float | None = None
    status: str = "pending"  # pending | running | done | failed | cancelled | abandoned
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False
    events: int = 0

    @property
    def domain(self) -> str:
        return str(self.plan.get("domain_name") or self.request.get("domain", "?"))

    @property
    def mode(self) -> str:
        return str(self.plan.get("mode", "?"))

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_EVENTS

    def step(self, name: str) -> StepState | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def current_step(self) -> StepState | None:
        running = [s for s in self.steps if s.state in ("running", "undoing")]
        return running[-1] if running else None

    @property
    def downtime_s(self) -> float | None:
        if "downtime_s" in self.result:
            return self.result["downtime_s"]
        stopped = self.facts.get("guest_stopped_at")
        if stopped is None:
            return None
        resumed = self.facts.get("guest_resumed_at") or self.finished or time.time()
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


def fold(job_id: str, path: Path, events: list[dict[str, Any]]) -> JobRecord:
    """Replay events into a JobRecord."""
    job = JobRecord(job_id=job_id, path=path, events=len(events))
    for ev in events:
        kind = ev.get("event")
        step = job.step(ev.get("step", "")) if "step" in ev else None
        if kind == "job":
            job.plan = ev.get("plan", {})
            job.request = ev.get("request", {})
            job.steps = [StepState(s["name"], s["title"]) for s in ev.get("steps", [])]
            job.started = ev["t"]
            job.status = "pending"
        elif kind == "pid":
            job.pid = ev.get("pid")
            job.status = "running"
        elif kind == "fact":
            job.facts[ev["key"]] = ev.get("value")
        elif kind == "note":
            job.notes.append(ev.get("text", ""))
        elif step is not None and kind == "step_started":
            step.state, step.started = "running", ev["t"]
        elif step is not None and kind == "progress":
            step.progress = {k: v for k, v in ev.items() if k not in ("event", "step")}
        elif step is not None and kind == "step_finished":
            step.state, step.finished = "done", ev["t"]
        elif step is not None and kind == "step_failed":
            step.state, step.finished, step.error = "failed", ev["t"], ev.get("error")
        elif step is not None and kind == "undo_started":
            step.state = "undoing"
        elif step is not None and kind == "step_undone":
            step.state = "undone"
        elif step is not None and kind == "undo_failed":
            step.state, step.error = "undo-failed", ev.get("error")
        elif kind == "recovering":
            job.recovered = True
        elif kind in TERMINAL_EVENTS:
            job.status, job.finished = kind, ev["t"]
            job.error = ev.get("error")
            job.result = {k: v for k, v in ev.items() if k not in ("t", "event")}
    return job


def load_job(job_id: str) -> JobRecord:
    path = journal_path(job_id)
    return fold(job_id, path, read_events(path))


def iter_jobs() -> Iterator[JobRecord]:
    """Every job in the journal directory, newest first."""
    paths = sorted(jobs_dir().glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in paths:
        yield fold(path.stem, path, read_events(path))
