"""`?`: a modal listing every binding (with the user's remaps) and what it does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

if TYPE_CHECKING:
    from snaptui.ui.app import SnaptuiApp


def key_rows(app: SnaptuiApp, bindings: Iterable[BindingType],
             helps: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(key as shown, binding id, what it does) of each binding, with the config's remaps (the
    keymap set_keymap was given: Textual keeps its own copy private)."""
    rows = []
    for binding in bindings:
        if not isinstance(binding, Binding):
            continue
        keys = app.config.keymap.get(binding.id or "", binding.key)
        shown = ", ".join(app.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))
        rows.append((shown, binding.id or "", helps.get(binding.id or "", binding.description)))
    return rows


class HelpScreen(ModalScreen[None]):
    """Keys of the dashboard; Esc, q or ? closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="help_close"),
    ]

    def __init__(self, rows: Sequence[tuple[str, str, str]]) -> None:
        super().__init__(id="help")
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static("Keys — remap any of them in config.toml [keymap] (binding id = key)",
                         id="help-title", markup=False)
            yield DataTable(cursor_type="row", id="help-table")
            yield Static("ctrl+p opens the command palette: every action, jump to a domain "
                         "or an image, change theme.", id="help-foot")

    def on_mount(self) -> None:
        self.call_after_refresh(self._fill)

    def _fill(self) -> None:
        """Rows once the table has its width: descriptions wrap instead of running off the
        side (80 columns leave them about 40 cells)."""
        table = self.query_one(DataTable)
        key_w = max(len(r[0]) for r in self.rows) if self.rows else 3
        id_w = max(len(r[1]) for r in self.rows) if self.rows else 2
        pad = 2 * table.cell_padding
        room = table.size.width - key_w - id_w - 3 * pad - 1  # 1: the vertical scrollbar
        table.add_column("Key", width=max(3, key_w))
        table.add_column("Id", width=max(2, id_w))
        table.add_column("What it does", width=max(20, room))
        for key, binding_id, text in self.rows:
            table.add_row(key, binding_id, Text(text), height=None)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
