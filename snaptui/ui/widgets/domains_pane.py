"""The Domains pane: one row per libvirt domain, keyed by HOST:UUID, state as glyph + word."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import Static

from snaptui.core.fleet.inventory import key_of
from snaptui.core.models import DomainInfo
from snaptui.core.present import date_text, size_text, state_look
from snaptui.ui.widgets.table_pane import ColumnSpec, Row, TablePane

HOST_WIDTH = (4, 12)  # the Host column: as wide as the longest host name, within these

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
            look = state_look(value)
            return Text(f"{look.glyph} {look.word}", style=self.theme_style(look.colour))
        if column == "alloc":
            return Text(size_text(value), justify="right")
        if column == "disks":
            return Text(str(value), justify="right")
        if column == "snaps":
            return Text(str(value) if value else "·", justify="right")
        if column == "last":
            return date_text(value)[:10]
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
            disks = len(d.snapshot_disks)
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
