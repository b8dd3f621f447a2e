"""A restore's preflight: everything checkable is checked while the guest is untouched.

Turns a RestoreRequest into a RestorePlan, or raises one clear BadInput line (exit 2).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket

from snaptui.core.disk import qemu_img
from snaptui.core.engine.journal import JobRecord, journal_path, load_job
from snaptui.core.engine.locks import busy_message, domain_lock_holder
from snaptui.core.engine.neighbour import neighbour_fields
from snaptui.core.engine.preflight.checks import new_job_id
from snaptui.core.engine.states import JobStatus
from snaptui.core.errors import BadInput, NotFound, QemuImgError
from snaptui.core.images.factory import open_store, resolve_destination
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DiskInfo, DomainInfo, DomainState, ImageFileInfo, ImageRecord
from snaptui.core.present import size_text
from snaptui.core.restore import download
from snaptui.core.restore.plan import (
    ACTION_RESTORE,
    ACTION_UNDO,
    KIND,
    RestoreDisk,
    RestorePlan,
    RestoreRequest,
)


def open_source(request: RestoreRequest, store: ImageStore | None = None
                ) -> tuple[str, ImageStore]:
    """The store the image comes from (chosen as snapshots choose theirs; ``store`` when one
    is given, e.g. on a forwarded login) and its kind."""
    source = resolve_destination(request.source, request.cloud, request.library_dir)
    if store is not None:
        return source, store
    return source, open_store(source, cloud=request.cloud, library=request.library_dir)


def check_guest(info: DomainInfo, request: RestoreRequest) -> None:
    """The guest may lose its disk: shut off, or asked to shut down (--shutdown / --force)."""
    if info.state == DomainState.SAVED or info.has_managed_save:
        raise BadInput(f"{info.name} has a managed save (its memory refers to the current "
                       "disk); start it and shut it down, or discard it with `virsh "
                       "managedsave-remove`, before restoring")
    if info.state == DomainState.SHUTOFF:
        return
    if info.state == DomainState.RUNNING and (request.shutdown or request.force):
        return
    if info.state == DomainState.PAUSED and request.force:
        return
    hint = ("--force powers it off" if info.state == DomainState.PAUSED
            else "--shutdown asks it to shut down first")
    raise BadInput(f"{info.name} is {info.state}; a restore needs it shut off ({hint})")


def _pick_disk(info: DomainInfo, target: str | None) -> DiskInfo:
    disk = info.disk(target)
    if disk is None or not disk.taken_by_snapshot:
        have = ", ".join(d.target for d in info.snapshot_disks) or "none"
        what = f"no disk {target}" if target else "no disk"
        raise NotFound(f"domain {info.name} has {what} (disks: {have})")
    if disk.source_type != "file" or not disk.path:
        raise BadInput(f"disk {disk.target} of {info.name} is {disk.source_type}; a restore "
                       "replaces file disks only")
    if not os.path.isfile(disk.path):
        raise NotFound(f"disk {disk.target} of {info.name}: no such file {disk.path}")
    return disk


def check_room(directory: str, needed: int) -> None:
    if not os.access(directory, os.W_OK):
        raise BadInput(f"{directory} is not writable: the restored disk is written beside "
                       "the old one")
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise BadInput(f"not enough space in {directory} for the restored disk beside the old "
                       f"one: need {size_text(needed)}, {size_text(free)} free")


def check_owner(path: str) -> os.stat_result:
    """The new file can be given the old one's owner (root, or the same user)."""
    st = os.stat(path)
    if os.geteuid() != 0 and st.st_uid != os.geteuid():
        raise BadInput(f"{path} belongs to uid {st.st_uid}; only root can give the restored "
                       "file that owner")
    return st


async def _disk_plan(disk: DiskInfo, image: ImageRecord, vsize: int,
                     notes: list[str], job_id: str) -> RestoreDisk:
    assert disk.path
    try:
        old = await qemu_img.info(disk.path, force_share=True, fmt=disk.format)
    except QemuImgError as err:
        raise BadInput(f"disk {disk.target} ({disk.path}): {err}") from None
    if vsize < old.virtual_size:
        raise BadInput(f"image {image.name!r} has a virtual size of {size_text(vsize)}, "
                       f"smaller than {disk.target}'s {size_text(old.virtual_size)}: a restore "
                       "never shrinks a disk")
    if vsize > old.virtual_size:
        notes.append(f"{disk.target} grows from {size_text(old.virtual_size)} to "
                     f"{size_text(vsize)} (the image's virtual size)")
    base, why = chain_base(old, image)
    if base is not None:
        notes.append(f"{disk.target} is restored as a qcow2 overlay over {base.path}, the base "
                     f"of its chain ({why})")
    elif old.backing_file:
        notes.append(f"{disk.target} has a backing chain (over {old.backing_file}); it is "
                     f"restored as one flat file ({why}), the chain is left as it is")
    if old.snapshots:
        names = ", ".join(s.name for s in old.snapshots)
        notes.append(f"{disk.target}'s internal snapshots ({names}) stay in the old file, "
                     f"kept as {disk.path}.pre-restore-{job_id}")
    if old.format != image.disk_format:
        notes.append(f"the {image.disk_format} image is converted to {old.format} "
                     f"({disk.target}'s format)")
    size = int(image.size or 0)
    planned = RestoreDisk(target=disk.target, path=disk.path, format=old.format,
                          virtual_size=old.virtual_size, image_name=image.name,
                          backing_file=old.backing_file,
                          internal_snapshots=[s.name for s in old.snapshots],
                          overlay_base=base.path if base else None,
                          overlay_base_format=base.format if base else None)
    check_room(os.path.dirname(disk.path),
               size * 2 if planned.converts(str(image.disk_format)) else size)
    st = check_owner(disk.path)
    planned.uid, planned.gid, planned.mode = st.st_uid, st.st_gid, st.st_mode & 0o7777
    return planned


def chain_base(old: ImageFileInfo, image: ImageRecord) -> tuple[ImageFileInfo | None, str]:
    """The base of the disk's backing chain when it is Nova's cached copy of the image's
    ``base_image_ref`` (named the sha1 of that id, ``_<size>`` after it when resized), and why
    (or why not). The restored file is then an overlay over that base, as Nova's disks are."""
    if not old.backing_chain:
        return None, "no backing chain"
    base = old.backing_chain[-1]
    ref = str(image.properties.get("base_image_ref") or "")
    if not ref:
        return None, "the image has no base_image_ref"
    if old.format != "qcow2":
        return None, f"a {old.format} disk cannot be an overlay"
    cached = hashlib.sha1(ref.encode(), usedforsecurity=False).hexdigest()
    name = os.path.basename(base.path)
    if name == cached or name.startswith(cached + "_"):
        return base, f"Nova's cached copy of the image's base_image_ref {ref}"
    return None, f"its base is not Nova's cached copy of the image's base_image_ref {ref}"


def _checked_domain(host: LibvirtHost, name: str, request: RestoreRequest) -> DomainInfo:
    info = host.get_domain(name)
    check_guest(info, request)
    holder = domain_lock_holder(info.uuid)
    if holder:
        raise BadInput(busy_message(info.name, holder))
    return info


async def preflight_restore(request: RestoreRequest, host: LibvirtHost,
                            store: ImageStore | None = None, *,
                            job_id: str | None = None) -> tuple[RestorePlan, ImageStore]:
    """Check a restore in place against the host, the disk, the space and the image."""
    if not request.domain:
        raise BadInput("name the guest whose disk is restored (--domain NAME)")
    if request.timeout <= 0:
        raise BadInput("--timeout must be a positive number of seconds")
    neighbour = neighbour_fields(request.priority, None)
    source, store = open_source(request, store)
    info = _checked_domain(host, request.domain, request)
    disk = _pick_disk(info, request.disk)
    image = download.find_image(store, request.image)
    image_hash = download.check_restorable(image)
    vsize = await download.virtual_size(store, image)
    job_id = job_id or new_job_id()
    notes: list[str] = []
    disk_plan = await _disk_plan(disk, image, vsize, notes, job_id)
    plan = RestorePlan(
        job_id=job_id, uri=host.uri, host=socket.gethostname(), domain_name=info.name,
        domain_uuid=info.uuid, original_state=str(info.state), image_id=image.id,
        image_name=image.name, image_format=str(image.disk_format),
        image_size=int(image.size or 0), image_virtual_size=vsize, image_hash=image_hash,
        destination=source, cloud=request.cloud,
        library_dir=str(getattr(store, "directory", "") or "") or request.library_dir,
        action=ACTION_RESTORE, disks=[disk_plan], shutdown_timeout_s=request.timeout,
        force=request.force, start=request.start, notes=notes,
        mode_reason=f"restore image {image.name!r} ({image.id}) over {disk.target} of "
                    f"{info.name}", **neighbour)
    return plan, store


def restore_job(job_id: str) -> tuple[JobRecord, RestorePlan]:
    """A finished restore job (the one ``--undo`` puts back) and its plan."""
    if not journal_path(job_id).exists():
        raise NotFound(f"no such job: {job_id}")
    job = load_job(job_id)
    job.check_format()
    if job.plan.get("kind") != KIND or job.plan.get("action") != ACTION_RESTORE:
        raise BadInput(f"job {job_id} is not a restore")
    if job.status != JobStatus.DONE:
        raise BadInput(f"job {job_id} is {job.status}; only a finished restore can be undone")
    return job, RestorePlan.from_json(job.plan, job_id)


async def preflight_undo(request: RestoreRequest, host: LibvirtHost, *,
                         job_id: str | None = None) -> RestorePlan:
    """Check that a finished restore can be put back: its pre-restore files still exist."""
    assert request.undo_job
    _, done = restore_job(request.undo_job)
    info = _checked_domain(host, done.domain_uuid, request)
    for d in done.disks:
        pre = d.pre_restore_path(done.job_id)
        if not os.path.isfile(pre):
            raise BadInput(f"{pre} no longer exists (removed by cleanup?); the restore "
                           f"{done.job_id} cannot be undone")
        if not os.path.isfile(d.path):
            raise NotFound(f"no such file {d.path}")
    job_id = job_id or new_job_id()
    return RestorePlan(
        job_id=job_id, uri=host.uri, host=socket.gethostname(), domain_name=info.name,
        domain_uuid=info.uuid, original_state=str(info.state), image_id=done.image_id,
        image_name=done.image_name, image_format=done.image_format,
        image_size=done.image_size, image_virtual_size=done.image_virtual_size,
        image_hash=done.image_hash, destination=done.destination, cloud=done.cloud,
        library_dir=done.library_dir, action=ACTION_UNDO, disks=done.disks,
        shutdown_timeout_s=request.timeout, force=request.force, start=request.start,
        undo_of=done.job_id, mode="restore-undo",
        mode_reason=f"undo restore {done.job_id}: put the pre-restore "
                    f"{', '.join(d.target for d in done.disks)} of {info.name} back",
        **neighbour_fields(request.priority, None))
