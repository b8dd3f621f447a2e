"""The size comparison of a finished job: source disk, extracted image, uploaded image.

Virtual, allocated and apparent sizes as horizontal bars with humanized numbers and the ratio
to the source's virtual size: the ``ls -lash`` + ``qemu-img info`` view of the runbook.
Pure rendering from the ``sizes`` dict of a job's result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from snaptui.core.present import UNKNOWN, size_text

# (item, metric, key in the result's ``sizes``); the extracted image keeps the source's virtual
# size (qemu-img convert never resizes), so that row repeats the source's number.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("source disk", "virtual", "source_virtual"),
    ("", "allocated", "source_actual"),
    ("", "apparent", "source_apparent"),
    ("extracted", "virtual", "source_virtual"),
    ("", "allocated", "output_actual"),
    ("", "apparent", "output_apparent"),
    ("uploaded", "size", "uploaded"),
)
SHORT = {"source disk": "source", "extracted": "output", "uploaded": "upload"}
EIGHTHS = " ▏▎▍▌▋▊▉"
METRIC_W, RATIO_W = 9, 4
WIDE = 56  # from this width on, full item names and wider numbers


def bar(value: float, maximum: float, width: int) -> str:
    """A left-aligned bar of ``width`` cells with eighth-cell precision."""
    if width <= 0:
        return ""
    if maximum <= 0 or value <= 0:
        return " " * width
    eighths = round(min(value / maximum, 1.0) * width * 8)
    if eighths == 0:
        eighths = 1  # anything above zero stays visible
    full, rest = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[rest] if rest else "")
    return text.ljust(width)


def ratio(value: int | float | None, base: int | float | None) -> str:
    if value is None or not base:
        return UNKNOWN
    pct = 100.0 * value / base
    return f"{pct:.0f}%" if pct >= 1 or pct == 0 else "<1%"


def render_sizes(sizes: dict[str, Any], width: int = 60, title: str | None = None,
                 styles: Mapping[str, Style | str] | None = None) -> Table:
    """A table of bars for one image's ``sizes``; bars share one scale (the largest value).

    ``styles`` maps 'source', 'output' and 'upload' to the bar styles (default: none)."""
    styles = styles or {}
    values = [sizes.get(key) for _, _, key in ROWS]
    known = [v for v in values if isinstance(v, int | float)]
    maximum = max(known, default=0)
    base = sizes.get("source_virtual")
    wide = width >= WIDE
    label_w, number_w = (11, 10) if wide else (6, 9)
    bar_w = max(3, width - label_w - METRIC_W - number_w - RATIO_W - 4)
    table = Table.grid(padding=(0, 1))
    table.add_column(width=label_w, no_wrap=True, overflow="ellipsis")
    table.add_column(width=METRIC_W, no_wrap=True, style="dim")
    table.add_column(width=bar_w, no_wrap=True)
    table.add_column(width=number_w, justify="right", no_wrap=True)
    table.add_column(width=RATIO_W, justify="right", no_wrap=True, style="dim")
    if title:
        table.add_row(Text(title, style="bold"), "", "", "", "")
    for (item, metric, key), value in zip(ROWS, values, strict=True):
        kind = "upload" if key == "uploaded" else key.split("_")[0]
        table.add_row(
            Text(item if wide else SHORT.get(item, item), style="bold"), metric,
            Text(bar(value or 0, maximum, bar_w), style=styles.get(kind, "")),
            size_text(value), ratio(value, base),
        )
    return table


class SizeBars(Widget):
    """Renders the size comparison of one or more images of a job (``result['images']``)."""

    DEFAULT_CSS = """
    SizeBars { height: auto; }
    SizeBars > .size-bars--source { color: $secondary; }
    SizeBars > .size-bars--output { color: $primary; }
    SizeBars > .size-bars--upload { color: $success; }
    """

    COMPONENT_CLASSES = {"size-bars--source", "size-bars--output", "size-bars--upload"}

    images: reactive[list[dict[str, Any]]] = reactive(list, layout=True)

    def __init__(self, images: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_reactive(SizeBars.images, list(images or []))

    def render(self) -> RenderableType:
        width = self.size.width or 60
        grid = Table.grid()
        grid.add_column()
        styles = {kind: self.get_component_rich_style(f"size-bars--{kind}")
                  for kind in ("source", "output", "upload")}
        multi = len(self.images) > 1
        for image in self.images:
            title = f"{image.get('target', '')}: {image.get('name', '')}" if multi else None
            if image.get("demo"):  # the demo's pretend sizes say so
                grid.add_row(Text(str(image["demo"]), style="italic dim", no_wrap=True,
                                  overflow="ellipsis"))
            grid.add_row(render_sizes(image.get("sizes", {}), width, title, styles))
        if not self.images:
            grid.add_row(Text("no sizes recorded", style="dim"))
        return grid

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        multi = len(self.images) > 1
        marks = sum(1 for image in self.images if image.get("demo"))
        return max(1, len(self.images) * (len(ROWS) + (1 if multi else 0)) + marks)
