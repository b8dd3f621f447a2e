"""The Domains pane: one row per libvirt domain, keyed by uuid, state as glyph + word."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import humanize
from rich.text import Text

from snaptui.core.choices import snapshot_disks
from snaptui.core.models import DomainInfo, DomainState
from snaptui.ui.table_pane import ColumnSpec, TablePane

# Short state words (at most 7 letters) so the State column stays narrow beside its glyph.
STATE_WORD: dict[DomainState, str] = {
    DomainState.SHUTOFF: "shutoff", DomainState.SHUTDOWN: "halting",
    DomainState.PMSUSPENDED: "asleep", DomainState.NOSTATE: "unknown",
}

# glyph, theme colour variable
STATE_LOOK: dict[DomainState, tuple[str, str]] = {
    DomainState.RUNNING: ("▶", "success"),
    DomainState.PAUSED: ("‖", "warning"),
    DomainState.SHUTOFF: ("■", "foreground-muted"),
    DomainState.SAVED: ("◆", "secondary"),
    DomainState.CRASHED: ("✖", "error"),
    DomainState.SHUTDOWN: ("▼", "warning"),
    DomainState.BLOCKED: ("◌", "warning"),
    DomainState.PMSUSPENDED: ("☾", "secondary"),
    DomainState.NOSTATE: ("?", "foreground-muted"),
}


def size_text(size: int | None) -> str:
    """Humanized binary size, '—' when unknown."""
    return "—" if size is None else humanize.naturalsize(size, binary=True, format="%.1f")


def short_size(size: int | None) -> str:
    """At most 8 cells for a table: '29.5 MiB', '512 MiB', '900 B'; '—' when unknown."""
    if size is None:
        return "—"
    number, _, unit = humanize.naturalsize(size, binary=True, format="%.1f").partition(" ")
    if unit in ("Byte", "Bytes"):
        return f"{size} B"
    if len(number) > 4:  # 512.0 → 512: the tenth does not matter at that size
        number = f"{float(number):.0f}"
    return f"{number} {unit}"


def short_date(iso: str | None) -> str:
    """'2025-05-12 07:15' from an ISO 8601 timestamp; '—' when there is none."""
    if not iso:
        return "—"
    return iso.replace("T", " ")[:16]


@dataclass(frozen=True)
class DomainExtras:
    """What the Domains pane shows beside the DomainInfo: sizes and snapshot images."""

    allocated: int | None = None
    snapshots: int = 0
    last_snapshot: str | None = None


class DomainsPane(TablePane):
    """Domains: name, state, allocated size, snapshot images, last snapshot, disks."""

    # Priority order: at 80 columns Name, State and Alloc; Snaps and Last snap from ~120.
    COLUMNS: ClassVar = (ColumnSpec("Name", "name"), ColumnSpec("State", "state", 9),
                         ColumnSpec("Alloc", "alloc", 8, 10), ColumnSpec("Snaps", "snaps", 5, 14),
                         ColumnSpec("Last snap", "last", 10, 14),
                         ColumnSpec("Disks", "disks", 5, 16))
    SORT_COLUMNS: ClassVar = ("name",)
    TITLE = "Domains"

    def __init__(self, *, id: str = "domains") -> None:  # noqa: A002
        super().__init__(id=id)
        self.domains: dict[str, DomainInfo] = {}
        self.extras: dict[str, DomainExtras] = {}

    def format_cell(self, column: str, value: Any) -> Any:
        if column == "state":
            glyph, variable = STATE_LOOK.get(value, ("?", "foreground-muted"))
            word = STATE_WORD.get(value, str(value))
            return Text(f"{glyph} {word}", style=self.theme_style(variable))
        if column == "alloc":
            return Text(short_size(value), justify="right")
        if column == "disks":
            return Text(str(value), justify="right")
        if column == "snaps":
            return Text(str(value) if value else "·", justify="right")
        if column == "last":
            return short_date(value)[:10]
        return super().format_cell(column, value)

    def set_domains(self, domains: list[DomainInfo], extras: dict[str, DomainExtras]) -> None:
        """Replace the pane's data (all domains) and re-sync the table."""
        self.domains = {d.uuid: d for d in domains}
        self.extras = extras
        self.refresh_rows()

    def update_domain(self, info: DomainInfo) -> None:
        """One domain changed (a libvirt event): update its row only."""
        self.domains[info.uuid] = info
        self.refresh_rows()

    def remove_domain(self, uuid: str) -> None:
        self.domains.pop(uuid, None)
        self.refresh_rows()

    def set_extras(self, extras: dict[str, DomainExtras]) -> None:
        self.extras = extras
        self.refresh_rows()

    def refresh_rows(self) -> None:
        rows = {}
        for uuid, d in self.domains.items():
            if not self.matches(d.name, d.uuid, d.state, d.nova and d.nova.name):
                continue
            extra = self.extras.get(uuid, DomainExtras())
            disks = len(snapshot_disks(d))
            # A Nova instance by its Nova name (libvirt's instance-0000002a is in the detail)
            name = f"nova:{d.nova.name}" if d.nova and d.nova.name else d.name
            rows[uuid] = (name, d.state, extra.allocated, extra.snapshots,
                          extra.last_snapshot, disks)
        self.table.sync(rows)
        self.border_subtitle = (f"{len(rows)}/{len(self.domains)} match {self.filter_text!r}"
                                if self.filter_text else f"{len(self.domains)}")
        self.refresh_bindings()  # a filter or a removal may leave no domain to act on

    @property
    def selected(self) -> DomainInfo | None:
        """The domain under the cursor."""
        key = self.table.selected_key
        return self.domains.get(key) if key else None

    def select(self, uuid: str) -> bool:
        """Move the cursor to that domain (clearing a filter that hides it)."""
        if uuid not in self.domains:
            return False
        if uuid not in self.table.rows and self.filter_text:
            self.action_close_filter()
        self.table.move_cursor(row=self.table.get_row_index(uuid), animate=False)
        self.table.focus()
        return True
