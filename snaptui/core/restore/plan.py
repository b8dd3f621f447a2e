"""What a restore will do, fixed before it starts: the image, the disk it replaces, the paths.

Like a snapshot's Plan, plain data kept in the journal header, so that ``recover`` rebuilds the
same steps. It carries the fields every plan has (job id, uri, domain, destination, priority,
disks with a target and an image name), which is all the engine's runner reads.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from snaptui.core.engine.facts import DiskKey
from snaptui.core.engine.plan import PlanDataError, known_fields

KIND = "restore"
ACTION_RESTORE = "restore"  # put the image in place of the disk
ACTION_UNDO = "undo"  # put a finished restore's pre-restore disk back
ACTION_NEW = "new"  # a new guest from the image (--as)
ACTIONS = (ACTION_RESTORE, ACTION_UNDO, ACTION_NEW)
PRE_RESTORE = ".pre-restore-"
DEFAULT_SHUTDOWN_TIMEOUT_S = 120.0


class RestoreFact(StrEnum):
    """What a restore made or changed, journaled before it acts (its undo finds it there)."""

    PARTIAL = "restore_partial"  # the new disk file being written (hidden, beside the disk)
    STAGING = "restore_staging"  # the image as downloaded, before its convert
    PRE_RESTORE = "pre_restore"  # the old disk's kept name (a link made before the swap)
    HELD = "restore_held"  # --undo: the restored disk's name while the old one is put back
    CHECKSUM = "restore_checksum"  # sha512 of what was downloaded
    STOPPED = "restore_stopped"  # the job asked the guest to stop (whole job)
    STARTED = "restore_started"  # the job started the guest (whole job)
    DEFINED = "restore_defined"  # --as: the new domain was defined (whole job)

    def of(self, target: str) -> DiskKey:
        return DiskKey(f"{self.value}:{target}")

    @property
    def key(self) -> DiskKey:
        """The key of a fact about the whole job (no disk)."""
        return DiskKey(self.value)


@dataclass(frozen=True)
class RestoreRequest:
    """What the operator asked for (CLI flags or the dashboard's dialog)."""

    image: str = ""  # id or name
    domain: str | None = None
    disk: str | None = None
    shutdown: bool = False
    timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    force: bool = False
    start: bool = False
    as_name: str | None = None
    memory_mib: int | None = None
    vcpus: int | None = None
    overlay: bool = False
    directory: str | None = None  # --as: where the new disk goes
    undo_job: str | None = None
    source: str | None = None  # glance | library; None: as snapshots choose
    uri: str | None = None
    cloud: str | None = None
    library_dir: str | None = None
    priority: str = "low"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RestoreRequest:
        return known_fields(cls, data, "the restore request")


@dataclass
class RestoreDisk:
    """One disk file replaced by (or made from) the image."""

    target: str
    path: str  # the disk's path: the domain XML names it, and it never changes
    format: str  # the disk's format: the image is converted to it when they differ
    virtual_size: int  # the old disk's (0 for a new guest's disk)
    image_name: str  # the image restored (for the audit log, as a snapshot's disks have)
    uid: int = 0
    gid: int = 0
    mode: int = 0o600
    backing_file: str | None = None  # the old disk's; the new one is flat but over overlay_base
    internal_snapshots: list[str] = field(default_factory=list)  # they go with the old file
    base_path: str | None = None  # --as --overlay: the local copy the disk is an overlay of
    # the restored file is a qcow2 overlay over the old chain's base, holding only what
    # differs from it (the base is Nova's cache of the image's base_image_ref)
    overlay_base: str | None = None
    overlay_base_format: str | None = None

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)

    def converts(self, image_format: str) -> bool:
        """The image is downloaded beside the disk, then made into the new file: converted to
        the disk's format, or an overlay rebased onto the chain's base."""
        return image_format != self.format or bool(self.overlay_base)

    def _hidden(self, suffix: str) -> str:
        return os.path.join(self.directory, f".{os.path.basename(self.path)}{suffix}")

    def partial_path(self, job_id: str) -> str:
        return self._hidden(f".restore-{job_id}.partial")

    def staging_path(self, job_id: str) -> str:
        return self._hidden(f".restore-{job_id}.download")

    def held_path(self, job_id: str) -> str:
        return self._hidden(f".undo-{job_id}.restored")

    def pre_restore_path(self, job_id: str) -> str:
        return pre_restore_path(self.path, job_id)


def pre_restore_path(disk_path: str, job_id: str) -> str:
    """Where a restore keeps the disk it replaced: ``<disk>.pre-restore-<job>``."""
    return f"{disk_path}{PRE_RESTORE}{job_id}"


@dataclass
class RestorePlan:
    """Everything the restore's steps need, resolved and checked by its preflight."""

    job_id: str
    uri: str
    host: str
    domain_name: str
    domain_uuid: str
    original_state: str  # DomainState value at preflight ("shut off" for a new guest)
    image_id: str
    image_name: str
    image_format: str
    image_size: int
    image_virtual_size: int
    image_hash: str  # sha512 hex the download must match
    destination: str  # the store the image comes from: glance | library
    cloud: str | None
    library_dir: str | None
    action: str = ACTION_RESTORE
    disks: list[RestoreDisk] = field(default_factory=list)
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    force: bool = False
    start: bool = False
    undo_of: str | None = None  # --undo: the restore job whose pre-restore disk comes back
    domain_xml: str | None = None  # --as: the new domain's XML
    kind: str = KIND
    mode: str = KIND  # what `snaptui jobs` shows in the mode column
    mode_reason: str = ""
    notes: list[str] = field(default_factory=list)
    priority: str = "low"
    bwlimit: int | None = None

    @property
    def guest_active(self) -> bool:
        return self.original_state in ("running", "paused")

    @property
    def converts(self) -> bool:
        """Some disk's new file is made from a download (converted or rebased)."""
        return any(d.converts(self.image_format) for d in self.disks)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, job_id: str | None = None) -> RestorePlan:
        what = f"the plan of job {job_id}" if job_id else "the restore plan"
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise PlanDataError(f"{what} is not a restore's")
        disks = [known_fields(RestoreDisk, d, f"{what} (a disk)")
                 for d in data.get("disks") or []]
        plan = known_fields(cls, data, what, disks=disks,
                            notes=list(data.get("notes") or []))
        if plan.action not in ACTIONS:
            raise PlanDataError(f"{what} has an unknown action {plan.action!r}")
        return plan
