"""Preflight: everything checkable is checked while the guest is still untouched.

Turns a SnapshotRequest into a Plan, or raises one clear BadInput / SnaptuiError line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
import unicodedata
from pathlib import Path

import humanize

from snaptui.core import qemu_img
from snaptui.core.engine.locks import domain_lock_holder
from snaptui.core.engine.plan import OUTPUT_FORMATS, DiskPlan, Mode, Plan, SnapshotRequest
from snaptui.core.errors import BadInput, NotFound
from snaptui.core.image_store import ImageStore
from snaptui.core.libvirt_host import LibvirtHost
from snaptui.core.models import DiskInfo, DomainInfo, DomainState, ImageFileInfo
from snaptui.core.paths import scratch_dir
from snaptui.core.store_factory import open_store, resolve_destination

MAX_NAME = 255


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def validate_image_name(name: str) -> str:
    """Glance's limit is 255 characters; control characters (newlines...) are refused."""
    if not name or not name.strip():
        raise BadInput("image name is empty")
    if len(name) > MAX_NAME:
        raise BadInput(f"image name is {len(name)} characters long; at most {MAX_NAME} allowed")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadInput("image name contains control characters (newline, tab...)")
    return name


def available_modes(info: DomainInfo, host: LibvirtHost,
                    disks: list[DiskInfo] | None = None) -> dict[Mode, str | None]:
    """Each mode with None when it can run on this domain, else the reason it cannot."""
    disks = disks if disks is not None else [d for d in info.disks if d.device == "disk"]
    active = info.state in (DomainState.RUNNING, DomainState.PAUSED)
    reasons: dict[Mode, str | None] = {m: None for m in Mode}
    not_qcow2 = [d.target for d in disks if d.format != "qcow2"]
    if not_qcow2:
        reasons[Mode.INTERNAL] = f"internal snapshots need qcow2 ({', '.join(not_qcow2)} is not)"
    not_file = [d.target for d in disks if d.source_type != "file"]
    for mode, supported in ((Mode.LIVE, host.supports_block_copy),
                            (Mode.BACKUP, host.supports_backup)):
        if not supported:
            reasons[mode] = f"the {host.conn.getType()} driver cannot do {mode} snapshots"
        elif not active:
            reasons[mode] = f"{mode} needs a running guest ({info.name} is {info.state})"
        elif mode == Mode.LIVE and not_file:
            reasons[mode] = f"live copy needs file-backed disks ({', '.join(not_file)} is not)"
    return reasons


def resolve_mode(requested: Mode, reasons: dict[Mode, str | None],
                 info: DomainInfo) -> tuple[Mode, str]:
    if requested != Mode.AUTO:
        if reasons[requested]:
            raise BadInput(f"cannot use {requested} mode: {reasons[requested]}")
        return requested, f"{requested} mode as requested"
    if reasons[Mode.LIVE] is None and info.state == DomainState.RUNNING:
        return Mode.LIVE, "auto chose live: the guest runs on file-backed disks (never paused)"
    why = reasons[Mode.LIVE] or f"{info.name} is {info.state}"
    return Mode.COLD, f"auto chose cold: {why}"


def _pick_disks(info: DomainInfo, request: SnapshotRequest) -> list[DiskInfo]:
    disks = [d for d in info.disks if d.device == "disk"]
    if request.all_disks:
        chosen = disks
    else:
        disk = info.disk(request.disk)
        if disk is None or disk.device != "disk":
            have = ", ".join(d.target for d in disks) or "none"
            what = f"no disk {request.disk}" if request.disk else "no disk"
            raise NotFound(f"domain {info.name} has {what} (disks: {have})")
        chosen = [disk]
    if not chosen:
        raise NotFound(f"domain {info.name} has no disks")
    for d in chosen:
        if not d.path:
            raise BadInput(f"disk {d.target} of {info.name} has no source file")
        if d.source_type not in ("file", "block"):
            raise BadInput(f"disk {d.target} of {info.name} is {d.source_type}; "
                           "only file and block disks are supported")
        if not os.path.exists(d.path):
            raise NotFound(f"disk {d.target} of {info.name}: no such file {d.path}")
    return chosen


def _scratch_needed(mode: Mode, out_format: str, src: ImageFileInfo) -> int:
    """Peak scratch bytes for one disk: output plus any intermediate copy."""
    allocated = src.actual_size + sum(b.actual_size for b in src.backing_chain)
    output = src.virtual_size if out_format == "raw" else allocated
    if mode == Mode.LIVE:
        return output + src.actual_size
    if mode == Mode.BACKUP:
        return output + allocated
    return output


def check_space(directory: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise BadInput(f"not enough space in {directory} for {what}: need "
                       f"{humanize.naturalsize(needed, binary=True)}, "
                       f"{humanize.naturalsize(free, binary=True)} free")


def check_store(store: ImageStore) -> None:
    """Credentials work and the store answers (lists one image)."""
    check = getattr(store, "check", None)
    if callable(check):
        check()
    else:
        next(iter(store.iter_images()), None)


async def preflight(request: SnapshotRequest, host: LibvirtHost,
                    store: ImageStore | None = None) -> tuple[Plan, ImageStore]:
    """Check the request against the real host, disks, space and store; return the Plan."""
    validate_image_name(request.name)
    if request.out_format not in OUTPUT_FORMATS:
        raise BadInput(f"unknown output format {request.out_format!r} (raw or qcow2)")
    if request.compress and request.out_format != "qcow2":
        raise BadInput("--compress needs --format qcow2")
    info = host.get_domain(request.domain)
    if info.state not in (DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF,
                          DomainState.SAVED):
        raise BadInput(f"{info.name} is {info.state}; snapshots need it running, paused or off")
    holder = domain_lock_holder(info.uuid)
    if holder:
        raise BadInput(f"{info.name} already has a snapshot job running ({holder})")
    disks = _pick_disks(info, request)
    mode, reason = resolve_mode(request.mode, available_modes(info, host, disks), info)
    active = info.state in (DomainState.RUNNING, DomainState.PAUSED)

    job_id = new_job_id()
    scratch = scratch_dir()
    disk_plans, needed = [], 0
    for d in disks:
        src = await qemu_img.info(d.path, force_share=active, fmt=d.format)
        if src.corrupt:
            raise BadInput(f"disk {d.target} ({d.path}) is marked corrupt; run qemu-img check")
        if mode == Mode.INTERNAL and src.format != "qcow2":
            raise BadInput(f"cannot use internal mode: disk {d.target} is {src.format}, not qcow2")
        needed += _scratch_needed(mode, request.out_format, src)
        base = f"{job_id}-{d.target}"
        name = request.name if len(disks) == 1 else f"{request.name}-{d.target}"
        disk_plans.append(DiskPlan(
            target=d.target, source_path=d.path or "", source_format=src.format,
            virtual_size=src.virtual_size, actual_size=src.actual_size,
            apparent_size=src.apparent_size, backing_file=src.backing_file,
            image_name=name, output_path=str(scratch / f"{base}.{request.out_format}.partial"),
            delta_path=str(scratch / f"{base}.delta.qcow2") if mode == Mode.LIVE else None,
            backup_path=str(scratch / f"{base}.backup.qcow2") if mode == Mode.BACKUP else None,
        ))
    check_space(scratch, needed, "the extracted image")
    if request.keep_local:
        keep_dir = Path(request.keep_local) if len(disks) > 1 else Path(request.keep_local).parent
        if not keep_dir.is_dir() or not os.access(keep_dir, os.W_OK):
            raise BadInput(f"--keep-local: {keep_dir} is not a writable directory")

    destination = resolve_destination(request.destination, request.cloud)
    if store is None:
        store = open_store(destination, cloud=request.cloud, library=request.library_dir)
    check_store(store)
    plan = Plan(
        job_id=job_id, uri=host.uri, domain_name=info.name, domain_uuid=info.uuid,
        original_state="shut off" if info.state == DomainState.SAVED else str(info.state),
        mode=mode, mode_reason=reason, out_format=request.out_format, compress=request.compress,
        compression_type=qemu_img.best_compression_type() if request.compress else None,
        destination=destination, cloud=request.cloud,
        library_dir=str(getattr(store, "directory", "") or "") or request.library_dir,
        keep_local=request.keep_local,
        snapshot_name=f"snaptui-{job_id}" if mode == Mode.INTERNAL else None,
        base_image_ref=info.base_image_ref, host=socket.gethostname(), disks=disk_plans,
        domain_targets=[d.target for d in info.disks if d.device == "disk"],
    )
    return plan, store
