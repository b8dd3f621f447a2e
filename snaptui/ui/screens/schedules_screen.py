"""The Schedules screen: every schedule with its guests, calendar, next run, last run and its
result, paused or running; run one now, pause or resume it.

Rows come from ``core.keep.schedule_control`` (what ``snaptui schedule list`` prints), read in
a thread worker (each next run asks ``systemd-analyze calendar``) when the screen opens, on
``r``, and every few seconds while a run started here is going on. ``n`` starts ``snaptui
schedule run NAME`` detached after a confirmation, as its timer would; ``p`` pauses or resumes.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Static

from snaptui.core.keep import schedule_control
from snaptui.core.keep.schedule_control import ScheduleRow
from snaptui.core.paths import config_dir
from snaptui.core.present import local_time_text, parse_iso
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.help_screen import HelpScreen, key_rows
from snaptui.ui.themes import ThemeStyles
from snaptui.ui.widgets.footer import BindingsFooter
from snaptui.ui.worker_failures import ForwardsWorkerFailures

if TYPE_CHECKING:
    from snaptui.ui.app import SnaptuiApp

RUNNING_POLL_S = 2.0  # the rows are read again this often while a run is going on
COLUMNS = (("Schedule", "name"), ("Guests", "guests"), ("Calendar", "on"),
           ("Next run", "next"), ("Last run", "last"), ("Result", "result"))


def when_text(iso: str | None) -> str:
    """Local time of an ISO stamp, to the minute; "never" when there is none."""
    when = parse_iso(iso)
    return local_time_text(when.timestamp())[:16] if when else "never"


class SchedulesScreen(ForwardsWorkerFailures, Screen):
    """Schedules, one a row; run now, pause/resume, refresh."""

    DEFAULT_CSS = """
    SchedulesScreen #schedules-title {
        height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis;
    }
    SchedulesScreen #schedules-table {
        height: 1fr;
        border: round $border-blurred; border-title-color: $text;
    }
    SchedulesScreen #schedules-table:focus { border: round $border; }
    SchedulesScreen #schedules-detail { height: auto; max-height: 6; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "run_now", "Run now", id="schedules.run"),
        Binding("p", "pause", "Pause/resume", id="schedules.pause"),
        Binding("k", "prune", "Next prune", id="schedules.prune"),
        Binding("r", "refresh", "Refresh", id="schedules.refresh"),
        Binding("escape", "back", "Back", id="schedules.back"),
        Binding("question_mark", "help", "Help", id="schedules.help", show=False),
    ]
    ACTIONS_HELP: ClassVar[dict[str, str]] = {
        "schedules.run": "Run the schedule now, as its timer would (snaptui schedule run NAME, "
                         "detached), after a confirmation",
        "schedules.pause": "Pause the schedule (its timer runs nothing), or resume it",
        "schedules.prune": "The prune simulator: every image of the schedule's guests with keep "
                           "(which rule) or remove, as its next run would prune",
        "schedules.refresh": "Read the schedules again",
        "schedules.back": "Back to the dashboard",
        "schedules.help": "This list of keys",
    }

    app: SnaptuiApp

    def __init__(self) -> None:
        super().__init__(id="schedules")
        self._styles = ThemeStyles()
        self.rows: dict[str, ScheduleRow] = {}
        self.loaded = False  # the first read is in

    def compose(self) -> ComposeResult:
        yield Static("Schedules: snapshots on a calendar, then prune · snaptui schedule add "
                     "NAME … makes one", id="schedules-title", markup=False)
        table: DataTable[Text] = DataTable(cursor_type="row", id="schedules-table")
        table.border_title = "Schedules"
        yield table
        yield Static("", id="schedules-detail", markup=False)
        yield BindingsFooter(show_command_palette=False)

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#schedules-table", DataTable)

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.table.add_column(label, key=key)
        self.table.focus()
        self.set_interval(RUNNING_POLL_S, self._poll_running, name="schedules-poll")
        self.refresh_rows()

    # -- reading ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="schedules",
          description="read the schedules")
    def refresh_rows(self) -> None:
        found = schedule_control.rows()
        self.app.call_from_thread(self._show, found)

    def _poll_running(self) -> None:
        if any(r.running for r in self.rows.values()):
            self.refresh_rows()

    def _look(self, variable: str) -> Style:
        return self._styles.get(self.app, variable)

    def _cells(self, found: ScheduleRow) -> list[Text]:
        guests = ", ".join(found.guests) or "—"
        if found.problem:
            result = Text("cannot load", style=self._look("error"))
        elif found.running:
            result = Text(f"running since {when_text(found.running)[11:]}",
                          style=self._look("accent"))
        elif found.last_result is None:
            result = Text("—", style=self._look("foreground-muted"))
        else:
            look = "success" if found.last_result == "ok" else \
                "foreground-muted" if found.last_result == "paused" else "error"
            result = Text(found.last_result, style=self._look(look))
        nxt = Text("paused", style=self._look("warning")) if found.paused else \
            Text(found.next or "never")
        return [Text(found.name), Text(guests, overflow="ellipsis"), Text(found.on or "?"), nxt,
                Text(when_text(found.last_run)), result]

    def _show(self, found: list[ScheduleRow]) -> None:
        table = self.table
        selected = self.selected
        self.rows = {r.name: r for r in found}
        table.clear()
        for schedule in found:
            table.add_row(*self._cells(schedule), key=schedule.name)
        if selected and selected.name in self.rows:
            table.move_cursor(row=table.get_row_index(selected.name))
        self.loaded = True
        self._detail()

    @property
    def selected(self) -> ScheduleRow | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(key) if key else None

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def _detail(self) -> None:
        found = self.selected
        detail = self.query_one("#schedules-detail", Static)
        if found is None:
            detail.update(f"No schedule in {config_dir() / 'schedules'} yet: snaptui schedule "
                          "add NAME --domain D --on daily --keep-daily 7 (docs/keep.md)"
                          if self.loaded else "reading…")
            return
        lines = [f"{found.name}: "
                 + (found.problem or found.keep or "no keep rule, nothing pruned")]
        if found.verify:
            lines[0] += f" · verify {found.verify}"
        lines.append(f"timer {found.timer}" if found.timer else
                     "no timer unit here (runs only by hand, from cron, or from `n`)")
        if found.running:
            lines.append(f"running now; its lines go to {schedule_control.log_path(found.name)}")
        detail.update("\n".join(lines))

    # -- actions ---------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.refresh_rows()

    def action_run_now(self) -> None:
        found = self.selected
        if found is None:
            self.notify("no schedule to run", severity="warning")
            return
        if found.problem:
            self.notify(f"schedule {found.name} does not load: {found.problem}",
                        severity="error", markup=False)
            return
        if found.running:
            self.notify(f"schedule {found.name} is running already", severity="warning")
            return
        lines = [f"guests: {', '.join(found.guests)}",
                 f"then prune: {found.keep}" if found.keep else "no prune (no keep rules)",
                 f"its lines go to {schedule_control.log_path(found.name)}"]
        if self.app.demo:
            lines.append("this runs on this host's real guests, not the demo's")
        if found.paused:
            lines.append("it is paused: the run will do nothing (resume it with p)")
        self.app.push_screen(
            ConfirmScreen(f"Run schedule {found.name} now?",
                          "Snapshots its guests now, as its timer would, then prunes.", lines,
                          confirm_label="Run now", cancel_label="Cancel"),
            partial(self._run_confirmed, found.name))

    def _run_confirmed(self, name: str, answer: bool | None) -> None:
        if answer:
            self.start_run(name)

    @work(thread=True, exit_on_error=False, group="schedules-run",
          description="start the schedule's run")
    def start_run(self, name: str) -> None:
        pid = schedule_control.start_detached(name)
        self.app.call_from_thread(self.notify, f"schedule {name}: run started (pid {pid})",
                                  timeout=4)
        self._wait_started(name)
        found = schedule_control.rows()
        self.app.call_from_thread(self._show, found)

    def _wait_started(self, name: str, timeout_s: float = 5.0) -> None:
        """Until the run holds its lock (or ended already): the row then says running."""
        import time

        deadline = time.monotonic() + timeout_s
        last = schedule_control.row(name).last_run
        while time.monotonic() < deadline:
            now = schedule_control.row(name)
            if now.running or now.last_run != last:
                return
            time.sleep(0.1)

    def action_pause(self) -> None:
        found = self.selected
        if found is None or found.problem:
            self.notify("no schedule to pause" if found is None else
                        f"schedule {found.name} does not load", severity="warning")
            return
        self.set_paused(found.name, not found.paused)

    @work(thread=True, exit_on_error=False, group="schedules-pause",
          description="pause or resume the schedule")
    def set_paused(self, name: str, paused: bool) -> None:
        schedule_control.set_paused(name, paused)
        self.app.call_from_thread(self.notify,
                                  f"schedule {name} {'paused' if paused else 'resumed'}",
                                  timeout=3)
        found = schedule_control.rows()
        self.app.call_from_thread(self._show, found)

    def action_prune(self) -> None:
        from snaptui.ui.screens.prune_screen import PruneScreen

        found = self.selected
        if found is None or found.problem:
            self.notify("no schedule to simulate" if found is None else
                        f"schedule {found.name} does not load", severity="warning")
            return
        self.app.push_screen(PruneScreen(found.name))

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.binding_rows()))

    def binding_rows(self) -> list[tuple[str, str, str]]:
        """(key as shown, binding id, what it does) of every key of this screen."""
        return key_rows(self.app, self.BINDINGS, self.ACTIONS_HELP)

    def action_back(self) -> None:
        self.dismiss()
