"""What a job will do, fixed before it starts: the request, the resolved mode, disks and paths.

A Plan is plain data stored in the journal header, so that ``recover`` can rebuild the same steps
and undo them after the job's process is gone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    AUTO = "auto"
    COLD = "cold"
    INTERNAL = "internal"
    LIVE = "live"
    BACKUP = "backup"


OUTPUT_FORMATS = ("raw", "qcow2")
DESTINATIONS = ("glance", "library")


@dataclass(frozen=True)
class SnapshotRequest:
    """What the operator asked for (CLI flags or the dashboard's dialog)."""

    domain: str
    name: str
    mode: Mode = Mode.AUTO
    disk: str | None = None
    all_disks: bool = False
    out_format: str = "qcow2"
    compress: bool = False
    destination: str | None = None  # None: glance when a cloud is configured, else library
    keep_local: str | None = None
    uri: str | None = None
    cloud: str | None = None
    library_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = str(self.mode)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotRequest:
        return cls(**{**data, "mode": Mode(data["mode"])})


def copy_is_output(mode: Mode, compress: bool, backing_file: str | None) -> bool:
    """Whether the live delta or backup file can be written in the output format and kept as
    the image itself, with no convert: it must be standalone (a backup always is; a live delta
    when the disk has no backing file) and the output uncompressed."""
    if compress:
        return False
    if mode == Mode.BACKUP:
        return True
    return mode == Mode.LIVE and not backing_file


@dataclass
class DiskPlan:
    """One disk to turn into one image."""

    target: str
    source_path: str
    source_format: str
    virtual_size: int
    actual_size: int
    apparent_size: int
    backing_file: str | None
    image_name: str
    output_path: str  # scratch file the image is extracted to
    delta_path: str | None = None  # live: the block-copy destination
    backup_path: str | None = None  # backup: the push-mode target
    backing_format: str | None = None  # format of backing_file (qemu-img create -F)


@dataclass
class Plan:
    """Everything the steps need, resolved and checked by preflight."""

    job_id: str
    uri: str
    domain_name: str
    domain_uuid: str
    original_state: str  # DomainState value at preflight
    mode: Mode
    mode_reason: str
    out_format: str
    compress: bool
    compression_type: str | None
    destination: str
    cloud: str | None
    library_dir: str | None
    keep_local: str | None
    snapshot_name: str | None  # internal: the qcow2 snapshot tag
    base_image_ref: str | None
    host: str
    disks: list[DiskPlan] = field(default_factory=list)
    domain_targets: list[str] = field(default_factory=list)  # every disk target, for backup XML

    @property
    def guest_active(self) -> bool:
        return self.original_state in ("running", "paused")

    def copy_is_output(self, disk: DiskPlan) -> bool:
        return copy_is_output(self.mode, self.compress, disk.backing_file)

    def copy_format(self, disk: DiskPlan) -> str:
        """Format of the live delta or backup file: the output's when it is the output."""
        return self.out_format if self.copy_is_output(disk) else "qcow2"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = str(self.mode)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        disks = [DiskPlan(**d) for d in data.get("disks", [])]
        return cls(**{**data, "mode": Mode(data["mode"]), "disks": disks})
