"""KeyedTable (the dashboard's tables): keyed sync, sort, cursor, paging, mouse, painted lines."""

from __future__ import annotations

from textual.app import App, ComposeResult
from ui_pilot import screen_text

from snaptui.ui.widgets.keyed_table import ColumnSpec, KeyedTable, visible_columns

COLUMNS = (ColumnSpec("Name", "name"), ColumnSpec("Size", "size", 6),
           ColumnSpec("Note", "note", 10, 30))


def rows(n: int, *, prefix: str = "vm") -> dict[str, tuple]:
    return {f"k{i}": (f"{prefix}-{i:04d}", i, f"note {i}") for i in range(n)}


class TableApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.highlighted: list[str] = []
        self.selected: list[str] = []

    def compose(self) -> ComposeResult:
        table = KeyedTable(COLUMNS, id="t")
        table.sort_columns = ("name",)
        yield table

    def on_keyed_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        self.highlighted.append(event.row_key)

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        self.selected.append(event.row_key)


def test_visible_columns_drop_optional_ones_when_narrow() -> None:
    assert [c.key for c, _ in visible_columns(COLUMNS, 60)] == ["name", "size", "note"]
    assert [c.key for c, _ in visible_columns(COLUMNS, 40)] == ["name", "size"]
    name_width = dict((c.key, w) for c, w in visible_columns(COLUMNS, 40))["name"]
    assert name_width == 40 - (6 + 2) - 2


async def test_sync_sorts_keeps_the_cursor_on_its_row_and_repaints() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        data = dict(reversed(list(rows(1000).items())))  # arrives unsorted
        table.sync(data)
        await pilot.pause()
        assert table.row_count == 1000
        assert [table.cell_text(k, "name") for k in table.ordered_keys] == sorted(
            r[0] for r in data.values())
        assert app.highlighted == ["k0"] and table.selected_key == "k0"
        text = screen_text(app)
        assert "Name" in text and "Note" in text and "vm-0000" in text and "vm-0018" in text
        assert "vm-0019" not in text  # 19 lines below the header: only what fits is painted

        table.focus()
        await pilot.press("down", "down", "down")
        assert table.selected_key == "k3" and app.highlighted[-1] == "k3"
        # A filter leaves a subset: the cursor stays on its row, now at another index.
        table.sync({k: v for k, v in data.items() if k in ("k1", "k3", "k500")})
        await pilot.pause()
        assert table.ordered_keys == ["k1", "k3", "k500"]
        assert table.selected_key == "k3" and table.cursor_row == 1
        # All rows back: still on it.
        table.sync(data)
        await pilot.pause()
        assert table.selected_key == "k3" and table.cursor_row == 3
        # A changed value is painted; the row moves when its sort column changes.
        changed = dict(data, k3=("aaa-first", 3, "renamed"))
        table.sync(changed)
        await pilot.pause()
        assert table.ordered_keys[0] == "k3" and table.selected_key == "k3"
        assert "aaa-first" in screen_text(app) and "renamed" in screen_text(app)
        # The row under the cursor disappears: the cursor stays at its index (clamped).
        table.sync({k: v for k, v in changed.items() if k != "k3"})
        await pilot.pause()
        assert table.cursor_row == 0 and table.selected_key == "k0"
        assert app.highlighted[-1] == "k0"
        table.sync({})
        await pilot.pause()
        assert table.row_count == 0 and table.selected_key is None


async def test_paging_keeps_the_cursor_visible_and_enter_and_clicks_select() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows(200))
        table.focus()
        await pilot.pause()
        await pilot.press("pagedown")
        page = table.cursor_row
        assert page >= 9  # 12 lines, one is the header
        await pilot.press("pagedown", "pagedown")
        assert table.cursor_row == 3 * page
        assert table.scroll_y <= table.cursor_row < table.scroll_y + 11
        assert f"vm-{table.cursor_row:04d}" in screen_text(app)
        await pilot.press("end")
        assert table.selected_key == "k199" and "vm-0199" in screen_text(app)
        await pilot.press("home")
        assert table.cursor_row == 0 and table.scroll_y == 0
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == ["k0"]
        # Click the third data row (header is line 0): the cursor moves; a second click selects.
        await pilot.click(KeyedTable, offset=(3, 3))
        await pilot.pause()
        assert table.selected_key == "k2" and app.selected == ["k0"]
        await pilot.click(KeyedTable, offset=(3, 3))
        await pilot.pause()
        assert app.selected == ["k0", "k2"]
        await pilot.click(KeyedTable, offset=(3, 0))  # the header: nothing happens
        await pilot.pause()
        assert table.selected_key == "k2" and app.selected == ["k0", "k2"]
