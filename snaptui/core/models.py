"""Typed models shared by adapters, engine, CLI and UI (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    """How a snapshot is taken (core/engine/workflows.py lists each one's steps)."""

    AUTO = "auto"
    COLD = "cold"
    INTERNAL = "internal"
    LIVE = "live"
    BACKUP = "backup"
    DIRECT = "direct"  # RBD disks: a clone in the cluster handed to Glance's rbd store


@dataclass(frozen=True)
class NovaMetadata:
    """The parts of Nova's ``<nova:instance>`` metadata snaptui shows or copies into images."""

    namespace: str
    name: str | None = None
    root_type: str | None = None  # "image" or "volume"
    root_uuid: str | None = None
    owner_user: str | None = None
    owner_user_id: str | None = None
    owner_project: str | None = None
    owner_project_id: str | None = None
    flavor: str | None = None
    flavor_disk_gb: int | None = None  # <nova:flavor><nova:disk>: the root disk's size
    flavor_memory_mb: int | None = None
    flavor_vcpus: int | None = None

    @property
    def base_image_ref(self) -> str | None:
        """The Glance image the instance booted from (None for boot-from-volume)."""
        return self.root_uuid if self.root_type == "image" else None

class DomainState(StrEnum):
    """Power state as an operator says it (virsh wording); SAVED = shut off with managed save."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shut off"
    SAVED = "saved"
    CRASHED = "crashed"
    SHUTDOWN = "in shutdown"
    BLOCKED = "blocked"
    PMSUSPENDED = "pmsuspended"
    NOSTATE = "no state"

    @property
    def is_active(self) -> bool:
        """True when QEMU runs for the domain (its disks are in use)."""
        return self in (
            DomainState.RUNNING,
            DomainState.PAUSED,
            DomainState.BLOCKED,
            DomainState.SHUTDOWN,
            DomainState.PMSUSPENDED,
        )


@dataclass(frozen=True)
class NetworkSource:
    """A network disk's ``<source>`` (``type='network'``): protocol, the image's name (for rbd
    ``pool/image``, optionally ``@snapshot``), the servers, and the cephx user and libvirt
    secret of ``<auth>``. Never the key: it stays in libvirt's secret."""

    protocol: str
    name: str
    hosts: tuple[tuple[str, int | None], ...] = ()
    auth_user: str | None = None
    secret_uuid: str | None = None
    secret_usage: str | None = None
    config_file: str | None = None  # <config file=…/>: the ceph.conf libvirt hands QEMU

    @property
    def pool(self) -> str:
        return self.name.partition("/")[0] if "/" in self.name else "rbd"

    @property
    def image(self) -> str:
        return self.name.partition("/")[2].partition("@")[0] if "/" in self.name \
            else self.name.partition("@")[0]

    @property
    def snapshot(self) -> str | None:
        return self.name.partition("@")[2] or None


@dataclass(frozen=True)
class DiskInfo:
    """One disk of a domain, as the domain XML describes it."""

    target: str
    path: str | None
    format: str | None
    bus: str | None
    device: str = "disk"
    source_type: str = "file"
    readonly: bool = False
    network: NetworkSource | None = None  # source_type "network": where and as whom

    @property
    def rbd(self) -> NetworkSource | None:
        """The RBD image of a network disk on Ceph, else None."""
        return self.network if self.network and self.network.protocol == "rbd" else None

    @property
    def taken_by_snapshot(self) -> bool:
        """A snapshot takes ``device='disk'`` only: never a CD-ROM, floppy or LUN."""
        return self.device == "disk"


@dataclass(frozen=True)
class DomainInfo:
    """A libvirt domain with its live state and disks."""

    name: str
    uuid: str
    state: DomainState
    vcpus: int
    memory_kib: int
    persistent: bool
    disks: tuple[DiskInfo, ...] = ()
    has_managed_save: bool = False
    base_image_ref: str | None = None  # from Nova's instance metadata, when present
    nova: NovaMetadata | None = None  # <nova:instance>: the domain is a Nova instance
    host: str = ""  # the fleet host it was listed on (core/fleet/inventory.py); "" outside a fleet

    @property
    def snapshot_disks(self) -> tuple[DiskInfo, ...]:
        """The disks a snapshot takes, in the domain XML's order."""
        return tuple(d for d in self.disks if d.taken_by_snapshot)

    def disk(self, target: str | None = None) -> DiskInfo | None:
        """The disk with that target, or the first disk a snapshot takes when target is None."""
        if target is None:
            return next(iter(self.snapshot_disks), None)
        return next((d for d in self.disks if d.target == target), None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        data["disks"] = [asdict(d) for d in self.disks]
        if not self.host:
            del data["host"]
        return data


@dataclass(frozen=True)
class InternalSnapshot:
    """A qcow2 internal snapshot as `qemu-img snapshot -l` / info shows it."""

    id: str
    name: str
    date: str  # ISO 8601, UTC
    vm_size: int
    vm_clock: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImageFileInfo:
    """`qemu-img info` of one image file, with its backing chain (nearest first)."""

    path: str
    format: str
    virtual_size: int
    actual_size: int  # allocated bytes on the host filesystem
    apparent_size: int  # file length (ls -l)
    snapshots: tuple[InternalSnapshot, ...] = ()
    backing_file: str | None = None
    backing_chain: tuple[ImageFileInfo, ...] = ()
    corrupt: bool | None = None
    cluster_size: int | None = None
    compression_type: str | None = None
    dirty: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "virtual_size": self.virtual_size,
            "actual_size": self.actual_size,
            "apparent_size": self.apparent_size,
            "snapshots": [s.to_json() for s in self.snapshots],
            "backing_file": self.backing_file,
            "backing_chain": [b.to_json() for b in self.backing_chain],
            "corrupt": self.corrupt,
            "cluster_size": self.cluster_size,
            "compression_type": self.compression_type,
        }


@dataclass(frozen=True)
class ImageRecord:
    """An image in Glance or in the local library (same shape for both)."""

    id: str
    name: str
    status: str
    disk_format: str | None
    container_format: str | None
    size: int | None
    created_at: str | None
    properties: dict[str, Any] = field(default_factory=dict)
    os_hash_value: str | None = None
    location: str | None = None  # library: file path; glance: None
    protected: bool = False  # Glance's flag (the library keeps it in the sidecar)

    @property
    def instance_uuid(self) -> str | None:
        value = self.properties.get("instance_uuid")
        return str(value) if value else None

    @property
    def is_snapshot(self) -> bool:
        return self.properties.get("image_type") == "snapshot"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
