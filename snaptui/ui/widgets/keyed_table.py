"""KeyedTable: a row-cursor table over keyed rows that renders only the rows on screen.

Textual's DataTable keeps a renderable per cell and re-indexes every row on add/remove/sort,
so a pane of 5,000 images took a second to fill and ~1.4 s to come back from a filter. This
widget keeps the rows as plain tuples (keyed by id) in display order and turns a row into a
line (a Strip) only when it is painted, caching the lines of rows that did not change: filling,
filtering and sorting cost list and dict work in proportion to the rows, painting in proportion
to the visible lines.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from snaptui.ui.widgets.scrolling import set_virtual_size

Row = tuple[Hashable, ...]
SCROLLBAR = 1  # columns kept free for the vertical scrollbar (see app.tcss)
CELL_PADDING = 1  # blank cells on each side of a column
HEADER_LINES = 1


@dataclass(frozen=True)
class ColumnSpec:
    """One column: fixed ``width``, or None for the one flexible column (the name) that takes
    what is left. An optional column shows only while the flexible one keeps ``min_flex``
    cells; columns are listed in priority order, so narrower panes drop them from the right."""

    label: str
    key: str
    width: int | None = None
    min_flex: int = 0


def visible_columns(specs: Sequence[ColumnSpec], width: int,
                    padding: int = CELL_PADDING) -> list[tuple[ColumnSpec, int]]:
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


def cell_segments(value: object, width: int, style: Style, console: Console) -> list[Segment]:
    """One cell ``width`` wide (plus its padding) in ``style``, the value's own styles on top;
    a Text's ``justify="right"`` is honoured, anything longer ends in an ellipsis."""
    if isinstance(value, Text):
        text = value.copy()
        if "\n" in text.plain:
            text = Text(text.plain.replace("\n", " "), style=text.style, justify=text.justify)
    else:
        text = Text(str(value).replace("\n", " "))
    text.truncate(width, overflow="ellipsis")
    room = width - text.cell_len
    left = room if text.justify == "right" else 0
    pad = " " * CELL_PADDING
    segments = [Segment(pad + " " * left, style)]
    if text.plain:
        # Text.render leaves the Text's own style out when it has no spans: apply it here.
        own = text.style if isinstance(text.style, Style) else console.get_style(text.style)
        segments += Segment.apply_style(text.render(console), style + own)
    segments.append(Segment(" " * (room - left) + pad, style))
    return segments



class RowMessage(Message):
    """About one row of a KeyedTable: its key and index."""

    def __init__(self, table: KeyedTable, cursor_row: int, row_key: str) -> None:
        super().__init__()
        self.table = table
        self.cursor_row = cursor_row
        self.row_key = row_key

    @property
    def control(self) -> KeyedTable:
        return self.table


class KeyedTable(ScrollView, can_focus=True):
    """Rows keyed by id, synced in place (``sync``), shown in sort order with a row cursor.

    Columns follow the widget's width (see ColumnSpec): a resize recomputes which columns show;
    rows, their order and the cursor stay. Only what changed is repainted: a cursor move two
    lines, a sync the visible lines of rows that changed (lines of other rows come from cache).
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"keyed-table--header", "keyed-table--cursor"}
    DEFAULT_CSS = """
    KeyedTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        overflow-x: hidden;
        overflow-y: auto;
        &:focus {
            background-tint: $foreground 5%;
            & > .keyed-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .keyed-table--header { background-tint: $foreground 5%; }
        }
        & > .keyed-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .keyed-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .keyed-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "first", "First row", show=False),
        Binding("end,ctrl+end", "last", "Last row", show=False),
    ]

    class RowHighlighted(RowMessage):
        """The cursor is on another row (or the row under it changed key)."""

    class RowSelected(RowMessage):
        """Enter (or a click on the highlighted row) chose the row under the cursor."""

    def __init__(self, columns: Sequence[ColumnSpec], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._column_spec = tuple(columns)
        self._index = {spec.key: i for i, spec in enumerate(self._column_spec)}
        self._layout: list[tuple[ColumnSpec, int]] = []
        self._raw: dict[str, Row] = {}
        self._order: list[str] = []
        self._position: dict[str, int] = {}
        self._cursor = 0
        self._highlighted: str | None = None
        # Painted lines per base style (focused and blurred differ): tab between panes
        # repaints from cache. Cleared when rows, columns or the theme change.
        self._lines_by_style: dict[Style, LRUCache[str, Strip]] = {}
        self.formatter: Callable[[str, Any], Any] = lambda column, value: value  # by the pane
        # Columns whose raw values give the row order.
        self.sort_columns: tuple[str, ...] = ()
        self._sort_index: list[int] = []
        self._sort_keys: dict[str, tuple[Row, tuple[Any, ...]]] = {}
        self.sort_reverse = False

    # -- what the table holds --------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def rows(self) -> dict[str, int]:
        """Row key → index in display order (``key in table.rows``)."""
        return self._position

    @property
    def ordered_keys(self) -> list[str]:
        """Row keys top to bottom."""
        return list(self._order)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def selected_key(self) -> str | None:
        """Key of the row under the cursor, if any."""
        return self._order[self._cursor] if self._order else None

    @property
    def shown_columns(self) -> list[str]:
        """Keys of the columns shown at the current width, left to right."""
        return [spec.key for spec, _ in self._layout]

    def get_row_index(self, key: str) -> int:
        return self._position[key]

    def cell_text(self, key: str, column: str) -> str:
        """The plain text a cell shows, or would show when its column is hidden."""
        value = self.formatter(column, self._raw[key][self._index[column]])
        return value.plain if isinstance(value, Text) else str(value)

    # -- updating ----------------------------------------------------------------------------------

    def _sort_key(self, key: str) -> tuple[Any, ...]:
        """The row's sort key, cached with the row it was made from (a filter hides and shows
        the same rows again and again)."""
        row = self._raw[key]
        cached = self._sort_keys.get(key)
        if cached is not None and (cached[0] is row or cached[0] == row):
            return cached[1]
        sort_key = tuple("" if row[i] is None else row[i] for i in self._sort_index)
        self._sort_keys[key] = (row, sort_key)
        return sort_key

    def sync(self, rows: Mapping[str, Row]) -> None:
        """Make the table show exactly ``rows`` (by key); repaint only what changed."""
        keep = self.selected_key
        old_raw = self._raw
        changed = [k for k, row in rows.items() if old_raw.get(k, row) != row]
        sort_idx = self._sort_index = [self._index[c] for c in self.sort_columns]
        reorder = len(rows) != len(old_raw) or any(k not in old_raw for k in rows) or any(
            old_raw[k][i] != rows[k][i] for k in changed for i in sort_idx)
        self._raw = dict(rows)
        for key in changed:
            for lines in self._lines_by_style.values():
                lines.discard(key)
        if reorder:
            order = list(rows)
            if self.sort_columns:
                if len(self._sort_keys) > 2 * len(rows) + 1000:  # keys gone for good
                    self._sort_keys = {k: v for k, v in self._sort_keys.items() if k in rows}
                order.sort(key=self._sort_key, reverse=self.sort_reverse)
            self._order = order
            self._position = {k: i for i, k in enumerate(order)}
            self._update_virtual_size()
            cursor = self._position.get(keep, self._cursor) if keep is not None else self._cursor
            self._set_cursor(min(cursor, max(0, len(order) - 1)), force_refresh=True)
            self.refresh()
        else:
            top = int(self.scroll_y)
            visible = range(top, top + self.size.height)
            for key in changed:
                if self._position[key] in visible:
                    self._refresh_row(self._position[key])
            self._post_highlight()

    def recolor(self) -> None:
        """Re-render every line (after a theme change: cell colours come from the theme)."""
        self._lines_by_style.clear()
        self.refresh()

    def _update_virtual_size(self) -> None:
        """Rows + header as the scrollable height (a filter typed over thousands of rows
        changes it on every key: no screen layout unless the scrollbar comes or goes)."""
        size = Size(self.size.width, len(self._order) + HEADER_LINES)
        height = self.scrollable_content_region.height or self.size.height
        set_virtual_size(self, size, scrollbar=size.height > height)

    # -- cursor ------------------------------------------------------------------------------------

    def move_cursor(self, *, row: int, animate: bool = False, scroll: bool = True) -> None:
        """Put the cursor on ``row`` (clamped) and scroll it into view."""
        del animate  # moves are immediate
        self._set_cursor(max(0, min(row, len(self._order) - 1)), scroll=scroll)

    def _set_cursor(self, row: int, *, scroll: bool = True, force_refresh: bool = False) -> None:
        old = self._cursor
        self._cursor = max(0, row)
        if scroll:
            self._scroll_to_cursor()
        if old != self._cursor and not force_refresh:
            self._refresh_row(old)
            self._refresh_row(self._cursor)
        self._post_highlight()

    def _post_highlight(self) -> None:
        key = self.selected_key
        if key is not None and key != self._highlighted:
            self._highlighted = key
            self.post_message(self.RowHighlighted(self, self._cursor, key))
        elif key is None:
            self._highlighted = None

    def _page(self) -> int:
        return max(1, (self.scrollable_content_region.height or self.size.height) - HEADER_LINES)

    def _scroll_to_cursor(self) -> None:
        top, page = int(self.scroll_y), self._page()
        if self._cursor < top:
            self.scroll_y = self._cursor
        elif self._cursor >= top + page:
            self.scroll_y = self._cursor - page + 1

    def _refresh_row(self, row: int) -> None:
        line = row + HEADER_LINES - int(self.scroll_y)
        if HEADER_LINES <= line < self.size.height:
            self.refresh(Region(0, line, self.size.width, 1))

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self._cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(row=self._cursor - self._page())

    def action_page_down(self) -> None:
        self.move_cursor(row=self._cursor + self._page())

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def action_select_cursor(self) -> None:
        if key := self.selected_key:
            self.post_message(self.RowSelected(self, self._cursor, key))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < HEADER_LINES:
            return
        row = offset.y - HEADER_LINES + int(self.scroll_y)
        if row >= len(self._order):
            return
        event.stop()
        if row == self._cursor:
            self.action_select_cursor()
        else:
            self.move_cursor(row=row)

    # -- layout ------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._apply_layout(self.size.width or 80)
        self._update_virtual_size()

    def on_resize(self) -> None:
        if self.size.width:
            self._apply_layout(self.size.width)
            self._scroll_to_cursor()

    def _apply_layout(self, width: int) -> None:
        layout = visible_columns(self._column_spec, width - SCROLLBAR)
        if layout != self._layout:
            self._layout = layout
            self._lines_by_style.clear()
            self.refresh()

    # -- painting ----------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        lines = self._lines_by_style.get(base)
        if lines is None:
            if len(self._lines_by_style) >= 4:  # a theme change: older styles are stale
                self._lines_by_style.clear()
            lines = self._lines_by_style[base] = LRUCache(2048)
        if y < HEADER_LINES:
            style = base + self.get_component_rich_style("keyed-table--header")
            segments: list[Segment] = []
            for spec, column_width in self._layout:
                segments += cell_segments(Text(spec.label), column_width, style, self.app.console)
            return Strip(segments).adjust_cell_length(width, style)
        row = y - HEADER_LINES + int(self.scroll_y)
        if row >= len(self._order):
            return Strip.blank(width, base)
        key = self._order[row]
        strip = lines.get(key)
        if strip is None or strip.cell_length != width:
            strip = self._render_row(key, base, width)
            lines[key] = strip
        if row == self._cursor:  # the cursor's colours win over the cells' (as in DataTable)
            cursor = self.get_component_rich_style("keyed-table--cursor")
            return Strip(Segment.apply_style(strip, post_style=cursor), width)
        return strip

    def _render_row(self, key: str, style: Style, width: int) -> Strip:
        row = self._raw[key]
        segments: list[Segment] = []
        console = self.app.console
        for spec, column_width in self._layout:
            value = self.formatter(spec.key, row[self._index[spec.key]])
            segments += cell_segments(value, column_width, style, console)
        return Strip(segments).adjust_cell_length(width, style)
