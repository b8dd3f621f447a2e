"""What a cleanup scan reports and what a removal returns (plain data, no I/O beyond stat).

A ``Finding`` is one leftover: where it is, how much space it holds, whether it is pre-selected
(``safe``) and why, and the equivalent virsh / qemu-img / openstack commands for a dry run.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from snaptui.core.errors import BadInput
from snaptui.core.keep.ownership import NOT_MADE_BY_SNAPTUI


class Kind(StrEnum):
    """The kinds of leftovers, named as ``--only`` takes them."""

    INTERNAL = "internal"
    SCRATCH = "scratch"
    MANAGED_SAVE = "managed-save"
    TRANSIENT = "transient"
    BLOCKJOB = "blockjob"
    IMAGES = "images"
    RBD = "rbd"  # snapshots on RBD disks and clones in Glance's rbd pool


ALL_KINDS: frozenset[Kind] = frozenset(Kind)

# Snapshot leftovers younger than this may still belong to a job that is starting elsewhere.
DEFAULT_OLDER_THAN_S = 24 * 3600.0

# snaptui's own names: job ids are ``YYYYmmdd-HHMMSS-hex6`` (engine/preflight.new_job_id).
JOB_ID_RE = r"\d{8}-\d{6}-[0-9a-f]{6}"
OWN_SNAPSHOT_RE = re.compile(rf"^snaptui-(?P<job>{JOB_ID_RE})$")
SCRATCH_FILE_RE = re.compile(
    rf"^(?P<job>{JOB_ID_RE})-(?P<target>[^.]+)\.(?P<what>delta\.qcow2|backup\.qcow2|cow\.qcow2|"
    r"(?:raw|qcow2)\.partial|verify\.qcow2|verify-console\.log|verify-VARS\.fd)$"
)
# Nova's libvirt driver named the internal snapshot of its old (qemu-img) snapshot path
# ``uuid4().hex``: 32 hex digits, made with qemu-img, so libvirt has no metadata for it.
NOVA_SNAPSHOT_RE = re.compile(r"^[0-9a-f]{32}$")

# What ``Finding.label`` says of a leftover snaptui did not make.
NOT_OURS = NOT_MADE_BY_SNAPTUI  # the words of the one ownership rule (keep/ownership.py)
LIKELY_NOVA = "likely Nova leftover"


@dataclass(frozen=True)
class Finding:
    """One leftover found by a scan; ``key`` is stable across scans of the same thing."""

    key: str
    kind: Kind
    location: str
    size: int | None  # allocated bytes it holds (None when unknown)
    safe: bool  # pre-selected: removal cannot lose anything anyone still needs
    reason: str  # why it is a leftover, and why it is (not) safe
    commands: tuple[str, ...]  # equivalent CLI commands, for --dry-run
    domain: str | None = None
    action: str = ""  # what removal does, in words ("delete snapshot", "abort block job")
    refused: str | None = None  # set when removal must not be attempted (e.g. disk in use)
    paths: tuple[str, ...] = ()  # files whose allocated size is measured before / after
    details: dict[str, Any] = field(default_factory=dict)
    # Leftovers snaptui did not make (an operator's, old Nova's): never pre-selected by
    # themselves; ``label`` says who likely made them. ``unowned_ok``: nothing but that stands
    # against removal (not refused, no live job, old enough), so ``--domain D
    # --include-unowned`` (or the dashboard's domain key) pre-selects it for its domain.
    unowned: bool = False
    unowned_ok: bool = False
    label: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = str(self.kind)
        data["commands"] = list(self.commands)
        data["paths"] = list(self.paths)
        return data


@dataclass(frozen=True)
class RemovalResult:
    """What removing one finding did; ``reclaimed`` is measured (allocated before - after)."""

    key: str
    ok: bool
    action: str
    reclaimed: int = 0
    before: int = 0
    after: int = 0
    reason: str | None = None  # why it was refused or failed
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScanProgress:
    """One scanner's progress: ``done`` of ``total`` items (total None while unknown)."""

    kind: Kind
    done: int
    total: int | None
    what: str = ""


@dataclass
class ScanReport:
    """Everything a scan found, and the scanners that could not run (one line each)."""

    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def reclaimable(self) -> int:
        """Bytes held by the pre-selected findings."""
        return sum(f.size or 0 for f in self.findings if f.safe)

    def by_key(self) -> dict[str, Finding]:
        return {f.key: f for f in self.findings}


# ---------------------------------------------------------------- small helpers


def parse_kinds(text: str | None) -> frozenset[Kind]:
    """``internal,scratch`` -> kinds; BadInput naming an unknown one."""
    if not text:
        return ALL_KINDS
    kinds = set()
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        try:
            kinds.add(Kind(word))
        except ValueError:
            known = ",".join(k.value for k in Kind)
            raise BadInput(f"--only: unknown kind {word!r} (one of {known})") from None
    return frozenset(kinds) or ALL_KINDS


def allocated(path: str | os.PathLike[str]) -> int:
    """Bytes the file occupies on its filesystem (st_blocks), 0 when it does not exist."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def allocated_total(paths: tuple[str, ...]) -> int:
    return sum(allocated(p) for p in paths)


def file_age_s(path: str | os.PathLike[str], now: float) -> float | None:
    try:
        return max(0.0, now - os.stat(path).st_mtime)
    except OSError:
        return None


def job_id_age_s(job_id: str, now: float) -> float | None:
    """Age of a job from the UTC time its id starts with."""
    try:
        when = datetime.strptime(job_id[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return max(0.0, now - when.timestamp())


def command(*argv: str) -> str:
    """An argv as a copy-pasteable shell line (display only: nothing runs through a shell)."""
    return shlex.join(argv)
