"""`?`: a modal listing every binding (with the user's remaps) and what it does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


class HelpScreen(ModalScreen[None]):
    """Keys of the dashboard; Esc, q or ? closes."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="help_close"),
    ]

    def __init__(self, rows: Sequence[tuple[str, str, str]]) -> None:
        super().__init__(id="help")
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static("Keys — remap any of them in config.toml [keymap] (binding id = key)",
                         id="help-title")
            table: DataTable = DataTable(cursor_type="row", id="help-table")
            table.add_columns("Key", "Id", "What it does")
            for row in self.rows:
                table.add_row(*row)
            yield table
            yield Static("ctrl+p opens the command palette: every action, jump to a domain "
                         "or an image, change theme.", id="help-foot")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
