"""A titled pane holding a keyed DataTable that is updated in place, and a `/` filter Input."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

from rich.style import Style
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color, ColorParseError
from textual.containers import Vertical
from textual.widgets import DataTable, Input

Row = tuple[Hashable, ...]


class KeyedTable(DataTable):
    """DataTable whose rows are keyed by id and synced in place: changed cells are updated,
    new keys added and stale keys removed; the table is never cleared and rebuilt."""

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._column_spec = columns
        self._raw: dict[str, Row] = {}
        self.formatter = lambda column, value: value  # set by the pane
        # Columns whose (plain str) cells give the row order after rows are added.
        self.sort_columns: tuple[str, ...] = ()
        self.sort_reverse = False

    def on_mount(self) -> None:
        for label, key in self._column_spec:
            self.add_column(label, key=key)

    @property
    def selected_key(self) -> str | None:
        """Key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def _cells(self, row: Row) -> list[Any]:
        return [self.formatter(key, value) for (_, key), value in zip(self._column_spec, row,
                                                                      strict=True)]

    def sync(self, rows: dict[str, Row]) -> None:
        """Make the table show exactly ``rows`` (by key), touching only what changed."""
        keep = self.selected_key
        added = False
        with self.app.batch_update():
            for key in [k for k in self._raw if k not in rows]:
                self.remove_row(key)
                del self._raw[key]
            for key, row in rows.items():
                old = self._raw.get(key)
                if old is None:
                    self.add_row(*self._cells(row), key=key)
                    added = True
                elif old != row:
                    for (_, column), before, value in zip(self._column_spec, old, row,
                                                          strict=True):
                        if before != value:
                            self.update_cell(key, column, self.formatter(column, value),
                                             update_width=True)
                self._raw[key] = row
            if added and self.sort_columns:
                self.sort(*self.sort_columns, reverse=self.sort_reverse)
            if keep in self._raw:
                self.move_cursor(row=self.get_row_index(keep), animate=False)

    def recolor(self) -> None:
        """Re-render every cell (after a theme change: colours come from the theme)."""
        with self.app.batch_update():
            for key, row in self._raw.items():
                for (_, column), value in zip(self._column_spec, row, strict=True):
                    self.update_cell(key, column, self.formatter(column, value))


class TablePane(Vertical):
    """A bordered pane: a filter Input (hidden until `/`) above a KeyedTable."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "close_filter", "Close filter", show=False, id="close_filter"),
    ]
    COLUMNS: ClassVar[Sequence[tuple[str, str]]] = ()
    SORT_COLUMNS: ClassVar[tuple[str, ...]] = ()
    SORT_REVERSE: ClassVar[bool] = False
    TITLE = ""

    def __init__(self, *, id: str) -> None:  # noqa: A002 - Textual's name for it
        super().__init__(id=id, classes="pane")
        self.filter_text = ""
        self.table = KeyedTable(self.COLUMNS, id=f"{id}-table")
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
        value = self.app.get_css_variables().get(variable)
        try:
            color = Color.parse(value).rich_color if value else None
        except ColorParseError:  # e.g. $text-muted is "auto 60%": dim the default instead
            return Style(bold=bold, dim=True)
        return Style(color=color, bold=bold, dim=dim)

    def format_cell(self, column: str, value: Any) -> Any:
        return "" if value is None else str(value)

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
        self.filter_text = event.value.strip().lower()
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
