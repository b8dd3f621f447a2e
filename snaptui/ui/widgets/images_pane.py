"""The Images pane: Glance or library images keyed by id, newest first; optional domain filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text

from snaptui.core.keep.overview import is_backup
from snaptui.core.models import ImageRecord
from snaptui.core.present import PRUNE_GLYPH, date_text, size_text
from snaptui.ui.widgets.table_pane import ColumnSpec, Row, TablePane

STATUS_LOOK = {"active": "success", "queued": "warning", "saving": "warning",
               "importing": "warning", "killed": "error", "deleted": "error",
               "pending_delete": "error", "deactivated": "foreground-muted"}


class ImagesPane(TablePane):
    """Images: name, status, size, created, format, snapshot or not."""

    # Priority order: at 80 columns Name, Status and Size; Created from ~120, then the rest.
    COLUMNS: ClassVar = (ColumnSpec("Name", "name"), ColumnSpec("Status", "status", 7),
                         ColumnSpec("Size", "size", 8, 12),
                         ColumnSpec("Created", "created", 10, 18),
                         ColumnSpec("Fmt", "format", 5, 18), ColumnSpec("Snap", "snap", 4, 18))
    SORT_COLUMNS: ClassVar = ("created", "name")
    SORT_REVERSE: ClassVar = True
    TITLE = "Images"

    def __init__(self, *, id: str = "images") -> None:  # noqa: A002
        super().__init__(id=id)
        self.images: dict[str, ImageRecord] = {}
        self._rows: dict[str, Row] = {}
        self._searched: dict[str, str] = {}
        self.only_domain: tuple[str, str] | None = None  # (uuid, name)
        self.only_base: str | None = None  # and, with it, the domain's base image (Nova's)
        self.source = ""
        self.pruning: dict[str, str] = {}  # image id → the schedule whose next run removes it

    def set_source(self, kind: str, location: str | None) -> None:
        """Say where images come from: Glance (cloud) or the library directory's path."""
        if location and location.startswith(str(Path.home()) + "/"):
            location = "~" + location[len(str(Path.home())):]
        self.source = f"{kind} {location or ''}".strip()
        self._title()

    def on_resize(self) -> None:
        self._title()

    def _title(self) -> None:
        """'Images — library …/demo/library · only web-01', shortened to fit the border: the
        cloud's URL goes first, then the path is cut from the left, then the source itself."""
        only = f" · only {self.only_domain[1]}" if self.only_domain else ""
        room = self.size.width - 6  # corners, the rule and spaces around the title
        title = f"Images — {self.source}{only}"
        if self.size.width and len(title) > room:
            kind, _, location = self.source.partition(" ")
            location = location.split(" (", 1)[0]  # glance: "cloud (endpoint)" → cloud
            left = room - len("Images — ") - len(only) - len(kind) - 1
            if len(location) > left:
                location = "…" + location[-(left - 1):] if left >= 6 else ""
            title = f"Images — {kind} {location}".rstrip() + only
            if len(title) > room:
                title = f"Images{only}"
        self.border_title = title

    def format_cell(self, column: str, value: Any) -> Any:
        if column == "status":
            look = STATUS_LOOK.get(value, "foreground-muted")
            return Text(str(value), style=self.theme_style(look), overflow="ellipsis")
        if column == "name" and str(value).startswith(PRUNE_GLYPH + " "):
            return Text.assemble((PRUNE_GLYPH, self.theme_style("error", bold=True)),
                                 str(value)[len(PRUNE_GLYPH):], overflow="ellipsis")
        if column == "size":
            return Text(size_text(value), justify="right")
        if column == "created":
            return date_text(value)[:10]
        if column == "snap":
            if value == "backup":  # image_type=backup: a rotated or scheduled backup
                return Text("bkp", style=self.theme_style("success"))
            return (Text("yes", style=self.theme_style("accent")) if value
                    else Text("no", style=self.theme_style("foreground-muted")))
        return super().format_cell(column, value)

    def set_images(self, images: list[ImageRecord]) -> None:
        """Replace the pane's data and re-sync the table."""
        self.images = {i.id: i for i in images}
        # Rows and the lower-case text a filter searches, made once per refresh rather than
        # on every key typed into the filter (5,000 images: ~20 ms a key before).
        self._rows = {i.id: self._row(i) for i in images}
        self._searched = {i.id: "\0".join(str(t).lower() for t in (
            i.name, i.id, i.status, i.disk_format, i.instance_uuid,
            i.properties.get("base_image_ref")) if t is not None)
            for i in images}
        self.refresh_rows()

    def _row(self, image: ImageRecord) -> Row:
        name = f"{PRUNE_GLYPH} {image.name}" if image.id in self.pruning else image.name
        return (name, image.status, image.size, image.created_at, image.disk_format or "—",
                "backup" if is_backup(image) else image.is_snapshot)

    def set_pruning(self, pruning: dict[str, str]) -> None:
        """Mark (✂ before the name) the images the next run of a schedule would remove."""
        changed = set(pruning) ^ set(self.pruning)
        self.pruning = dict(pruning)
        if changed & set(self.images):
            for image_id in changed & set(self.images):
                self._rows[image_id] = self._row(self.images[image_id])
            self.refresh_rows()

    def set_only_domain(self, domain: tuple[str, str] | None, base: str | None = None) -> None:
        """Show only images whose instance_uuid is that domain's, and its base image (the
        image a Nova instance booted from) when ``base`` names it (None: all images)."""
        self.only_domain = domain
        self.only_base = base if domain else None
        self._title()
        self.refresh_rows()

    def refresh_rows(self) -> None:
        text, only, images = self.filter_text, self.only_domain, self.images
        rows = {image_id: row for image_id, row in self._rows.items()
                if (not only or images[image_id].instance_uuid == only[0]
                    or image_id == self.only_base)
                and (not text or text in self._searched[image_id])}
        self.table.sync(rows)
        self.border_subtitle = f"{len(rows)}/{len(self.images)}"

    @property
    def selected(self) -> ImageRecord | None:
        key = self.table.selected_key
        return self.images.get(key) if key else None

    def select(self, image_id: str) -> bool:
        """Move the cursor to that image (clearing filters that hide it)."""
        if image_id not in self.images:
            return False
        if image_id not in self.table.rows:
            self.only_domain = None
            self._title()
            self.action_close_filter()
            self.refresh_rows()
        self.table.move_cursor(row=self.table.get_row_index(image_id), animate=False)
        self.table.focus()
        return True
