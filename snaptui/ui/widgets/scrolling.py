"""Sizing the scrollable area of a line-API widget without a screen layout."""

from __future__ import annotations

from textual.geometry import Size
from textual.scroll_view import ScrollView


def set_virtual_size(widget: ScrollView, size: Size, *, scrollbar: bool) -> None:
    """Give ``widget`` a new scrollable ``size``. Setting ``virtual_size`` asks for a layout
    of the whole screen; that is needed only when the vertical scrollbar comes or goes
    (``scrollbar``: whether it shows at ``size``), since its column changes the widget's
    content width. Otherwise the size is set quietly and the scrollbars updated in place."""
    if not widget.is_mounted or scrollbar != widget.show_vertical_scrollbar:
        widget.virtual_size = size
        return
    widget.set_reactive(ScrollView.virtual_size, size)
    widget._scroll_update(size)  # scrollbar window sizes, scroll offsets clamped
    widget.refresh()
