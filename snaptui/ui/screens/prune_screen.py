"""The prune simulator: what a schedule's next prune does with every image of its guests in the
store shown, keep (which rule, or why it is not prune's to decide) or remove — the table
``snaptui prune --dry-run`` prints, computed by the same code (``core.keep.next_prune``).

Opened from the Schedules screen (``k``); read in a thread worker (the store's images, the
journal that proves which are ours) on open and on ``r``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Static

from snaptui.core.keep import schedules
from snaptui.core.keep.next_prune import read_plan
from snaptui.core.keep.prune import PrunePlan
from snaptui.core.keep.retention import Mark
from snaptui.core.present import PRUNE_GLYPH, date_text
from snaptui.ui.themes import ThemeStyles
from snaptui.ui.widgets.footer import BindingsFooter
from snaptui.ui.worker_failures import ForwardsWorkerFailures

if TYPE_CHECKING:
    from snaptui.ui.app import SnaptuiApp

MARK_LOOK = {Mark.KEEP: "success", Mark.REMOVE: "error", Mark.PROTECTED: "accent",
             Mark.BUSY: "warning", Mark.LEFT: "foreground-muted"}
COLUMNS = (("Guest", "guest"), ("Disk", "disk"), ("Created", "created"), ("Name", "name"),
           ("Image", "image"), ("Next prune", "decision"))


class PruneScreen(ForwardsWorkerFailures, Screen):
    """One schedule's next prune, image by image."""

    DEFAULT_CSS = """
    PruneScreen #prune-title {
        height: auto; max-height: 3; padding: 0 1; color: $text-muted;
    }
    PruneScreen #prune-table {
        height: 1fr;
        border: round $border-blurred; border-title-color: $text;
    }
    PruneScreen #prune-table:focus { border: round $border; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "refresh", "Refresh", id="prune.refresh"),
        Binding("escape", "back", "Back", id="prune.back"),
    ]

    app: SnaptuiApp

    def __init__(self, name: str) -> None:
        super().__init__(id="prune-simulator")
        self.schedule_name = name
        self._styles = ThemeStyles()
        self.plan: PrunePlan | None = None
        self.said = ""  # the line above the table
        self.backup_type = name
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("reading…", id="prune-title", markup=False)
        table: DataTable[Text] = DataTable(cursor_type="row", id="prune-table")
        table.border_title = f"Next prune of schedule {self.schedule_name}"
        yield table
        yield BindingsFooter(show_command_palette=False)

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#prune-table", DataTable)

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.table.add_column(label, key=key)
        self.table.focus()
        self.read()

    @work(thread=True, exclusive=True, exit_on_error=False, group="prune-plan",
          description="simulate the next prune")
    def read(self) -> None:
        app = self.app
        schedule = schedules.load(self.schedule_name)
        self.backup_type = schedule.type
        store = app.store
        images = list(store.iter_images())
        marks = app.main.prune_marks
        found = read_plan(images, schedule, marks.guests(), store.kind,
                          getattr(store, "location", None), marks.remote_hosts())
        app.call_from_thread(self._show, found)

    def _show(self, found: PrunePlan | str) -> None:
        table = self.table
        table.clear()
        self.loaded = True
        if isinstance(found, str):
            self.plan, self.said = None, found
            self.query_one("#prune-title", Static).update(found)
            return
        self.plan = found
        for row in found.rows:
            look = self._styles.get(self.app, MARK_LOOK[row.decision.mark])
            decision = row.decision.text()
            if row.decision.mark == Mark.REMOVE:
                decision = f"{PRUNE_GLYPH} {decision}"
            table.add_row(Text(row.group[0]), Text(row.group[2] or "—"),
                          Text(date_text(row.image.created_at)), Text(row.image.name),
                          Text(row.image.id), Text(decision, style=look), key=row.image.id)
        where = self.app.main.images_pane.source
        self.said = (f"{found.rules.text()}: the next run would remove {len(found.removals)} "
                     f"of {len(found.rows)} images in {where} (snaptui prune --dry-run "
                     f"--backup-type {self.backup_type} shows the same)")
        if not found.rows:
            self.said = f"no image of this schedule's guests in {where} yet"
        self.query_one("#prune-title", Static).update(self.said)

    def action_refresh(self) -> None:
        self.read()

    def action_back(self) -> None:
        self.dismiss()

