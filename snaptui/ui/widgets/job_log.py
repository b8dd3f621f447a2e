"""A job's log in a modal: its journal events in words, then the job process's ``.log`` file."""

from __future__ import annotations

import json
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Log, Static
from textual.worker import Worker, WorkerState

from snaptui.core.engine.journal import jobs_dir, journal_path, read_events
from snaptui.core.present import clock_text
from snaptui.ui.worker_failures import ForwardsWorkerFailures, failure_text

SKIP = {"t", "event", "step"}


def describe_event(event: dict[str, Any]) -> str:
    """One readable line for a journal event (progress lines are summarised, not dumped)."""
    stamp = clock_text(event.get("t", 0))
    kind = event.get("event", "?")
    step = f" [{event['step']}]" if event.get("step") else ""
    if kind == "job":
        titles = ", ".join(s.get("title", s.get("name", "?")) for s in event.get("steps", []))
        plan = event.get("plan", {})
        return (f"{stamp} job {event.get('job_id', '')}: {plan.get('domain_name', '?')} "
                f"mode {plan.get('mode', '?')} -> {plan.get('destination', '?')}; steps: {titles}")
    if kind == "note":
        return f"{stamp} note{step}: {event.get('text', '')}"
    if kind == "fact":
        return f"{stamp} fact {event.get('key')} = {json.dumps(event.get('value'), default=str)}"
    rest = {k: v for k, v in event.items() if k not in SKIP}
    if kind in ("done", "failed", "cancelled", "abandoned"):
        rest.pop("images", None)
    details = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in rest.items())
    return f"{stamp} {kind}{step} {details}".rstrip()


def log_lines(job_id: str) -> list[str]:
    """The journal in words (consecutive progress lines of a step folded to the last one)."""
    lines: list[str] = []
    last_progress: str | None = None
    try:
        events = read_events(journal_path(job_id))
    except OSError as err:
        events = []
        lines.append(f"(journal unreadable: {err.strerror or err})")
    for event in events:
        if event.get("event") == "progress":
            last_progress = describe_event(event)
            continue
        if last_progress:
            lines.append(last_progress)
            last_progress = None
        lines.append(describe_event(event))
    if last_progress:
        lines.append(last_progress)
    log_path = jobs_dir() / f"{job_id}.log"
    if log_path.exists():
        lines.append("")
        lines.append(f"--- {log_path} ---")
        try:
            lines += log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            lines.append(f"(unreadable: {err.strerror or err})")
    return lines


class JobLogScreen(ForwardsWorkerFailures, ModalScreen[None]):
    """Shows a job's journal events and process log; Esc, `l` or `q` closes it."""

    DEFAULT_CSS = """
    JobLogScreen { align: center middle; background: $background 60%; }
    JobLogScreen > #log-box {
        width: 100%; height: 100%; border: thick $primary; background: $surface;
    }
    JobLogScreen #log-help { color: $text-muted; height: 1; }
    JobLogScreen Log { height: 1fr; }
    """

    BINDINGS = [Binding("escape,l,q", "close", "Close", id="job_log.close")]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id

    def compose(self) -> ComposeResult:
        with Vertical(id="log-box") as box:
            box.border_title = f"Log of job {self.job_id}"
            yield Log(id="log", highlight=False, auto_scroll=True)
            yield Static("Esc close  ↑↓ PgUp PgDn scroll", id="log-help")

    def on_mount(self) -> None:
        self.query_one(Log).focus()
        self.load()

    @work(thread=True, exclusive=True, group="job-log", description="read the job's log",
          exit_on_error=False)
    def load(self) -> None:
        lines = log_lines(self.job_id)
        self.app.call_from_thread(self.query_one(Log).write_lines, lines)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Reading failed (the app notifies): the log says so rather than staying blank."""
        if event.worker.group == "job-log" and event.state == WorkerState.ERROR:
            self.query_one(Log).write_line(
                f"(could not read the log: {failure_text(event.worker.error)})")

    def action_close(self) -> None:
        self.dismiss(None)
