"""The Domains pane: one row per libvirt domain, keyed by HOST:UUID, state as glyph + word."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import humanize
from rich.text import Text
from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import Static

from snaptui.core.choices import snapshot_disks
from snaptui.core.fleet import key_of
from snaptui.core.models import DomainInfo, DomainState
from snaptui.ui.table_pane import ColumnSpec, Row, TablePane

HOST_WIDTH = (4, 12)  # the Host column: as wide as the longest host name, within these

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
    """Domains: name, state, allocated size, snapshot images, last snapshot, disks; with
    several hosts a Host column first, rows keyed ``HOST:UUID``, and a line per down host."""

    # Priority order: at 80 columns Name, State and Alloc; Snaps and Last snap from ~120.
    COLUMNS: ClassVar = (ColumnSpec("Name", "name"), ColumnSpec("State", "state", 9),
                         ColumnSpec("Alloc", "alloc", 8, 10), ColumnSpec("Snaps", "snaps", 5, 14),
                         ColumnSpec("Last snap", "last", 10, 14),
                         ColumnSpec("Disks", "disks", 5, 16))
    SORT_COLUMNS: ClassVar = ("name",)
    TITLE = "Domains"

    def __init__(self, *, hosts: Sequence[str] = (), id: str = "domains") -> None:  # noqa: A002
        self.show_host = len(hosts) > 1
        columns: tuple[ColumnSpec, ...] = tuple(self.COLUMNS)
        if self.show_host:
            width = max(HOST_WIDTH[0], min(HOST_WIDTH[1], max(len(h) for h in hosts)))
            columns = (ColumnSpec("Host", "host", width), *columns)
        super().__init__(id=id, columns=columns)
        if self.show_host:  # one list in name order across hosts; the host breaks ties
            self.table.sort_columns = ("name", "host")
        self.domains: dict[str, DomainInfo] = {}  # HOST:UUID → domain
        self._by_uuid: dict[str, DomainInfo] | None = None  # built when asked, after a change
        self.extras: dict[str, DomainExtras] = {}
        self.down: dict[str, str] = {}  # host → why it is down
        self.down_lines = Static("", id=f"{id}-down", classes="hosts-down", markup=False)

    def compose(self) -> ComposeResult:
        yield self.filter_input
        yield self.down_lines
        yield self.table

    def on_mount(self) -> None:
        super().on_mount()
        self.down_lines.display = False

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
        if column == "host":
            return Text(value, style=self.theme_style("secondary"), overflow="ellipsis")
        return super().format_cell(column, value)

    def set_host_domains(self, host: str, domains: Sequence[DomainInfo],
                         error: str | None = None) -> None:
        """Replace one host's domains (none when it is down, with ``error``); the caller
        re-syncs the table (``set_extras``)."""
        kept = {k: d for k, d in self.domains.items() if d.host != host}
        kept.update((key_of(d), d) for d in domains)
        self.domains = kept
        self._by_uuid = None
        if error is None:
            changed = self.down.pop(host, None) is not None
        else:
            changed = self.down.get(host) != error
            self.down[host] = error
        if changed:
            self._show_down()

    def _show_down(self) -> None:
        lines = [Content.from_markup("[$error]✖ [b]$host[/b] down: $error[/]", host=host,
                                     error=error) for host, error in sorted(self.down.items())]
        self.down_lines.update(Content("\n").join(lines))
        self.down_lines.display = bool(lines)

    def update_domain(self, info: DomainInfo) -> None:
        """One domain changed (a libvirt event): update its row only."""
        self.domains[key_of(info)] = info
        self._by_uuid = None
        self.refresh_rows()

    def remove_domain(self, key: str) -> None:
        self.domains.pop(key, None)
        self._by_uuid = None
        self.refresh_rows()

    def set_extras(self, extras: dict[str, DomainExtras]) -> None:
        self.extras = extras
        self.refresh_rows()

    def refresh_rows(self) -> None:
        rows: dict[str, Row] = {}
        for key, d in self.domains.items():
            if not self.matches(d.name, d.uuid, d.state, d.nova and d.nova.name, d.host):
                continue
            extra = self.extras.get(key, DomainExtras())
            disks = len(snapshot_disks(d))
            # A Nova instance by its Nova name (libvirt's instance-0000002a is in the detail)
            name = f"nova:{d.nova.name}" if d.nova and d.nova.name else d.name
            row: Row = (name, d.state, extra.allocated, extra.snapshots, extra.last_snapshot,
                        disks)
            rows[key] = (d.host, *row) if self.show_host else row
        self.table.sync(rows)
        count = (f"{len(rows)}/{len(self.domains)} match {self.filter_text!r}"
                 if self.filter_text else f"{len(self.domains)}")
        self.border_subtitle = f"{count} · {len(self.down)} down" if self.down else count
        self.refresh_bindings()  # a filter or a removal may leave no domain to act on

    @property
    def selected(self) -> DomainInfo | None:
        """The domain under the cursor."""
        key = self.table.selected_key
        return self.domains.get(key) if key else None

    def by_uuid(self, uuid: str | None) -> DomainInfo | None:
        """A domain with that uuid (one of them when several hosts have it)."""
        if not uuid:
            return None
        if self._by_uuid is None:  # an image's owner on every cursor move: no scan each time
            self._by_uuid = {}
            for d in self.domains.values():
                self._by_uuid.setdefault(d.uuid, d)
        return self._by_uuid.get(uuid)

    def select(self, key: str) -> bool:
        """Move the cursor to that domain (``HOST:UUID``), clearing a filter that hides it."""
        if key not in self.domains:
            return False
        if key not in self.table.rows and self.filter_text:
            self.action_close_filter()
        self.table.move_cursor(row=self.table.get_row_index(key), animate=False)
        self.table.focus()
        return True
