"""How the Cleanup screen shows a Selection: checklist rows grouped by kind, the detail of one
finding, the summary line and the confirmation's list. Presentation only: the rules of what
may be chosen are in ``snaptui.core.cleanup.selection``."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from rich.style import Style
from rich.text import Text

from snaptui.core.cleanup.findings import Finding, Kind, RemovalResult
from snaptui.core.cleanup.selection import KIND_ORDER, Selection, Totals, outcome
from snaptui.core.present import UNKNOWN, size_text
from snaptui.ui.widgets.keyed_table import ColumnSpec, KeyedTable, Row

KIND_TITLE: dict[Kind, str] = {
    Kind.INTERNAL: "Internal snapshots",
    Kind.SCRATCH: "Scratch files and deltas",
    Kind.MANAGED_SAVE: "Managed saves",
    Kind.TRANSIENT: "Transient domains",
    Kind.BLOCKJOB: "Block jobs",
    Kind.IMAGES: "Images",
    Kind.RBD: "RBD snapshots and clones",
}

COLUMNS = (
    ColumnSpec("", "mark", 3),
    ColumnSpec("Leftover", "what"),
    ColumnSpec("Size", "size", 9),
    ColumnSpec("Status", "status", 12),
    ColumnSpec("Why", "why", 44, min_flex=36),
    # Never shown (no pane is that wide): the raw value rows are sorted by.
    ColumnSpec("", "order", 1, min_flex=1 << 20),
)
GROUP_PREFIX = "group:"

StyleOf = Callable[[str], Style]  # theme variable ("success") -> Rich style


_DIRS_RE = re.compile(r"(?<!\S)/(?:[^\s/]+/)+")


def short_location(location: str) -> str:
    """The location with directories dropped from its paths: the file name, domain and
    snapshot name tell rows apart; the detail below the table shows the whole path."""
    return _DIRS_RE.sub("", location)


def row_label(finding: Finding) -> str:
    """What a row calls its finding: an internal snapshot by guest, disk and name first (its
    file's path is the same for all of one disk), anything else by its short location."""
    name = finding.details.get("name")
    if finding.kind is Kind.INTERNAL and name:
        if finding.details.get("managed"):
            return f"{finding.domain}: {name} (libvirt)"
        target = finding.details.get("target")
        if finding.domain and target:
            return f"{finding.domain} {target}: {name}"
        return f"{os.path.basename(finding.details.get('path', ''))}: {name}"
    return short_location(finding.location)


def group_key(kind: Kind) -> str:
    return f"{GROUP_PREFIX}{kind.value}"


def kind_of_group(key: str) -> Kind | None:
    return Kind(key.removeprefix(GROUP_PREFIX)) if key.startswith(GROUP_PREFIX) else None


def size_of(totals: Totals) -> str:
    """'1.2 GiB', '1.2 GiB+' when some sizes are unknown, '—' when none is known."""
    if totals.count and totals.unknown == totals.count:
        return UNKNOWN
    return size_text(totals.size) + ("+" if totals.unknown else "")


def status_of(finding: Finding, result: RemovalResult | None, busy: str | None,
              style: StyleOf) -> Text:
    """Status cell: safe / not safe / refused before removal; progress and outcome after."""
    if busy == "removing":
        return Text("▶ removing", style=style("accent"))
    if busy == "queued":
        return Text("· queued", style=style("text-muted"))
    if result is not None:
        word = outcome(result)
        if word == "removed":
            return Text(f"✔ {size_text(result.reclaimed)}", style=style("success"))
        return Text(f"✘ {word}", style=style("error"))
    if finding.refused:
        return Text("refused", style=style("error"))
    return Text("safe", style=style("success")) if finding.safe \
        else Text("not safe", style=style("warning"))


def mark_of(selection: Selection, finding: Finding) -> str:
    result = selection.results.get(finding.key)
    if result is not None and result.ok:
        return " ✔ "
    if finding.key in selection.chosen:
        return "[x]"
    return " - " if finding.refused else "[ ]"


def group_mark(selection: Selection, kind: Kind) -> str:
    keys = [f.key for f in selection.of_kind(kind) if selection.why_not(f.key) is None]
    chosen = len(selection.chosen.intersection(keys))
    if not keys:
        return "   "
    return "[x]" if chosen == len(keys) else "[~]" if chosen else "[ ]"


def build_rows(selection: Selection, busy: dict[str, str], style: StyleOf) -> dict[str, Row]:
    """Rows keyed by finding key, a header row per kind; the last cell orders them."""
    rows: dict[str, Row] = {}
    for rank, kind in enumerate(KIND_ORDER):
        found = selection.of_kind(kind)
        if not found:
            continue
        chosen = [f for f in found if f.key in selection.chosen]
        head = Text(f"{KIND_TITLE[kind]} · {len(found)}", style=style("primary") + Style(bold=True))
        rows[group_key(kind)] = (
            group_mark(selection, kind), head, size_of(Selection.totals(found)),
            Text(f"{len(chosen)} chosen", style=style("text-muted")), "", (rank, -1))
        for index, finding in enumerate(found):
            result = selection.results.get(finding.key)
            rows[finding.key] = (
                mark_of(selection, finding), Text(row_label(finding)),
                size_text(finding.size),
                status_of(finding, result, busy.get(finding.key), style),
                Text(result.reason if result is not None and not result.ok and result.reason
                     else finding.reason, style=style("text-muted")),
                (rank, index))
    return rows


class CleanupTable(KeyedTable):
    """The checklist: KeyedTable rows (updated in place), ordered by kind then as found."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(COLUMNS, **kwargs)  # type: ignore[arg-type]
        self.sort_columns = ("order",)
        self.formatter = _format_cell


def _format_cell(column: str, value: object) -> object:
    if isinstance(value, Text):
        value.overflow = "ellipsis"
        value.no_wrap = True
        return value
    return Text("" if value is None else str(value), no_wrap=True)


def detail_lines(selection: Selection, key: str | None) -> Text:
    """Everything about the finding under the cursor (or what a group row's space does)."""
    if key is None:
        return Text("")
    kind = kind_of_group(key)
    if kind is not None:
        return Text(f"{KIND_TITLE[kind]}: space chooses the safe ones of this group, or none; "
                    "a chooses every safe one, or none.", style="dim")
    finding = selection.findings.get(key)
    if finding is None:
        return Text("")
    text = Text(finding.location, style="bold")
    if finding.size is not None:
        text.append(f"  {size_text(finding.size)}")
    text.append(f"\n{finding.reason}")
    result = selection.results.get(key)
    if result is not None:
        word = outcome(result)
        if result.ok:
            text.append(f"\n✔ removed ({result.action}): {size_text(result.reclaimed)} reclaimed "
                        f"(measured {size_text(result.before)} → {size_text(result.after)})",
                        style="green")
        else:
            reason = result.reason or ""
            said = reason if reason.startswith(word) else f"{word}: {reason}"
            text.append(f"\n✘ {said}", style="bold red")
    else:
        action = finding.action or "remove"
        line = f"{action}: {finding.commands[0]}" if finding.commands else action
        text.append(f"\n{line}", style="dim")
    return text


def summary_text(selection: Selection, problems: list[str], style: StyleOf) -> Text:
    """'5 found · 3 chosen · 120.0 MiB reclaimable', then what removal did."""
    found = len(selection.findings)
    if not found:
        text = Text("Nothing to clean up: no leftovers found.")
    else:
        chosen = Selection.totals(selection.selected())
        text = Text(f"{found} found · {chosen.count} chosen")
        if chosen.count:
            text.append(f" · {size_text(chosen.size)} reclaimable")
        if chosen.unknown:
            text.append(f" (+{chosen.unknown} of unknown size)")
    if selection.results:
        counts = selection.outcomes()
        text.append("\n")
        text.append(f"{counts['removed']} removed", style=style("success"))
        text.append(f", {counts['refused']} refused, {counts['failed']} failed · "
                    f"{size_text(selection.reclaimed)} reclaimed (measured)")
    if problems:
        text.append(f"\n⚠ {len(problems)} scanner{'s' if len(problems) != 1 else ''} failed: "
                    + "; ".join(problems), style=style("warning"))
    return text


def confirm_lines(findings: list[Finding], limit: int = 8, width: int = 62) -> list[str]:
    """One line per finding that goes (kind, short location ellipsized on the left, size);
    ``width`` fits the confirmation box."""
    lines = []
    room = width - 22
    for finding in findings[:limit]:
        size = size_text(finding.size)
        where = row_label(finding)
        if len(where) > room:
            where = "…" + where[-(room - 1):]
        lines.append(f"{finding.kind.value:<12} {where:<{room}} {size:>8}")
    if len(findings) > limit:
        lines.append(f"… and {len(findings) - limit} more")
    return lines
