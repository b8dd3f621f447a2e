"""A titled pane holding a keyed DataTable that is updated in place, and a `/` filter Input."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input

from snaptui.ui.themes import ThemeStyles

Row = tuple[Hashable, ...]
MASS_REMOVAL = 50  # rows gone at once above which sync clears and re-adds
SCROLLBAR = 1  # columns kept free for the vertical scrollbar (see app.tcss)


@dataclass(frozen=True)
class ColumnSpec:
    """One column: fixed ``width``, or None for the one flexible column (the name) that takes
    what is left. An optional column shows only while the flexible one keeps ``min_flex``
    cells; columns are listed in priority order, so narrower panes drop them from the right."""

    label: str
    key: str
    width: int | None = None
    min_flex: int = 0


class SortableText(Text):
    """A cell that carries its row's sort key: DataTable sorts by cell values, and the
    columns a row sorts by may be hidden at the current width."""

    __slots__ = ("sort_key",)


def visible_columns(specs: Sequence[ColumnSpec], width: int,
                    padding: int = 1) -> list[tuple[ColumnSpec, int]]:
    """The columns that fit ``width`` cells, each with its width (the flexible one's filled)."""
    pad = 2 * padding
    chosen: list[ColumnSpec] = []
    for spec in specs:
        fixed = sum(c.width + pad for c in [*chosen, spec] if c.width is not None)
        flexible = width - fixed - pad
        if chosen and spec.width is not None and flexible < spec.min_flex:
            break
        chosen.append(spec)
    fixed = sum(c.width + pad for c in chosen if c.width is not None)
    return [(c, c.width if c.width is not None else max(6, width - fixed - pad)) for c in chosen]


class KeyedTable(DataTable):
    """DataTable whose rows are keyed by id and synced in place: changed cells are updated,
    new keys added and stale keys removed; the table is never cleared and rebuilt.

    Columns follow the table's width (see ColumnSpec): when the layout changes (a terminal
    resize), the columns are re-added and their cells refilled; rows, their order and the
    cursor stay."""

    def __init__(self, columns: Sequence[ColumnSpec], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._column_spec = tuple(columns)
        self._index = {spec.key: i for i, spec in enumerate(self._column_spec)}
        self._layout: list[tuple[ColumnSpec, int]] = []
        self._raw: dict[str, Row] = {}
        self.formatter = lambda column, value: value  # set by the pane
        # Columns whose raw values give the row order after rows are added.
        self.sort_columns: tuple[str, ...] = ()
        self.sort_reverse = False

    def on_mount(self) -> None:
        self._apply_layout(self.size.width or 80)

    def on_resize(self) -> None:
        if self.size.width:
            self._apply_layout(self.size.width)

    @property
    def shown_columns(self) -> list[str]:
        """Keys of the columns shown at the current width, left to right."""
        return [spec.key for spec, _ in self._layout]

    def _apply_layout(self, width: int) -> None:
        layout = visible_columns(self._column_spec, width - SCROLLBAR, self.cell_padding)
        if layout == self._layout:
            return
        with self.app.batch_update():
            for spec, _ in self._layout:
                self.remove_column(spec.key)
            self._layout = layout
            for spec, column_width in layout:
                self.add_column(spec.label, key=spec.key, width=column_width, default="")
            for key, row in self._raw.items():
                for spec, _ in layout:
                    self.update_cell(key, spec.key, self._cell(key, spec.key, row))

    @property
    def selected_key(self) -> str | None:
        """Key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def _cell(self, key: str, column: str, row: Row) -> Any:
        value = self.formatter(column, row[self._index[column]])
        if self._layout and column == self._layout[0][0].key:
            first = SortableText(overflow="ellipsis", no_wrap=True)
            first.append_text(value if isinstance(value, Text) else Text(str(value)))
            first.sort_key = tuple("" if row[self._index[c]] is None else row[self._index[c]]
                                   for c in self.sort_columns)
            return first
        return value

    def cell_text(self, key: str, column: str) -> str:
        """The plain text a cell shows, or would show when its column is hidden."""
        value = self.formatter(column, self._raw[key][self._index[column]])
        return value.plain if isinstance(value, Text) else str(value)

    def sync(self, rows: dict[str, Row]) -> None:
        """Make the table show exactly ``rows`` (by key), touching only what changed."""
        keep = self.selected_key
        added = False
        shown = self.shown_columns
        gone = [k for k in self._raw if k not in rows]
        with self.app.batch_update():
            if len(gone) > MASS_REMOVAL and len(gone) * 4 > len(self._raw):
                # DataTable.remove_row re-indexes every row: thousands of them (a filter over
                # 5,000 images) take seconds one by one, a clear and re-add a fraction of that.
                self.clear()
                self._raw.clear()
            else:
                for key in gone:
                    self.remove_row(key)
                    del self._raw[key]
            for key, row in rows.items():
                old = self._raw.get(key)
                if old is None:
                    self.add_row(*[self._cell(key, c, row) for c in shown], key=key)
                    added = True
                elif old != row:
                    for column in shown:
                        i = self._index[column]
                        if old[i] != row[i] or column == shown[0] and any(
                                old[self._index[c]] != row[self._index[c]]
                                for c in self.sort_columns):
                            self.update_cell(key, column, self._cell(key, column, row))
                self._raw[key] = row
            if added and self.sort_columns and shown:
                self.sort(shown[0], key=lambda cell: cell.sort_key, reverse=self.sort_reverse)
            if keep in self._raw:
                self.move_cursor(row=self.get_row_index(keep), animate=False)

    def recolor(self) -> None:
        """Re-render every cell (after a theme change: colours come from the theme)."""
        with self.app.batch_update():
            for key, row in self._raw.items():
                for column in self.shown_columns:
                    self.update_cell(key, column, self._cell(key, column, row))


class TablePane(Vertical):
    """A bordered pane: a filter Input (hidden until `/`) above a KeyedTable."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "close_filter", "Close filter", show=False, id="close_filter"),
    ]
    COLUMNS: ClassVar[Sequence[ColumnSpec]] = ()
    SORT_COLUMNS: ClassVar[tuple[str, ...]] = ()
    SORT_REVERSE: ClassVar[bool] = False
    TITLE = ""

    def __init__(self, *, id: str) -> None:  # noqa: A002 - Textual's name for it
        super().__init__(id=id, classes="pane")
        self.filter_text = ""
        self._styles = ThemeStyles()
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
