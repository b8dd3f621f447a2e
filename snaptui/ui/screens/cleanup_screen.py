"""The Cleanup screen: what interrupted snapshot runs left behind, as a checklist by kind.

The scan runs in a thread worker (the core's ``iter_findings``) and streams findings in with its
``ScanProgress``; safe findings start chosen, refused ones cannot be. ``d`` (or Enter) confirms
the chosen ones in a modal that lists them with the space they hold, then a second worker
removes them one after the other, each row showing its progress and outcome (measured space
reclaimed, or the reason it was refused or failed). What may be chosen is decided by
``snaptui.core.cleanup.selection``; this module only shows it. ``g`` chooses every finding of
the domain under the cursor that may go, leftovers snaptui did not make included (the
dashboard's ``--domain D --include-unowned``); ``?`` lists the screen's keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ProgressBar, Static
from textual.worker import Worker, WorkerState, get_current_worker

from snaptui.core.cleanup import (
    DEFAULT_OLDER_THAN_S,
    Finding,
    RemovalResult,
    ScanProgress,
    iter_findings,
    remove,
)
from snaptui.core.cleanup.selection import Selection
from snaptui.core.present import duration_text, size_text
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.help_screen import HelpScreen, key_rows
from snaptui.ui.themes import ThemeStyles
from snaptui.ui.widgets.cleanup_table import (
    CleanupTable,
    build_rows,
    confirm_lines,
    detail_lines,
    kind_of_group,
    summary_text,
)
from snaptui.ui.widgets.footer import BindingsFooter
from snaptui.ui.widgets.keyed_table import KeyedTable
from snaptui.ui.worker_failures import ForwardsWorkerFailures

if TYPE_CHECKING:
    from snaptui.ui.app import SnaptuiApp

Scanner = Callable[..., AsyncIterator[Finding]]  # iter_findings' signature
Remover = Callable[[Finding, Any, Any], Awaitable[RemovalResult]]  # remove's
# `o` steps through these --older-than thresholds (0: whatever the age).
OLDER_THAN_STEPS = (DEFAULT_OLDER_THAN_S, 3600.0, 0.0, 7 * 86400.0)


def older_than_label(seconds: float) -> str:
    return "any age" if seconds <= 0 else f"older than {duration_text(seconds)}"


# -- messages from the workers (posted from their threads) ----------------------------------------


@dataclass
class ScanProgressed(Message):
    """One scanner's progress; a newer one replaces a queued older one."""

    scan: int
    progress: ScanProgress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ScanProgressed) and message.scan == self.scan


@dataclass
class FindingFound(Message):
    scan: int
    finding: Finding


@dataclass
class ScanFinished(Message):
    scan: int
    problems: list[str] = field(default_factory=list)


@dataclass
class RemovalStarted(Message):
    key: str
    index: int
    total: int


@dataclass
class RemovalDone(Message):
    result: RemovalResult


@dataclass
class RemovalsFinished(Message):
    stopped: bool


class CleanupScreen(ForwardsWorkerFailures, Screen):
    """Leftovers by kind, chosen ones removed after a confirmation, each with its outcome."""

    DEFAULT_CSS = """
    CleanupScreen #cleanup-title {
        height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis;
    }
    CleanupScreen #cleanup-progress-row { height: 1; padding: 0 1; }
    CleanupScreen #cleanup-progress-text {
        width: 1fr; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis;
    }
    CleanupScreen #cleanup-table {
        height: 1fr;
        scrollbar-size-horizontal: 0;
        scrollbar-size-vertical: 1;
        border: round $border-blurred; border-title-color: $text;
    }
    CleanupScreen #cleanup-table:focus { border: round $border; }
    CleanupScreen #cleanup-detail { height: auto; max-height: 5; padding: 0 1; }
    CleanupScreen #cleanup-summary { height: auto; max-height: 3; padding: 0 1;
                                     text-style: bold; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle", "Toggle", id="cleanup.toggle"),
        Binding("a", "toggle_all", "Safe/none", id="cleanup.all"),
        Binding("g", "toggle_domain", "Domain", id="cleanup.domain"),
        Binding("d", "delete", "Delete", id="cleanup.delete"),
        Binding("r", "rescan", "Rescan", id="cleanup.rescan"),
        Binding("o", "older_than", "Age", id="cleanup.older_than"),
        Binding("escape", "back", "Back", id="cleanup.back"),
        Binding("question_mark", "help", "Help", id="cleanup.help", show=False),
    ]
    ACTIONS_HELP: ClassVar[dict[str, str]] = {
        "cleanup.toggle": "Choose or un-choose the finding (on a group row: the group's safe "
                          "ones, or none)",
        "cleanup.all": "Choose every safe finding, or none",
        "cleanup.domain": "Choose every finding of the domain under the cursor that may go, "
                          "those snaptui did not make too (an operator's, old Nova's): not "
                          "refused ones, not younger than the age; again: none of them",
        "cleanup.delete": "Remove the chosen ones, after a confirmation (also Enter)",
        "cleanup.rescan": "Scan again (forgets the results)",
        "cleanup.older_than": "Age a leftover must have to be chosen: 24 h, 1 h, any, 7 d",
        "cleanup.back": "Back to the dashboard",
        "cleanup.help": "This list of keys",
    }

    app: SnaptuiApp

    def __init__(self, *, scan_dirs: Iterable[str | Path] = (),
                 older_than_s: float = DEFAULT_OLDER_THAN_S, scanner: Scanner | None = None,
                 remover: Remover | None = None) -> None:
        super().__init__(id="cleanup")
        self._styles = ThemeStyles()
        self.scan_dirs = tuple(scan_dirs)
        self.older_than_s = older_than_s
        # The core's scan and remove; a test may pass others that yield fixed findings.
        self._scanner: Scanner = scanner or iter_findings
        self._remover: Remover = remover or remove
        self.selection = Selection()
        self.problems: list[str] = []
        self.busy: dict[str, str] = {}  # key -> "queued" | "removing"
        self.scanning = False
        self.removing = False
        self._scan_id = 0
        self._dirty = False

    def compose(self) -> ComposeResult:
        yield Static("", id="cleanup-title", markup=False)
        with Horizontal(id="cleanup-progress-row"):
            yield Static("", id="cleanup-progress-text", markup=False)
            yield ProgressBar(id="cleanup-progress", show_eta=False)
        table = CleanupTable(id="cleanup-table")
        table.border_title = "Cleanup · leftovers of interrupted snapshot runs"
        yield table
        yield Static("", id="cleanup-detail", markup=False)
        yield Static("", id="cleanup-summary", markup=False)
        # 80 columns fit the screen's keys or the palette's hint, not both (ctrl+p still works).
        yield BindingsFooter(show_command_palette=False)

    @property
    def table(self) -> CleanupTable:
        return self.query_one(CleanupTable)

    def on_mount(self) -> None:
        self.table.focus()
        self.set_interval(0.2, self._flush)
        self.start_scan()

    # -- scanning ------------------------------------------------------------------------------

    def start_scan(self) -> None:
        """Forget the last scan and its results, and scan again."""
        self._scan_id += 1
        self.selection = Selection()
        self.problems = []
        self.busy = {}
        self.scanning = True
        self._show_title()
        self._show_progress("scanning…", None, 0)
        self._sync()
        self.refresh_bindings()
        self.scan(self._scan_id)

    @work(thread=True, exclusive=True, group="cleanup-scan", exit_on_error=False,
          description="scan for leftovers")
    def scan(self, scan_id: int) -> None:
        worker = get_current_worker()
        problems: list[str] = []

        def on_progress(progress: ScanProgress) -> None:
            self.post_message(ScanProgressed(scan_id, progress))

        async def run() -> None:
            async for finding in self._scanner(
                    self.app.host, self.app.store, scan_dirs=self.scan_dirs,
                    older_than_s=self.older_than_s, on_progress=on_progress,
                    problems=problems):
                if worker.is_cancelled:
                    return
                self.post_message(FindingFound(scan_id, finding))

        asyncio.run(run())
        self.post_message(ScanFinished(scan_id, problems))

    def on_scan_progressed(self, message: ScanProgressed) -> None:
        if message.scan != self._scan_id or not self.scanning:
            return
        p = message.progress
        of = f"/{p.total}" if p.total is not None else ""
        self._show_progress(f"scanning {p.kind}: {p.done}{of} {p.what}", p.total, p.done)

    def on_finding_found(self, message: FindingFound) -> None:
        if message.scan == self._scan_id:
            self.selection.add(message.finding)
            self._dirty = True

    def on_scan_finished(self, message: ScanFinished) -> None:
        if message.scan != self._scan_id:
            return
        self.problems = message.problems
        self._scan_ended()

    def _scan_ended(self) -> None:
        self.scanning = False
        self._hide_progress()
        self._sync()
        self.refresh_bindings()

    def _flush(self) -> None:
        """Rows arrive faster than they are worth drawing: sync at most five times a second."""
        if self._dirty:
            self._sync()

    # -- removing ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="cleanup-remove", exit_on_error=False,
          description="remove leftovers")
    def remove_chosen(self, findings: list[Finding]) -> None:
        """One after the other (several may be on one disk); stops between two when cancelled."""
        worker = get_current_worker()

        async def run() -> None:
            for index, finding in enumerate(findings):
                if worker.is_cancelled:
                    return
                self.post_message(RemovalStarted(finding.key, index, len(findings)))
                result = await self._remover(finding, self.app.host, self.app.store)
                self.post_message(RemovalDone(result))

        asyncio.run(run())
        self.post_message(RemovalsFinished(stopped=worker.is_cancelled))

    def on_removal_started(self, message: RemovalStarted) -> None:
        self.busy[message.key] = "removing"
        finding = self.selection.findings.get(message.key)
        where = finding.location if finding else message.key
        self._show_progress(f"removing {message.index + 1}/{message.total}: {where}",
                            message.total, message.index)
        self._sync()

    def on_removal_done(self, message: RemovalDone) -> None:
        self.busy.pop(message.result.key, None)
        self.selection.record(message.result)
        self._sync()

    def on_removals_finished(self, message: RemovalsFinished) -> None:
        self.removing = False
        self.busy.clear()
        self._hide_progress()
        self._sync()
        self.refresh_bindings()
        counts = self.selection.outcomes()
        self.notify(f"{counts['removed']} removed, {counts['refused']} refused, "
                    f"{counts['failed']} failed · {size_text(self.selection.reclaimed)} reclaimed",
                    title="Cleanup", severity="information" if counts["removed"] and not
                    (counts["refused"] or counts["failed"]) else "warning")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A scan or removal that failed or was cancelled leaves the screen usable again (the
        app notifies the failure: ``worker_failures.py``)."""
        if event.state not in (WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if event.worker.group == "cleanup-scan" and self.scanning:
            self._scan_ended()
        elif event.worker.group == "cleanup-remove" and self.removing:
            self.post_message(RemovalsFinished(stopped=True))

    # -- drawing -------------------------------------------------------------------------------

    def theme_style(self, variable: str) -> Style:
        """A Rich style in the theme colour ``$variable`` (colours come from the theme)."""
        return self._styles.get(self.app, variable)

    def _sync(self) -> None:
        self._dirty = False
        self.table.sync(build_rows(self.selection, self.busy, self.theme_style))
        summary = summary_text(self.selection, self.problems, self.theme_style)
        if self.scanning:
            summary = Text(f"{len(self.selection.findings)} found so far…")
        self.query_one("#cleanup-summary", Static).update(summary)
        self._show_detail()

    def _show_title(self) -> None:
        store = self.app.store
        where = getattr(store, "location", None) if store.kind == "library" else None
        self.query_one("#cleanup-title", Static).update(
            f"{older_than_label(self.older_than_s)} · {self.app.host.uri} · "
            f"{store.kind}{f' {where}' if where else ''}")

    def _show_progress(self, text: str, total: int | None, done: int) -> None:
        self.query_one("#cleanup-progress-row").display = True
        self.query_one("#cleanup-progress-text", Static).update(text)
        self.query_one(ProgressBar).update(total=total or None, progress=done)

    def _hide_progress(self) -> None:
        self.query_one("#cleanup-progress-row").display = False

    def _show_detail(self) -> None:
        self.query_one("#cleanup-detail", Static).update(
            detail_lines(self.selection, self.table.selected_key))

    def on_keyed_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        self._show_detail()

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        """Enter on the checklist deletes the chosen ones (after the confirmation)."""
        event.stop()
        if self.check_action("delete", ()):
            self.action_delete()

    # -- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out (None) what cannot run while scanning or removing, or with nothing chosen."""
        if action in ("toggle", "toggle_all", "toggle_domain", "rescan", "older_than"):
            return None if self.scanning or self.removing else True
        if action == "delete":
            idle = not (self.scanning or self.removing)
            return True if idle and self.selection.chosen else None
        return True

    def action_toggle(self) -> None:  # type: ignore[override]  # not DOMNode's toggle(attr)
        key = self.table.selected_key
        if key is None:
            return
        kind = kind_of_group(key)
        if kind is not None:
            self.selection.toggle_kind(kind)
        elif reason := self.selection.toggle(key):
            self.app.bell()
            self.notify(reason, title="Cannot choose this one", severity="warning", timeout=6)
        self._sync()
        self.refresh_bindings()

    def action_toggle_all(self) -> None:
        self.selection.toggle_all()
        self._sync()
        self.refresh_bindings()

    def action_toggle_domain(self) -> None:
        """Choose (or un-choose) every finding of the domain under the cursor that may go."""
        key = self.table.selected_key
        finding = self.selection.findings.get(key) if key is not None else None
        if finding is None or finding.domain is None:
            self.app.bell()
            self.notify("move the cursor to a finding of a domain first", timeout=4,
                        title="No domain here", severity="warning")
            return
        domain = finding.domain
        had = bool(self.selection.chosen.intersection(
            f.key for f in self.selection.of_domain(domain)))
        picked = self.selection.toggle_domain(domain)
        unowned = sum(1 for k in picked if self.selection.findings[k].unowned)
        if picked:
            self.notify(f"{len(picked)} chosen" + (f", {unowned} not made by snaptui"
                                                   if unowned else ""), title=domain,
                        timeout=4)
        elif not had:
            self.app.bell()
            self.notify("nothing of it can be chosen: refused, too young or in use",
                        title=domain, severity="warning", timeout=6)
        self._sync()
        self.refresh_bindings()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.binding_rows()))

    def binding_rows(self) -> list[tuple[str, str, str]]:
        """(key as shown, binding id, what it does) of every key of this screen."""
        rows = key_rows(self.app, self.BINDINGS, self.ACTIONS_HELP)
        rows.append(("ctrl+p", "palette", "The command palette"))
        return rows

    def action_rescan(self) -> None:
        self.start_scan()

    def action_older_than(self) -> None:
        """Step the age threshold (24 h, 1 h, any age, 7 d) and scan again."""
        steps = list(OLDER_THAN_STEPS)
        index = steps.index(self.older_than_s) + 1 if self.older_than_s in steps else 0
        self.older_than_s = steps[index % len(steps)]
        self.start_scan()

    def action_delete(self) -> None:
        chosen = self.selection.selected()
        if not chosen or self.scanning or self.removing:
            return
        totals = Selection.totals(chosen)
        size = size_text(totals.size) + (f" + {totals.unknown} of unknown size" if totals.unknown
                                     else "")
        plural = "s" if len(chosen) != 1 else ""
        self.app.push_screen(
            ConfirmScreen(f"Remove {len(chosen)} leftover{plural}?",
                          f"{size} reclaimable. Each is checked again right before it goes; "
                          "this cannot be undone:",
                          confirm_lines(chosen), confirm_label="Remove", cancel_label="Keep"),
            lambda yes: self._start_removal(chosen) if yes else None)

    def _start_removal(self, chosen: list[Finding]) -> None:
        self.removing = True
        self.busy = {f.key: "queued" for f in chosen}
        self._show_progress(f"removing 0/{len(chosen)}", len(chosen), 0)
        self._sync()
        self.refresh_bindings()
        self.remove_chosen(chosen)

    def action_back(self) -> None:
        if self.removing:
            self.notify("removal stops after the one in progress", severity="warning")
        self.dismiss()
