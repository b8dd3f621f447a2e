"""The jobs screen: every job in the journal (dashboard's, CLI's, earlier ones) and one in detail.

Left a table keyed by job id, updated in place; right the selected job's steps, progress of the
running step, elapsed time and downtime, notes, and for a finished job the size comparison.
A thread worker polls the journal directory (0.25 s while a job runs, 1 s otherwise) and only
re-folds journals whose size or mtime changed. When the poller fails (the state directory
unreadable or gone, say) the app notifies, the table says it could not refresh, and the poller
starts again after 1, 2, 4 ... 30 s until a pass succeeds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, ProgressBar, Static
from textual.worker import Worker, WorkerState, get_current_worker

from snaptui.core.engine.job_kinds import rebuild_steps
from snaptui.core.engine.jobs import cancel_job, pid_runs_job
from snaptui.core.engine.journal import (
    JOB_ID_RE,
    JobRecord,
    StepRecord,
    jobs_dir,
    load_job,
)
from snaptui.core.engine.states import JobStatus, StepState, look, progress_text
from snaptui.core.errors import SnaptuiError
from snaptui.core.present import UNKNOWN, clock_text, duration_text
from snaptui.ui.messages import JobFinished, RemoteJobUpdated
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.restore_dialog import RestoreDialog, undo_request, undoable
from snaptui.ui.widgets.footer import BindingsFooter
from snaptui.ui.widgets.job_log import JobLogScreen
from snaptui.ui.widgets.size_bars import SizeBars
from snaptui.ui.worker_failures import ForwardsWorkerFailures

if TYPE_CHECKING:
    from snaptui.core.restore import RestoreRequest
    from snaptui.ui.app import SnaptuiApp

POLL_RUNNING_S, POLL_IDLE_S = 0.25, 1.0
POLL_RETRY_MAX_S = 30.0
STALE_MARK = "could not refresh · retrying"


class Started(str):
    """A table cell showing a time of day that sorts by its full timestamp."""

    ts: float

    def __new__(cls, ts: float | None) -> Started:
        cell = super().__new__(cls, clock_text(ts))
        cell.ts = ts or 0.0
        return cell


def status_of(job: JobRecord, lost: bool = False) -> JobStatus:
    return JobStatus.LOST if lost and not job.terminal else job.status


def state_text(state: str, *, word: bool = True) -> Text:
    """The state's glyph (and word) in its colour, from the one table in core."""
    glyph, style = look(state)
    return Text(f"{glyph} {state}" if word else glyph, style=style)




def rollback_titles(job: JobRecord) -> list[str]:
    """What a cancel undoes now: started steps that have an undo, last first."""
    try:
        undoable: set[str] | None = {
            s.name for s in rebuild_steps(job.plan) if s.undo is not None}
    except (KeyError, TypeError, ValueError):
        undoable = None  # an unreadable plan: list every started step
    started = [s for s in job.steps if s.state in (StepState.DONE, StepState.RUNNING)]
    return [s.title + (" (running now)" if s.state == StepState.RUNNING else "")
            for s in reversed(started) if undoable is None or s.name in undoable]


def render_steps(job: JobRecord, now: float) -> Table:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(width=1)
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column(no_wrap=True, justify="right")
    for step in job.steps:
        table.add_row(state_text(step.state, word=False),
                      Text(step.title, style=look(step.state)[1]), _step_detail(step, now))
    return table


def _step_detail(step: StepRecord, now: float) -> Text:
    if step.error and step.state in (StepState.FAILED, StepState.UNDO_FAILED):
        return Text(step.error[:40], style="red")
    if step.started and step.finished:
        return Text(duration_text(step.finished - step.started), style="dim")
    if step.state == StepState.RUNNING and step.started:
        return Text(duration_text(now - step.started))
    undoing = step.state in (StepState.UNDONE, StepState.UNDOING)
    return Text(step.state if undoing else "", style="dim")


def render_header(job: JobRecord, now: float, lost: bool) -> RenderableType:
    status = status_of(job, lost)
    dest = job.plan.get("destination") or job.request.get("destination") or "?"
    end = job.finished or now
    lines = [
        Text.assemble((f"job {job.job_id}", "bold")),
        Text.assemble((job.domain, "bold"), f"  {job.mode} → {dest}  ",
                      state_text(status)),
        Text(f"elapsed {duration_text(end - job.started) if job.started else UNKNOWN} · "
             f"guest downtime {duration_text(job.downtime_s)}"),
    ]
    if job.request.get("name"):
        lines.insert(1, Text(f"image {job.request['name']}", style="dim"))
    if job.error:
        lines.append(Text(job.error, style="bold red"))
    if lost:
        lines.append(Text("its process is gone: c (or snaptui recover) rolls it back",
                          style="red"))
    return Group(*lines)


@dataclass
class JobsPolled(Message):
    """The poller found new or changed journals (and vanished ones)."""

    records: list[JobRecord]
    gone: list[str] = field(default_factory=list)
    lost: set[str] = field(default_factory=set)


class JobsScreen(ForwardsWorkerFailures, Screen):
    """All jobs on the left, the selected one in detail on the right."""

    app: SnaptuiApp

    DEFAULT_CSS = """
    JobsScreen #jobs-body { height: 1fr; }
    JobsScreen #jobs-table {
        width: 1fr; min-width: 39; max-width: 53; height: 1fr;
        scrollbar-size-horizontal: 0;
        border: round $border-blurred; border-title-color: $text;
    }
    JobsScreen #jobs-table:focus { border: round $border; }
    JobsScreen #job-detail { width: 1fr; height: 1fr; padding: 0 1; }
    JobsScreen #job-steps, JobsScreen #job-notes { margin: 1 0 0 0; height: auto; }
    JobsScreen #job-notes { color: $text-muted; }
    JobsScreen #job-progress-row { height: auto; }
    JobsScreen #job-progress-text { color: $text-muted; }
    JobsScreen #job-sizes-title { margin: 1 0 0 0; text-style: bold; }
    JobsScreen #job-empty { color: $text-muted; }
    """

    BINDINGS = [
        Binding("c", "cancel_job", "Cancel job", id="jobs.cancel"),
        Binding("l", "show_log", "Log", id="jobs.log"),
        Binding("u", "undo_restore", "Undo restore", id="jobs.undo_restore"),
        Binding("escape,j", "back", "Back", id="jobs.back"),
    ]

    def __init__(self, job_id: str | None = None, *, pick_remote: bool = False) -> None:
        super().__init__()
        self.job_id = job_id  # the job selected when it shows up
        self.pick_remote = pick_remote  # select the first remote job that shows up
        self.jobs: dict[str, JobRecord] = {}
        self.remote: dict[str, tuple[str, str]] = {}  # HOST:JOB -> (host, its id there)
        self.lost: set[str] = set()
        self._announced: set[str] = set()
        self._wake = threading.Event()
        self._actions: tuple[bool, ...] = (False, False, False)  # (log, cancel, undo) enabled
        self.poll_failures = 0  # failed polls in a row (0: the list is current)

    def compose(self) -> ComposeResult:
        with Horizontal(id="jobs-body"):
            table: DataTable = DataTable(id="jobs-table", cursor_type="row", zebra_stripes=False)
            table.border_title = "Jobs"
            yield table
            with VerticalScroll(id="job-detail", can_focus=False):
                yield Static("no job selected", id="job-empty")
                yield Static("", id="job-header")
                yield Static("", id="job-steps")
                with Vertical(id="job-progress-row"):
                    yield ProgressBar(id="job-progress", show_eta=False)
                    yield Static("", id="job-progress-text")
                yield Static("", id="job-notes", markup=False)
                yield Static("Size comparison", id="job-sizes-title")
                yield SizeBars(id="job-sizes")
        yield BindingsFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("status", key="status", width=10)
        table.add_column("domain", key="domain", width=13)
        table.add_column("started", key="started", width=8)
        table.add_column("mode", key="mode", width=8)
        for widget in ("#job-header", "#job-steps", "#job-progress-row", "#job-notes",
                       "#job-sizes-title", "#job-sizes"):
            self.query_one(widget).display = False
        table.focus()
        for update in getattr(self.app, "remote_jobs", {}).values():  # a bare host app: none
            self.show_remote_job(update)
        updates = getattr(self.app, "remote_job_updates", None)
        if updates is not None:
            updates.subscribe(self, self.show_remote_job)
        self.poll_jobs()
        self.set_interval(1.0, self._tick)

    def on_unmount(self) -> None:
        self._wake.set()  # let the poller see its cancellation at once
        updates = getattr(self.app, "remote_job_updates", None)
        if updates is not None:
            updates.unsubscribe(self)

    # -- polling -----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="jobs-poll", description="poll the job journal",
          exit_on_error=False)
    def poll_jobs(self) -> None:
        """Re-fold only the journals that changed; post them to the screen."""
        worker = get_current_worker()
        seen_sig: dict[str, tuple[int, int]] = {}
        running: set[str] = set()
        first = True  # the first pass always reports: the screen learns the poller works
        while not worker.is_cancelled:
            changed: list[JobRecord] = []
            present: set[str] = set()
            for path in jobs_dir().glob("*.jsonl"):
                job_id = path.stem
                if not JOB_ID_RE.fullmatch(job_id):
                    continue  # no job is named so (journal.iter_jobs says it once)
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                present.add(job_id)
                sig = (st.st_mtime_ns, st.st_size)
                if seen_sig.get(job_id) == sig:
                    continue
                try:
                    record = load_job(job_id)
                except OSError:
                    continue
                seen_sig[job_id] = sig
                changed.append(record)
                (running.discard if record.terminal else running.add)(job_id)
            gone = [j for j in seen_sig if j not in present]
            for job_id in gone:
                seen_sig.pop(job_id)
                running.discard(job_id)
            lost = {j for j in running if not self._alive(j)}
            if changed or gone or lost != self.lost or first:
                self.post_message(JobsPolled(changed, gone, lost))
            first = False
            self._wake.wait(POLL_RUNNING_S if running else POLL_IDLE_S)
            self._wake.clear()

    def _alive(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        return job is None or job.pid is None or pid_runs_job(job.pid, job_id)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The poller failed (the app notifies why): say the list is stale, poll again later."""
        if event.worker.group != "jobs-poll" or event.state != WorkerState.ERROR:
            return
        self.poll_failures += 1
        self.query_one(DataTable).border_subtitle = STALE_MARK
        self.set_timer(min(POLL_RETRY_MAX_S, 2.0 ** (self.poll_failures - 1)), self.poll_jobs,
                       name="jobs-poll-retry")

    def on_jobs_polled(self, message: JobsPolled) -> None:
        table = self.query_one(DataTable)
        if self.poll_failures:
            self.poll_failures = 0
            table.border_subtitle = ""
        added = False
        self.lost = message.lost
        with self.app.batch_update():
            for job_id in message.gone:
                self.jobs.pop(job_id, None)
                if job_id in table.rows:
                    table.remove_row(job_id)
            for job in message.records:
                previous = self.jobs.get(job.job_id)
                self.jobs[job.job_id] = job
                if job.terminal and job.job_id not in self._announced and (
                        (previous is not None and not previous.terminal)
                        or job.job_id == self.job_id):
                    self._announced.add(job.job_id)
                    self.app.post_message(JobFinished(job.job_id))
                added |= self._upsert_row(table, job)
            for job_id in self.lost:
                if job_id in self.jobs and job_id in table.rows:
                    self._upsert_row(table, self.jobs[job_id])
            if added:
                table.sort("started", key=lambda cell: cell.ts, reverse=True)
            self._select_initial(table)
        changed = {j.job_id for j in message.records} | self.lost
        if self.selected_id in changed or self.selected_id in message.gone:
            self.show_selected()

    def show_remote_job(self, message: RemoteJobUpdated) -> None:
        """A job on a fleet host (the app's ``remote_job_updates``): a row named HOST:JOB."""
        key = message.key
        if self.pick_remote and key not in self.remote:
            self.job_id, self.pick_remote = key, False  # the job just launched there
        self.remote[key] = (message.host, message.record.job_id)
        self.jobs[key] = replace(message.record, job_id=key)
        table = self.query_one(DataTable)
        if self._upsert_row(table, self.jobs[key]):
            table.sort("started", key=lambda cell: cell.ts, reverse=True)
        self._select_initial(table)
        if self.selected_id == key:
            self.show_selected()

    def _upsert_row(self, table: DataTable, job: JobRecord) -> bool:
        status = status_of(job, job.job_id in self.lost)
        cells = {
            "status": state_text(status),
            "domain": job.domain,
            "started": Started(job.started),
            "mode": job.mode,
        }
        if job.job_id not in table.rows:
            table.add_row(*cells.values(), key=job.job_id)
            return True
        for column, value in cells.items():
            if column in ("status", "mode"):
                table.update_cell(job.job_id, column, value)
        return False

    def _select_initial(self, table: DataTable) -> None:
        if self.job_id and self.job_id in table.rows:
            table.move_cursor(row=table.get_row_index(self.job_id), animate=False)
            self.job_id = None
            self.show_selected()
        elif table.row_count and self.selected_id is None:
            table.move_cursor(row=0)

    def _tick(self) -> None:
        job = self.selected
        if job is not None and not job.terminal:
            self.show_selected()

    # -- detail ------------------------------------------------------------------------------

    @property
    def selected_id(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no valid cursor yet
            return None

    @property
    def selected(self) -> JobRecord | None:
        job_id = self.selected_id
        return self.jobs.get(job_id) if job_id else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_selected()

    def show_selected(self) -> None:
        """Render the selected job into the detail pane."""
        job = self.selected
        actions = (job is not None, job is not None and not job.terminal,
                   self._undoable(job))
        if actions != self._actions:  # cancel greys out once the job has ended
            self._actions = actions
            self.refresh_bindings()
        self.query_one("#job-empty").display = job is None
        for widget in ("#job-header", "#job-steps", "#job-notes"):
            self.query_one(widget).display = job is not None
        if job is None:
            for widget in ("#job-progress-row", "#job-sizes-title", "#job-sizes"):
                self.query_one(widget).display = False
            return
        now = time.time()
        lost = job.job_id in self.lost
        self.query_one("#job-header", Static).update(render_header(job, now, lost))
        self.query_one("#job-steps", Static).update(render_steps(job, now))
        self.query_one("#job-notes", Static).update("\n".join(job.notes[-4:]))
        self.query_one("#job-notes").display = bool(job.notes)
        self._show_progress(job.current_step)
        images = job.result.get("images") or (
            [{"sizes": job.result["sizes"]}] if job.result.get("sizes") else [])
        show_sizes = job.status == JobStatus.DONE and bool(images)
        self.query_one("#job-sizes-title").display = show_sizes
        sizes = self.query_one(SizeBars)
        sizes.display = show_sizes
        if show_sizes:
            sizes.images = images

    def _show_progress(self, step: StepRecord | None) -> None:
        row = self.query_one("#job-progress-row")
        progress = step.progress if step is not None and step.state == StepState.RUNNING else None
        row.display = progress is not None
        if progress is None:
            return
        bar = self.query_one(ProgressBar)
        total = 100 if progress.get("unit") == "%" else progress.get("total")
        bar.update(total=total or None, progress=progress.get("done") or 0)
        self.query_one("#job-progress-text", Static).update(progress_text(progress))

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel only a job still running (or lost); log only with a job selected. Greyed
        (None), not hidden, so the footer keeps saying what the keys are."""
        if action == "cancel_job":
            job = self.selected
            return True if job is not None and not job.terminal else None
        if action == "show_log":  # a remote job's log is on its host
            return True if self.selected is not None and self.selected_id not in self.remote \
                else None
        if action == "undo_restore":
            return True if self._undoable(self.selected) else None
        return True

    def _undoable(self, job: JobRecord | None) -> bool:
        """A finished restore of this host's (the demo has no real disks)."""
        return (job is not None and not getattr(self.app, "demo", False)
                and job.job_id not in self.remote and undoable(job))

    def action_undo_restore(self) -> None:
        """Put a finished restore's pre-restore disk back (`snaptui restore --undo JOB`),
        after the dialog's preflight and confirmation."""
        job = self.selected
        if job is None or not self._undoable(job):
            self.notify("select a finished restore (on this host) to undo", severity="warning")
            return
        self.app.push_screen(RestoreDialog(job.domain, [], undo_request(job, self.app.cloud)),
                             self._undo_chosen)

    def _undo_chosen(self, request: RestoreRequest | None) -> None:
        if request is not None:
            self.start_undo(request)

    @work(exit_on_error=False, group="launch", description="start undo of a restore")
    async def start_undo(self, request: RestoreRequest) -> None:
        from snaptui.ui.job_launcher import start_restore

        self.job_id = await start_restore(request, self.app.store)
        self.app.main.follow_job(self.job_id)
        self._wake.set()

    def action_cancel_job(self) -> None:
        job = self.selected
        if job is None or job.terminal:
            return
        undo = rollback_titles(job)
        message = ("The job stops, then rolls back (undoes) these steps, last first:" if undo
                   else "The job stops; nothing has been done yet that needs undoing.")
        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel(job.job_id)

        self.app.push_screen(
            ConfirmScreen(f"Cancel job {job.job_id} ({job.domain})?", message,
                          [f"↩ {title}" for title in undo],
                          confirm_label="Cancel job", cancel_label="Keep running"),
            answered,
        )

    @work(thread=True, group="jobs-cancel", description="cancel a job", exit_on_error=False)
    def cancel(self, job_id: str) -> None:
        """Ask the job to stop and roll back (signals its process, or the inline thread)."""
        try:
            if job_id in self.remote:
                from snaptui.core.fleet.remote_jobs import cancel_remote_job

                host, remote_id = self.remote[job_id]
                outcome = cancel_remote_job(self.app.fleet[host].spec, remote_id)
            else:
                outcome = cancel_job(job_id)
        except SnaptuiError as err:
            self.app.call_from_thread(self.notify, str(err), severity="error")
            return
        self.app.call_from_thread(self.notify, f"job {job_id}: {outcome}")
        self._wake.set()

    def action_show_log(self) -> None:
        job_id = self.selected_id
        if job_id:
            self.app.push_screen(JobLogScreen(job_id))

    def action_back(self) -> None:
        self.dismiss()
