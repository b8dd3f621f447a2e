"""Preflight's checks and decisions about the image's metadata and about the guest's downtime:
properties and Glance fields (core/images/properties.py), Nova coexistence
(core/libvirt/nova_instance.py), and what makes a managed save impossible.

Kept apart from preflight.py so that each concern reads on its own; preflight calls
``check_request`` first (nothing touched yet), ``check_stop`` once the mode is known, and
``plan_metadata`` once the disks are measured.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from snaptui.core.engine.plan import DiskPlan, Mode, SnapshotRequest
from snaptui.core.errors import BadInput, NotFound, SnaptuiError
from snaptui.core.images.properties import (
    BaseImage,
    OperatorMetadata,
    image_settings,
    min_disk_gib,
    snapshot_properties,
    validate_operator,
)
from snaptui.core.images.store import ImageStore, validate_image_id
from snaptui.core.keep.rotation import backup_properties
from snaptui.core.libvirt.hardware import DomainHardware, parse_hardware
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.libvirt.nova_instance import (
    DOWNTIME_BUDGET_S,
    STOPPING_MODES,
    describe,
    downtime_warning,
    stop_refusal,
)
from snaptui.core.models import DomainInfo, DomainState
from snaptui.core.present import size_text

SYSTEM_SAVE_DIR = Path("/var/lib/libvirt/qemu/save")  # libvirt's qemu.conf save_image_dir


def operator_metadata(request: SnapshotRequest) -> OperatorMetadata:
    return OperatorMetadata(properties=dict(request.properties), tags=tuple(request.tags),
                            visibility=request.visibility, protected=request.protected,
                            min_disk=request.min_disk, min_ram=request.min_ram)


def check_request(request: SnapshotRequest, destination: str) -> None:
    """The operator's metadata, checked before anything is looked at (one-line BadInput)."""
    validate_operator(operator_metadata(request), glance=destination == "glance")
    if request.base_image is not None:
        validate_image_id(request.base_image)


def save_dir(uri: str) -> Path | None:
    """Where libvirtd writes managed-save files for this URI on this machine (None: unknown,
    e.g. another host's, or a driver that keeps no file)."""
    if uri.startswith(("qemu:///system", "qemu+unix:///system")):
        return SYSTEM_SAVE_DIR
    if uri.startswith(("qemu:///session", "qemu+unix:///session")):
        config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        return config / "libvirt/qemu/save"
    return None


def check_save_space(info: DomainInfo, directory: Path | None) -> None:
    """Room for the managed-save state file (about the guest's RAM) before the guest stops."""
    if directory is None:
        return
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    needed = info.memory_kib * 1024
    free = os.statvfs(existing).f_bavail * os.statvfs(existing).f_frsize
    if needed > free:
        raise BadInput(f"not enough space in {existing} for the managed save of {info.name} "
                       f"(about its RAM): need {size_text(needed)}, "
                       f"{size_text(free)} free")


def save_refusal(info: DomainInfo, hardware: DomainHardware | None, mode: Mode) -> str | None:
    """Why a managed save of this guest cannot work in ``mode`` (host or mediated devices)."""
    if mode not in STOPPING_MODES or hardware is None or not hardware.host_devices:
        return None
    if info.state not in (DomainState.RUNNING, DomainState.PAUSED):
        return None
    shown = ", ".join(hardware.host_devices[:3])
    return (f"{mode} mode saves the guest's state, and libvirt cannot save {info.name} with "
            f"host or mediated devices attached ({shown}); use live or backup")


def check_stop(request: SnapshotRequest, info: DomainInfo, host: LibvirtHost,
               hardware: DomainHardware | None, mode: Mode) -> tuple[float | None, list[str]]:
    """BadInput when ``mode`` would stop a guest it must not, or cannot; else the downtime
    limit for the job (None: no limit) and the notes to show."""
    notes: list[str] = []
    refusal = save_refusal(info, hardware, mode)
    if refusal:
        raise BadInput(f"cannot use {mode} mode: {refusal}")
    limit = None
    nova = stop_refusal(info, mode)
    if nova:
        if not request.allow_nova_downtime:
            raise BadInput(f"cannot use {mode} mode: {nova}")
        notes.append(downtime_warning())
        limit = DOWNTIME_BUDGET_S
    if mode in STOPPING_MODES and info.state in (DomainState.RUNNING, DomainState.PAUSED):
        check_save_space(info, save_dir(host.uri))
    return limit, notes


def domain_hardware(host: LibvirtHost, info: DomainInfo) -> DomainHardware | None:
    try:
        return parse_hardware(host.domain_xml(host.lookup(info.uuid)))
    except SnaptuiError:
        return None


def _base_image(store: ImageStore, image_id: str, cloud: str | None) -> BaseImage:
    """The base image from Glance (every field): the destination's, or, for the library, the
    configured cloud's when there is one; else from the library's sidecar."""
    from snaptui.core.images.glance import STANDARD_KEYS, GlanceImages

    glance: object = store
    if not callable(getattr(store, "raw_image", None)):
        from snaptui.core.cloud.config import cloud_configured

        glance = GlanceImages.from_cloud(cloud) if cloud_configured(cloud) else None
    if isinstance(glance, GlanceImages):
        try:
            return BaseImage.from_glance(glance.raw_image(image_id), STANDARD_KEYS)
        except SnaptuiError:  # the library's job does not depend on the cloud answering
            if glance is store:
                raise
    record = store.show(image_id)
    return BaseImage(id=record.id, properties={k: str(v) for k, v in record.properties.items()})


async def find_base_image(request: SnapshotRequest, info: DomainInfo,
                          store: ImageStore) -> tuple[BaseImage | None, str | None, list[str]]:
    """The base image to inherit from (``--base-image``, else Nova's root image), its id,
    and notes; an explicit --base-image that cannot be read is an error."""
    ref = request.base_image or info.base_image_ref
    if ref is None:
        return None, None, []
    try:
        return await asyncio.to_thread(_base_image, store, ref, request.cloud), ref, []
    except NotFound:
        if request.base_image:
            raise BadInput(f"--base-image {ref}: no such image in {store.location}") from None
        return None, ref, [f"base image {ref} is not in {store.location}: its properties are "
                           "not inherited"]


@dataclass(frozen=True)
class Caller:
    project: str | None
    user: str | None


async def plan_metadata(request: SnapshotRequest, info: DomainInfo, store: ImageStore,
                        hardware: DomainHardware | None,
                        disks: list[DiskPlan]) -> tuple[dict, list[str], str | None]:
    """Fill each disk plan's properties and min_disk; return the image settings (JSON), the
    notes, and the base image id."""
    base, ref, notes = await find_base_image(request, info, store)
    caller = await asyncio.to_thread(lambda: Caller(getattr(store, "project_id", None),
                                                    getattr(store, "user_id", None)))
    operator = operator_metadata(request)
    derived = hardware if request.derive else None
    root = next((d.target for d in info.snapshot_disks), None)
    flavor_root = info.nova.flavor_disk_gb if info.nova else None
    for d in disks:
        d.min_disk = min_disk_gib(d.virtual_size, base,
                                  flavor_root if d.target == root else None, request.min_disk)
        d.properties = snapshot_properties(
            target=d.target, hardware=derived, base=base, base_image_ref=ref, nova=info.nova,
            operator=operator, caller_project=caller.project, caller_user=caller.user,
            instance_uuid=info.uuid)
        if request.backup_type is not None:
            d.properties.update(backup_properties(request.backup_type))
    settings = image_settings(nova=info.nova, caller_project=caller.project, base=base,
                              operator=operator, min_disk=0)
    if info.nova is not None:
        notes.insert(0, describe(info.nova))
    return settings.to_json(), notes, ref
