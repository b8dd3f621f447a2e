"""Preflight: everything checkable is checked while the guest is still untouched.

Turns a SnapshotRequest into a Plan, or raises one clear BadInput / SnaptuiError line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import socket
import time
import unicodedata
from pathlib import Path

from snaptui.core.disk import qemu_img
from snaptui.core.engine.locks import busy_message, domain_lock_holder
from snaptui.core.engine.neighbour import neighbour_fields
from snaptui.core.engine.plan import (
    OUTPUT_FORMATS,
    DiskPlan,
    Mode,
    Plan,
    SnapshotRequest,
    copy_is_output,
)
from snaptui.core.engine.preflight import image_plan
from snaptui.core.engine.preflight import rbd as preflight_rbd
from snaptui.core.engine.preflight.mode_decision import (
    SNAPSHOT_STATES,
    decide,
    mode_facts,
    mode_reasons,
)
from snaptui.core.engine.preflight.quiesce import quiesce_and_verify
from snaptui.core.engine.preflight.state_space import check_state_space
from snaptui.core.engine.preflight.stream import socket_path
from snaptui.core.engine.reservations import reserve
from snaptui.core.errors import BadInput, NotFound, QemuImgError
from snaptui.core.images.factory import open_store, resolve_destination
from snaptui.core.images.store import ImageStore
from snaptui.core.keep.rotation import check_options as check_rotation
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DiskInfo, DomainInfo, DomainState, ImageFileInfo
from snaptui.core.paths import scratch_dir
from snaptui.core.present import size_text

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


def validate_glance_name(name: str) -> str:
    """Glance refuses names with 4-byte UTF-8 characters (emoji, rare CJK): say so up front."""
    wide = sorted({ch for ch in name if ord(ch) > 0xFFFF})
    if wide:
        shown = ", ".join(f"U+{ord(ch):X}" for ch in wide[:3])
        raise BadInput(f"image name has characters Glance refuses (4-byte UTF-8: {shown}); "
                       "use --to library or another name")
    return name


def available_modes(info: DomainInfo, host: LibvirtHost,
                    disks: list[DiskInfo] | None = None) -> dict[Mode, str | None]:
    """Each mode with None when it can run on this domain, else the reason it cannot (what
    the host allows; Nova's guard is added by mode_decision.decide)."""
    disks = disks if disks is not None else list(info.snapshot_disks)
    return mode_reasons(info, disks, mode_facts(info, host))


def _pick_disks(info: DomainInfo, request: SnapshotRequest) -> list[DiskInfo]:
    disks = list(info.snapshot_disks)
    if request.all_disks:
        chosen = disks
    else:
        disk = info.disk(request.disk)
        if disk is None or not disk.taken_by_snapshot:
            have = ", ".join(d.target for d in disks) or "none"
            what = f"no disk {request.disk}" if request.disk else "no disk"
            raise NotFound(f"domain {info.name} has {what} (disks: {have})")
        chosen = [disk]
    if not chosen:
        raise NotFound(f"domain {info.name} has no disks")
    for d in chosen:
        if not d.path:
            raise BadInput(f"disk {d.target} of {info.name} has no source file")
        if d.rbd is not None:
            continue  # an RBD image: its cluster is asked below
        if d.source_type not in ("file", "block"):
            raise BadInput(f"disk {d.target} of {info.name} is {d.source_type}; "
                           "only file, block and RBD disks are supported")
        if not os.path.exists(d.path):
            raise NotFound(f"disk {d.target} of {info.name}: no such file {d.path}")
    return chosen


def _scratch_needed(mode: Mode, out_format: str, src: ImageFileInfo, compress: bool) -> int:
    """Peak scratch bytes for one disk: output plus any intermediate copy (none when the live
    delta or the backup file is itself the output)."""
    allocated = src.actual_size + sum(b.actual_size for b in src.backing_chain)
    output = src.virtual_size if out_format == "raw" else allocated
    if copy_is_output(mode, compress, src.backing_file):
        return output
    if mode == Mode.LIVE:
        return output + src.actual_size
    if mode == Mode.BACKUP:
        return output + allocated
    return output


def check_space(directory: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise BadInput(f"not enough space in {directory} for {what}: need "
                       f"{size_text(needed)}, {size_text(free)} free")


def _lock_holders(path: str) -> list[str]:
    """Processes with ``path`` open, as "pid N (comm)" or "domain NAME (pid N)" for a QEMU."""
    real, found = os.path.realpath(path), []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) == os.getpid() or not any(
                    os.readlink(fd) == real for fd in (proc / "fd").iterdir()):
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        comm = os.path.basename(argv[0].decode(errors="replace")) or "?"
        guest = next((a.decode(errors="replace").split("guest=", 1)[1].split(",")[0]
                      for a in argv if a.startswith(b"guest=")), None)
        found.append(f"domain {guest} (pid {proc.name})" if guest else f"pid {proc.name} ({comm})")
    return found


async def _disk_info(d: DiskInfo, active: bool) -> ImageFileInfo:
    """qemu-img info of a chosen disk; a write lock held by another process is a clear line."""
    assert d.path
    try:
        return await qemu_img.info(d.path, force_share=active, fmt=d.format)
    except QemuImgError as err:
        if "lock" not in str(err):
            raise BadInput(f"disk {d.target} ({d.path}): {err}") from None
        holders = ", ".join(_lock_holders(d.path)) or "another process"
        raise BadInput(f"disk {d.target} ({d.path}) is in use by {holders} (it holds the "
                       "image's write lock); stop it first") from None


def _output_estimate(out_format: str, src: ImageFileInfo) -> int:
    """Bytes of one extracted image: the virtual size for raw, else what is allocated."""
    if out_format == "raw":
        return src.virtual_size
    return src.actual_size + sum(b.actual_size for b in src.backing_chain)


def _keep_paths(keep_local: str, names: list[str], out_format: str) -> list[Path]:
    """Where --keep-local puts each image file (the path itself, or DIR/NAME.FORMAT per disk);
    BadInput when a name would put it outside DIR, or when a file is already there."""
    if len(names) == 1:
        paths = [Path(keep_local)]
    else:
        keep_dir = os.path.normpath(os.path.abspath(keep_local))
        paths = []
        for name in names:
            kept = os.path.normpath(os.path.join(keep_dir, f"{name}.{out_format}"))
            if os.path.dirname(kept) != keep_dir:
                raise BadInput(f"--keep-local: image name {name!r} would put the kept file "
                               f"outside {keep_dir}")
            paths.append(Path(kept))
    for path in paths:
        if path.exists() or path.is_symlink():
            raise BadInput(f"--keep-local: {path} already exists; not overwriting it")
    return paths


def check_output_space(scratch: Path, scratch_needed: int, outputs: int,
                       library: Path | None, keep_dir: Path | None) -> None:
    """Room for every copy of the image at once, per filesystem: the scratch files, the
    library's copy, and the --keep-local file when it is not merely renamed out of scratch."""
    def dev(path: Path) -> int:
        return os.stat(path).st_dev

    needs: dict[int, list] = {dev(scratch): [scratch, scratch_needed, ["the extracted image"]]}
    wanted = [(library, "the library copy")]
    if keep_dir is not None and dev(keep_dir) != dev(scratch):
        wanted.append((keep_dir, "the --keep-local copy"))
    for path, what in wanted:
        if path is not None:
            entry = needs.setdefault(dev(path), [path, 0, []])
            entry[1] += outputs
            entry[2].append(what)
    for path, needed, whats in needs.values():
        if len(whats) > 1 or path != scratch:
            check_space(path, needed, " and ".join(whats))


def check_store(store: ImageStore) -> None:
    """Credentials work and the store answers (lists one image)."""
    check = getattr(store, "check", None)
    if callable(check):
        check()
    else:
        next(iter(store.iter_images()), None)


async def preflight(request: SnapshotRequest, host: LibvirtHost,
                    store: ImageStore | None = None, *, job_id: str | None = None,
                    hold_scratch: bool = False) -> tuple[Plan, ImageStore]:
    """Check the request against the real host, disks, space and store; return the Plan
    (for job ``job_id``, or a new id). ``hold_scratch``: the plan is to be launched, its
    scratch stays reserved until its job ends (core/engine/reservations.py)."""
    validate_image_name(request.name)
    if request.out_format not in OUTPUT_FORMATS:
        raise BadInput(f"unknown output format {request.out_format!r} (raw or qcow2)")
    if request.compress and request.out_format != "qcow2":
        raise BadInput("--compress needs --format qcow2")
    destination = resolve_destination(request.destination, request.cloud, request.library_dir)
    if destination == "glance":
        validate_glance_name(request.name)
    image_plan.check_request(request, destination)
    check_rotation(request.backup_type, request.rotate)
    neighbour = neighbour_fields(request.priority, request.bwlimit)
    if store is None:
        store = open_store(destination, cloud=request.cloud, library=request.library_dir)
    # Logging in to Keystone takes a few hundred ms: it runs while the guest and disks are
    # checked, and is awaited before the plan is returned (a refusal below wins; its error
    # then is not lost as "never retrieved").
    store_checked = asyncio.ensure_future(asyncio.to_thread(check_store, store))
    store_checked.add_done_callback(lambda f: f.cancelled() or f.exception())
    info = host.get_domain(request.domain)
    if info.state not in SNAPSHOT_STATES:
        raise BadInput(f"{info.name} is {info.state}; snapshots need it running, paused or off")
    holder = domain_lock_holder(info.uuid)
    if holder:
        raise BadInput(busy_message(info.name, holder))
    disks = _pick_disks(info, request)
    job_id = job_id or new_job_id()
    scratch = scratch_dir()
    facts = mode_facts(info, host)
    direct_store: dict = {}
    if preflight_rbd.wants_direct(request, disks):
        why, direct_store = await asyncio.to_thread(preflight_rbd.direct_target, request,
                                                    destination, store, host, disks)
        facts = dataclasses.replace(facts, direct_blocked=why)
    reasons = mode_reasons(info, disks, facts)
    nbd_socket = socket_path(scratch, job_id)
    # One decision with the dashboard's dialog (preflight/mode_decision.py): the mode, the
    # stream, and Nova's guard on modes that stop the guest.
    decision = decide(request, destination, info, reasons, facts, nbd_socket)
    if decision.mode is None:
        raise BadInput(decision.why)
    mode, reason, stream = decision.mode, decision.why, decision.stream
    not_streamed = decision.not_streamed
    if not_streamed and reasons[Mode.BACKUP] is None:  # could have streamed: say why not
        notes_stream = [f"not streamed: {not_streamed}"]
    else:
        notes_stream = []
    extras = quiesce_and_verify(request, host, info)
    active = info.state in (DomainState.RUNNING, DomainState.PAUSED)
    hardware = image_plan.domain_hardware(host, info)
    downtime_limit, notes = image_plan.check_stop(request, info, host, hardware, mode)

    disk_plans, needed, outputs = [], 0, 0
    for d in disks:
        src = (await asyncio.to_thread(preflight_rbd.rbd_file_info, host, d) if d.rbd
               else await _disk_info(d, active))
        outputs += _output_estimate(request.out_format, src)
        if src.corrupt:
            raise BadInput(f"disk {d.target} ({d.path}) is marked corrupt; run qemu-img check")
        if mode == Mode.INTERNAL and src.format != "qcow2":
            raise BadInput(f"cannot use internal mode: disk {d.target} is {src.format}, not qcow2")
        if not stream and mode != Mode.DIRECT:  # streamed: only the CoW scratch; direct: none
            needed += _scratch_needed(mode, request.out_format, src, request.compress)
        base = f"{job_id}-{d.target}"
        copy_fmt = (request.out_format if copy_is_output(mode, request.compress, src.backing_file)
                    else "qcow2")
        name = request.name if len(disks) == 1 else f"{request.name}-{d.target}"
        disk_plans.append(DiskPlan(
            target=d.target, source_path=d.path or "", source_format=src.format,
            virtual_size=src.virtual_size, actual_size=src.actual_size,
            apparent_size=src.apparent_size, backing_file=src.backing_file,
            backing_format=src.backing_chain[0].format if src.backing_chain else None,
            image_name=name, output_path=str(scratch / f"{base}.{request.out_format}.partial"),
            delta_path=str(scratch / f"{base}.delta.{copy_fmt}") if mode == Mode.LIVE else None,
            backup_path=str(scratch / f"{base}.backup.{copy_fmt}")
            if mode == Mode.BACKUP and not stream else None,
            cow_path=str(scratch / f"{base}.cow.qcow2") if stream else None,
            rbd=preflight_rbd.rbd_plan(d, job_id, direct_store) if mode == Mode.DIRECT
            else preflight_rbd.cold_plan(d, job_id) if d.rbd and mode == Mode.COLD else None,
        ))
    check_space(scratch, needed, "the extracted image")
    check_state_space(scratch, needed)  # the journal's room too
    keep_dir = None
    if request.keep_local:
        keep_dir = Path(request.keep_local) if len(disks) > 1 else Path(request.keep_local).parent
        if not keep_dir.is_dir() or not os.access(keep_dir, os.W_OK):
            raise BadInput(f"--keep-local: {keep_dir} is not a writable directory")
        _keep_paths(request.keep_local, [p.image_name for p in disk_plans], request.out_format)

    await store_checked
    library = getattr(store, "directory", None) if destination == "library" else None
    check_output_space(scratch, needed, outputs, library, keep_dir)
    settings, meta_notes, base_ref = await image_plan.plan_metadata(request, info, store,
                                                                    hardware, disk_plans)
    plan = Plan(
        job_id=job_id, uri=host.uri, domain_name=info.name, domain_uuid=info.uuid,
        original_state="shut off" if info.state == DomainState.SAVED else str(info.state),
        mode=mode, mode_reason=reason, compress=request.compress,
        out_format="raw" if mode == Mode.DIRECT else request.out_format,  # a clone: raw
        compression_type=qemu_img.best_compression_type() if request.compress else None,
        destination=destination, cloud=request.cloud,
        library_dir=str(getattr(store, "directory", "") or "") or request.library_dir,
        keep_local=request.keep_local,
        snapshot_name=f"snaptui-{job_id}" if mode == Mode.INTERNAL else None,
        base_image_ref=base_ref, host=socket.gethostname(), disks=disk_plans,
        domain_targets=[d.target for d in info.snapshot_disks],
        image_settings=settings, downtime_limit_s=downtime_limit,
        notes=meta_notes + notes + notes_stream,
        nova_instance=meta_notes[0] if info.nova is not None else None,
        stream=stream, nbd_socket=nbd_socket if stream else None,
        backup_type=request.backup_type, rotate=request.rotate,
        rotate_unowned=request.rotate_unowned,
        **extras, **neighbour,
    )
    # Last: the host's job limit, and this job's scratch reserved against the other jobs'
    # (one locked step with the space check; released when the job ends).
    reserve(job_id, info.name, scratch, needed, hold=hold_scratch)
    return plan, store
