"""Retention rules with Proxmox's prune semantics (proxmox-backup ``pbs-datastore/src/prune.rs``).

Images are sorted newest first. The rules run in the order keep-last, -hourly, -daily,
-weekly, -monthly, -yearly. Each rule walks the images not yet marked and keeps the newest
image of each period (its hour, day, ISO week, month, year in local time) whose period no
image kept by an earlier rule already covers, until it has kept N periods; a second image of a
period it already kept is marked remove, and later rules skip it (as Proxmox does). Protected
images are always kept and never counted; images a running job is still writing are never
candidates. Whatever no rule kept is removed.

Pure: no I/O, so the simulator (``prune --dry-run``, the dashboard) and the real prune decide
with the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum

from snaptui.core.errors import BadInput

RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
MAX_KEEP = 100_000  # a keep count beyond any real number of images


def _period(rule: str) -> Callable[[datetime], str]:
    """The period an image falls into for a rule (Proxmox's strftime formats)."""
    formats = {"hourly": "%Y/%m/%d/%H", "daily": "%Y/%m/%d", "weekly": "%G/%V",
               "monthly": "%Y/%m", "yearly": "%Y"}
    if rule == "last":
        return lambda when: when.isoformat()
    fmt = formats[rule]
    return lambda when: when.strftime(fmt)


class Mark(StrEnum):
    """What prune does with one image."""

    KEEP = "keep"
    REMOVE = "remove"
    PROTECTED = "protected"  # kept, never counted
    BUSY = "busy"  # a running job's image: never a candidate
    LEFT = "left"  # not prune's to decide (not ours, another host's, not active): kept


@dataclass(frozen=True)
class KeepRules:
    """``--keep-last/-hourly/-daily/-weekly/-monthly/-yearly``; None: the rule is not used."""

    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None

    def items(self) -> list[tuple[str, int]]:
        return [(rule, n) for rule in RULES if (n := getattr(self, rule)) is not None]

    def keeps_anything(self) -> bool:
        return any(n > 0 for _, n in self.items())

    def check(self) -> KeepRules:
        """BadInput unless every count is 0..MAX_KEEP and at least one rule keeps something:
        with none, prune would remove every image (Proxmox refuses that too)."""
        for rule, n in self.items():
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_KEEP:
                raise BadInput(f"--keep-{rule} must be a whole number from 0 to {MAX_KEEP}, "
                               f"not {str(n)[:40]}")
        if not self.keeps_anything():
            raise BadInput("no --keep-last/-hourly/-daily/-weekly/-monthly/-yearly option "
                           "keeps anything: prune would remove every image, so it does nothing")
        return self

    def to_json(self) -> dict[str, int]:
        return dict(self.items())

    @classmethod
    def from_json(cls, data: dict | None) -> KeepRules:
        data = data or {}
        return cls(**{rule: int(data[rule]) for rule in RULES if data.get(rule) is not None})

    def text(self) -> str:
        """``keep-daily 7, keep-weekly 4`` (the options as typed)."""
        return ", ".join(f"keep-{rule} {n}" for rule, n in self.items()) or "no keep rule"


@dataclass(frozen=True)
class Candidate:
    """One image as the rules see it: when it was made, and whether it may be decided on."""

    id: str
    when: datetime  # aware
    protected: bool = False
    busy: bool = False  # written by a job that still runs
    left: str | None = None  # why prune leaves it to someone else (kept, not counted)


@dataclass(frozen=True)
class Decision:
    """What happens to one image, and why: the rule that kept it, or the reason."""

    id: str
    mark: Mark
    rule: str | None = None  # "daily" ... for KEEP
    reason: str = ""

    @property
    def keep(self) -> bool:
        return self.mark != Mark.REMOVE

    def text(self) -> str:
        if self.mark == Mark.KEEP:
            return f"keep ({'keep-' + self.rule if self.rule else 'kept'})"
        if self.mark == Mark.REMOVE:
            return "remove"
        return f"keep ({self.reason or self.mark})"


@dataclass
class _Marks:
    by_id: dict[str, Decision] = field(default_factory=dict)


def _select(marks: _Marks, items: Sequence[Candidate], rule: str, keep: int,
            tz: tzinfo | None) -> None:
    """One rule, as Proxmox's mark_selections: keep the newest unmarked image of each new
    period (periods an earlier rule kept count as covered) until ``keep`` periods are kept."""
    period = _period(rule)
    covered = {period(c.when.astimezone(tz)) for c in items
               if (d := marks.by_id.get(c.id)) is not None and d.mark == Mark.KEEP}
    included: set[str] = set()
    for c in items:
        if c.id in marks.by_id:
            continue
        pid = period(c.when.astimezone(tz))
        if pid in covered:
            continue
        if pid not in included:
            if len(included) >= keep:
                break
            included.add(pid)
            marks.by_id[c.id] = Decision(c.id, Mark.KEEP, rule)
        else:
            marks.by_id[c.id] = Decision(c.id, Mark.REMOVE, reason=f"older in a kept {rule} "
                                         "period")


def decide(candidates: Iterable[Candidate], rules: KeepRules,
           tz: tzinfo | None = None) -> list[Decision]:
    """Every candidate's decision, newest first (``tz``: the periods' time zone; None: local,
    as Proxmox's strftime_local)."""
    items = sorted(candidates, key=lambda c: c.when, reverse=True)
    marks = _Marks()
    counted = []
    for c in items:
        if c.busy:
            marks.by_id[c.id] = Decision(c.id, Mark.BUSY, reason="a running job's image")
        elif c.protected:
            marks.by_id[c.id] = Decision(c.id, Mark.PROTECTED, reason="protected")
        elif c.left:
            marks.by_id[c.id] = Decision(c.id, Mark.LEFT, reason=c.left)
        else:
            counted.append(c)
    for rule, keep in rules.items():
        _select(marks, counted, rule, keep, tz)
    return [marks.by_id.get(c.id) or Decision(c.id, Mark.REMOVE) for c in items]
