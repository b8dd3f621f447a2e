"""A titled pane holding a KeyedTable that is updated in place, and a `/` filter Input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input

from snaptui.ui.themes import ThemeStyles
from snaptui.ui.widgets.keyed_table import ColumnSpec, KeyedTable, Row

__all__ = ["ColumnSpec", "KeyedTable", "Row", "TablePane"]


class TablePane(Vertical):
    """A bordered pane: a filter Input (hidden until `/`) above a KeyedTable."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close_filter", "Close filter", show=False, id="close_filter"),
    ]
    COLUMNS: ClassVar[Sequence[ColumnSpec]] = ()
    SORT_COLUMNS: ClassVar[tuple[str, ...]] = ()
    SORT_REVERSE: ClassVar[bool] = False
    TITLE = ""

    def __init__(self, *, id: str,  # noqa: A002 - Textual's name for it
                 columns: Sequence[ColumnSpec] | None = None) -> None:
        super().__init__(id=id, classes="pane")
        self.filter_text = ""
        self._styles = ThemeStyles()
        self.table = KeyedTable(self.COLUMNS if columns is None else columns, id=f"{id}-table")
        self.table.formatter = self.format_cell
        self.table.sort_columns = self.SORT_COLUMNS
        self.table.sort_reverse = self.SORT_REVERSE
        self.filter_input = Input(placeholder="filter…", id=f"{id}-filter", classes="filter")

    def compose(self) -> ComposeResult:
        yield self.filter_input
        yield self.table

    def on_mount(self) -> None:
        self.border_title = self.TITLE
        self.filter_input.display = False

    # -- colours from the theme ----------------------------------------------------------------

    def theme_style(self, variable: str, *, bold: bool = False, dim: bool = False) -> Style:
        """A Rich style in the theme colour ``$variable`` (e.g. "success")."""
        return self._styles.get(self.app, variable, bold=bold, dim=dim)

    def format_cell(self, column: str, value: Any) -> Any:
        # Text, not str: a str cell would be parsed as markup ("[x]" in an image name).
        return Text("" if value is None else str(value), overflow="ellipsis")

    # -- filter --------------------------------------------------------------------------------

    def open_filter(self) -> None:
        self.filter_input.display = True
        self.filter_input.focus()

    def action_close_filter(self) -> None:
        self.filter_input.value = ""
        self.filter_input.display = False
        if self.filter_text:
            self.filter_text = ""
            self.refresh_rows()
        self.table.focus()

    @on(Input.Changed)
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        text = event.value.strip().lower()
        if text != self.filter_text:  # closing the filter already showed every row
            self.filter_text = text
            self.refresh_rows()

    @on(Input.Submitted)
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self.filter_input.display = False
        self.table.focus()

    def matches(self, *texts: object) -> bool:
        """True when the filter is empty or appears in any of ``texts`` (case-insensitive)."""
        return not self.filter_text or any(self.filter_text in str(t).lower() for t in texts
                                           if t is not None)

    def refresh_rows(self) -> None:
        """Re-sync the table from the pane's data (filter or data changed)."""
        raise NotImplementedError
