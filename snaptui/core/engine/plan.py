"""What a job will do, fixed before it starts: the request, the resolved mode, disks and paths.

A Plan is plain data stored in the journal header, so that ``recover`` can rebuild the same steps
and undo them after the job's process is gone.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, TypeVar

from snaptui.core.errors import SnaptuiError
from snaptui.core.models import Mode as Mode  # the modes are a base notion: re-exported

T = TypeVar("T")


class PlanDataError(SnaptuiError, ValueError):
    """A journal's plan or request lacks something a job cannot do without."""


def known_fields(cls: type[T], data: Any, what: str, *, tolerated: dict[str, Any] | None = None,
                 **override: Any) -> T:
    """``cls(**data)`` keeping only ``cls``'s fields: unknown keys (a newer writer's) are
    dropped, missing ones take the field's default, else ``tolerated``'s; any other missing
    one is a one-line PlanDataError naming it."""
    if not isinstance(data, dict):
        raise PlanDataError(f"{what} is not an object")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in override:
            kwargs[f.name] = override[f.name]
        elif f.name in data:
            kwargs[f.name] = data[f.name]
        elif f.default is MISSING and f.default_factory is MISSING:
            if tolerated is None or f.name not in tolerated:
                raise PlanDataError(f"{what} has no {f.name}")
            kwargs[f.name] = tolerated[f.name]
    return cls(**kwargs)


def _mode(data: Any, what: str) -> Mode:
    value = data.get("mode", Mode.AUTO) if isinstance(data, dict) else None
    try:
        return Mode(str(value))
    except ValueError:
        raise PlanDataError(f"{what} has an unknown mode {value!r}") from None


OUTPUT_FORMATS = ("raw", "qcow2")
QUIESCE_CHOICES = ("auto", "require", "off")
VERIFY_ACCELS = ("tcg", "kvm")
DESTINATIONS = ("glance", "library")
STREAM_CHOICES = ("auto", "on", "off")


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
    # The image's metadata (images/properties.py) and Nova coexistence (libvirt/nova_instance.py)
    properties: dict[str, str] = field(default_factory=dict)  # --property KEY=VALUE
    tags: tuple[str, ...] = ()
    visibility: str | None = None  # None: private, or shared with a Nova instance's project
    protected: bool = False
    min_disk: int | None = None
    min_ram: int | None = None
    base_image: str | None = None  # --base-image: the Glance image to inherit from
    derive: bool = True  # derive hw_* properties from the domain XML
    allow_nova_downtime: bool = False
    # -- a good neighbour: CPU/I/O priority and a bandwidth cap (bytes/s) --
    priority: str = "low"  # normal | low | idle (core/priority.py)
    bwlimit: int | None = None
    # -- quiesce and boot verification --
    quiesce: str = "auto"  # auto | require | off
    verify: bool = False
    verify_console: str | None = None  # regex on the serial console; else the agent's ping
    verify_timeout: float = 120.0
    verify_accel: str | None = None  # tcg | kvm; None: the source domain's type
    keep_unverified: bool = False
    # -- streaming: auto | on | off; "on" is the pull-mode form of backup mode --
    stream: str = "auto"
    # -- a backup (Nova's createBackup) and its rotation (core/keep/rotation.py) --
    backup_type: str | None = None
    rotate: int | None = None  # keep this many backups of the type, the new one included
    rotate_unowned: bool = False  # rotation may delete backups snaptui did not make

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = str(self.mode)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotRequest:
        tags = tuple(data.get("tags") or ()) if isinstance(data, dict) else ()
        return known_fields(cls, data, "the request", mode=_mode(data, "the request"), tags=tags)


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
    cow_path: str | None = None  # stream: the pull-mode backup's copy-before-write scratch
    properties: dict[str, str] = field(default_factory=dict)  # the image's, known at preflight
    min_disk: int = 0  # GiB (core/images/properties.py min_disk_gib)
    # direct: where the disk is and where its clone goes (engine/steps/rbd.py RbdPlan)
    rbd: dict[str, Any] | None = None


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
    image_settings: dict[str, Any] = field(default_factory=dict)  # ImageSettings.to_json()
    nova_instance: str | None = None  # nova_instance.describe(), when the domain is one
    downtime_limit_s: float | None = None  # abort and restart the guest once down this long
    notes: list[str] = field(default_factory=list)  # preflight's warnings, shown to the operator
    # -- a good neighbour; a plan without these fields runs at normal priority, uncapped --
    priority: str = "normal"
    bwlimit: int | None = None
    # -- quiesce and boot verification; the defaults keep a plan without them as it was --
    quiesce: str = "auto"
    agent_answered: bool = False  # the guest agent answered guest-ping at preflight
    verify: bool = False
    verify_console: str | None = None
    verify_timeout: float = 120.0
    verify_accel: str | None = None
    keep_unverified: bool = False
    # -- streaming: backup mode in pull mode, NBD export read straight into Glance --
    stream: bool = False
    nbd_socket: str | None = None
    # -- a backup and its rotation, run once the job's images are active --
    backup_type: str | None = None
    rotate: int | None = None
    rotate_unowned: bool = False

    @property
    def method(self) -> str:
        """What the image's snaptui_method property says: the mode, backup-stream or
        rbd-direct."""
        if self.mode == Mode.DIRECT:
            return "rbd-direct"
        return "backup-stream" if self.stream else str(self.mode)

    @property
    def guest_active(self) -> bool:
        return self.original_state in ("running", "paused")

    @property
    def freezes_before_save(self) -> bool:
        """Cold and internal: freeze before the managed save (thaw after the restore)."""
        return (self.original_state == "running" and self.quiesce != "off"
                and (self.quiesce == "require" or self.agent_answered))

    def copy_is_output(self, disk: DiskPlan) -> bool:
        if self.stream:
            return False
        return copy_is_output(self.mode, self.compress, disk.backing_file)

    def copy_format(self, disk: DiskPlan) -> str:
        """Format of the live delta or backup file: the output's when it is the output."""
        return self.out_format if self.copy_is_output(disk) else "qcow2"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = str(self.mode)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, job_id: str | None = None) -> Plan:
        """The plan of a journal header, any version: unknown keys are dropped, missing ones
        defaulted where a default is safe (one-line PlanDataError otherwise)."""
        what = f"the plan of job {job_id}" if job_id else "the plan"
        if not isinstance(data, dict) or not data:
            raise PlanDataError(f"{what} is missing")
        disks = [known_fields(DiskPlan, d, f"{what} (a disk)", tolerated=DISK_DEFAULTS)
                 for d in data.get("disks") or []]
        if data.get("mode") in (None, Mode.AUTO):
            raise PlanDataError(f"{what} has no resolved mode")
        return known_fields(cls, data, what, tolerated=PLAN_DEFAULTS, mode=_mode(data, what),
                            disks=disks)


# What a plan or disk written by an older snaptui may lack, and the value that is safe for it.
PLAN_DEFAULTS: dict[str, Any] = {
    "mode_reason": "", "compress": False, "compression_type": None, "cloud": None,
    "library_dir": None, "keep_local": None, "snapshot_name": None, "base_image_ref": None,
    "host": "", "out_format": "qcow2",
}
DISK_DEFAULTS: dict[str, Any] = {
    "actual_size": 0, "apparent_size": 0, "backing_file": None, "virtual_size": 0,
}
