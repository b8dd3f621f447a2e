"""Which findings of a scan are chosen for removal, and what removal did to each.

The rules a front end applies (the dashboard's checklist; the CLI pre-selects the same way):
safe findings start chosen, a refused one can never be chosen (removal would refuse it anyway),
an unsafe one only by an explicit choice, and a removed one is gone for good. Leftovers snaptui
did not make are chosen together only for a domain named explicitly (``--domain D
--include-unowned``, the dashboard's domain key), never for the whole host at once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from snaptui.core.cleanup.findings import Finding, Kind, RemovalResult

KIND_ORDER: tuple[Kind, ...] = tuple(Kind)


def preselected(finding: Finding, unowned_of: Collection[str] = ()) -> bool:
    """Chosen without an explicit pick: safe, or (``unowned_of``: domains whose unowned
    leftovers the operator included) not made by snaptui but otherwise fine to remove."""
    if finding.refused:
        return False
    return finding.safe or (finding.unowned_ok and finding.domain is not None
                            and finding.domain in unowned_of)


def outcome(result: RemovalResult) -> str:
    """``removed``, ``refused`` (checked and judged unsafe) or ``failed`` (tried, went wrong)."""
    if result.ok:
        return "removed"
    return "refused" if (result.reason or "").startswith("refused") else "failed"


@dataclass
class Totals:
    """Counts and bytes of a set of findings (``unknown``: how many have no known size)."""

    count: int = 0
    size: int = 0
    unknown: int = 0


@dataclass
class Selection:
    """Findings of one scan (in the order found), the chosen keys and the removal results."""

    findings: dict[str, Finding] = field(default_factory=dict)
    chosen: set[str] = field(default_factory=set)
    results: dict[str, RemovalResult] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        """Take one finding of the scan; pre-choose it when it is safe."""
        self.findings[finding.key] = finding
        if finding.safe and self.why_not(finding.key) is None:
            self.chosen.add(finding.key)

    def why_not(self, key: str) -> str | None:
        """Why this finding cannot be chosen, or None when it can."""
        finding = self.findings.get(key)
        if finding is None:
            return "no such finding"
        if finding.refused:
            return f"refused: {finding.refused}"
        result = self.results.get(key)
        if result is not None and result.ok:
            return "already removed"
        return None

    def toggle(self, key: str) -> str | None:
        """Choose or un-choose one finding; returns the reason when it cannot be chosen."""
        if key in self.chosen:
            self.chosen.discard(key)
            return None
        reason = self.why_not(key)
        if reason is None:
            self.chosen.add(key)
        return reason

    def of_kind(self, kind: Kind) -> list[Finding]:
        return [f for f in self.findings.values() if f.kind is kind]

    def toggle_kind(self, kind: Kind) -> None:
        """Un-choose the whole kind when any of it is chosen, else choose its safe ones."""
        keys = [f.key for f in self.of_kind(kind)]
        if self.chosen.intersection(keys):
            self.chosen.difference_update(keys)
        else:
            self._choose_safe(keys)

    def of_domain(self, domain: str) -> list[Finding]:
        return [f for f in self.findings.values() if f.domain == domain]

    def toggle_domain(self, domain: str) -> list[str]:
        """Un-choose the domain's findings when any is chosen, else choose its safe ones and
        the unowned ones nothing else stands against; returns the keys chosen now."""
        keys = [f.key for f in self.of_domain(domain)]
        if self.chosen.intersection(keys):
            self.chosen.difference_update(keys)
            return []
        picked = [k for k in keys if preselected(self.findings[k], (domain,))
                  and self.why_not(k) is None]
        self.chosen.update(picked)
        return picked

    def toggle_all(self) -> None:
        """None when anything is chosen, else every safe finding."""
        if self.chosen:
            self.chosen.clear()
        else:
            self._choose_safe(list(self.findings))

    def _choose_safe(self, keys: list[str]) -> None:
        self.chosen.update(k for k in keys
                           if self.findings[k].safe and self.why_not(k) is None)

    def kinds(self) -> list[Kind]:
        """Kinds with at least one finding, in the order they are shown."""
        present = {f.kind for f in self.findings.values()}
        return [k for k in KIND_ORDER if k in present]

    def ordered(self) -> list[Finding]:
        """Every finding grouped by kind (kinds in their order, each in the order found)."""
        return [f for kind in self.kinds() for f in self.of_kind(kind)]

    def selected(self) -> list[Finding]:
        """The chosen findings, in the order they are shown (and removed)."""
        return [f for f in self.ordered() if f.key in self.chosen]

    @staticmethod
    def totals(findings: list[Finding]) -> Totals:
        return Totals(len(findings), sum(f.size or 0 for f in findings),
                      sum(1 for f in findings if f.size is None))

    def record(self, result: RemovalResult) -> None:
        """Keep what removal did; an attempted finding is no longer chosen."""
        self.results[result.key] = result
        self.chosen.discard(result.key)

    def outcomes(self) -> dict[str, int]:
        """How many were removed, refused and failed so far."""
        counts = {"removed": 0, "refused": 0, "failed": 0}
        for result in self.results.values():
            counts[outcome(result)] += 1
        return counts

    @property
    def reclaimed(self) -> int:
        """Bytes given back, as measured by each removal."""
        return sum(r.reclaimed for r in self.results.values() if r.ok)
