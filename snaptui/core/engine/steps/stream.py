"""Streamed snapshot steps: a pull-mode backup exports the disks over NBD, each disk is read
once and sent once to Glance (sha512 and size computed on the way), then the export ends.

Nothing but the export's copy-before-write scratch and its socket is written to the scratch
dir; the guest is never paused (frozen only around backup-begin with ``--quiesce``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

from snaptui.core.disk import qemu_img
from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact, Fact
from snaptui.core.engine.neighbour import upload_kwargs
from snaptui.core.engine.plan import DiskPlan, Plan
from snaptui.core.engine.runner import LIBVIRT_LOST, Action
from snaptui.core.engine.steps import quiesce
from snaptui.core.engine.steps.upload import send_upload
from snaptui.core.errors import HypervisorError
from snaptui.core.images.store import UploadProgress
from snaptui.core.libvirt import nbd_export
from snaptui.core.libvirt.nbd_export import ExportPaths, NbdDisk

RECONNECT_S = 45.0  # how long ending the export waits for a restarting libvirtd


def export_paths(plan: Plan) -> ExportPaths:
    assert plan.nbd_socket
    return ExportPaths(plan.nbd_socket, {d.target: str(d.cow_path) for d in plan.disks})


def export(all_targets: list[str]) -> Action:
    """Create the 0600 CoW scratch files, then begin the pull-mode backup (frozen around the
    call with --quiesce); undone by ending the backup job and removing socket and scratch."""
    async def run(ctx: JobContext) -> None:
        paths = export_paths(ctx.plan)
        ctx.record(Fact.BACKUP_JOB, True)  # before anything exists: undo removes what is there
        for disk in ctx.plan.disks:
            await qemu_img.create(str(disk.cow_path), "qcow2", disk.virtual_size)
        dom = ctx.domain()
        await asyncio.to_thread(nbd_export.prepare_socket_dir, dom, paths)
        await quiesce.freeze_guest(ctx)
        try:
            await asyncio.to_thread(nbd_export.begin, dom, paths, all_targets)
        finally:
            await asyncio.shield(quiesce.thaw_guest(ctx))

    async def undo(ctx: JobContext) -> None:
        await quiesce.thaw_guest(ctx)  # killed while frozen: recover thaws here
        await _end_export(ctx)
    return Action(run, undo)


def unexport() -> Action:
    """End the backup job (QEMU stops serving the export) and remove socket and scratch."""
    return Action(_end_export)


async def _end_export(ctx: JobContext) -> None:
    deadline = time.monotonic() + RECONNECT_S
    while True:
        try:
            await asyncio.to_thread(nbd_export.end, ctx.domain())
            break
        except Exception as err:  # libvirtd restarting: reconnect and end it then
            if not any(m in str(err) for m in LIBVIRT_LOST) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)
            await asyncio.to_thread(ctx.reconnect_host)
    nbd_export.remove_files(export_paths(ctx.plan))
    ctx.forget(Fact.BACKUP_JOB)


def _chunks(plan: Plan, disk: NbdDisk, read: Callable[[int, int], bytes],
            note: Callable[[str], None]) -> tuple[int, Iterator[bytes]]:
    """The image's size and bytes in order: raw (zeros generated, never read) or a qcow2
    written as a stream (zero clusters not stored)."""
    extents = disk.extents()
    data = nbd_export.data_bytes(extents)
    note(f"allocation map: {len(extents)} extents, {data} of {disk.size} bytes hold data")
    if plan.out_format == "raw":
        return disk.size, nbd_export.raw_chunks(extents, read)
    from snaptui.core.disk import qcow2_stream  # preflight checked it imports

    writer = qcow2_stream.Qcow2Stream(disk.size, [
        qcow2_stream.Extent(e.offset, e.length, e.data) for e in extents])
    return writer.size, writer.chunks(read)


def stream(disk: DiskPlan) -> Action:
    """Read the disk's export over NBD into the image's upload; the store checks sha512 and
    size against Glance's. No undo of its own: the image step's deletes the image."""
    async def run(ctx: JobContext) -> None:
        image_id = ctx.facts[DiskFact.IMAGE.of(disk.target)]
        assert ctx.plan.nbd_socket
        store = ctx.store
        upload_stream = getattr(store, "upload_stream", None)
        if not callable(upload_stream):
            raise HypervisorError(f"the {store.kind} store cannot take a streamed image")
        holder: list[NbdDisk] = []

        def send() -> str:
            nbd = NbdDisk(str(ctx.plan.nbd_socket), disk.target)
            holder.append(nbd)
            try:
                size, chunks = _chunks(ctx.plan, nbd, nbd.read, ctx.note)

                def on_progress(p: UploadProgress) -> None:
                    ctx.progress(p.sent, p.total, "bytes", read=nbd.bytes_read,
                                 rate=round(p.rate),
                                 eta_s=None if p.eta_s is None else round(p.eta_s, 1))
                # --bwlimit: the upload's limiter paces the NBD reads too (one pipeline)
                return upload_stream(image_id, chunks, size, on_progress, ctx.cancel_flag,
                                     **upload_kwargs(ctx.plan))
            finally:
                nbd.close()

        sent = await send_upload(ctx, disk, image_id, send)
        read = holder[0].bytes_read if holder else 0
        ctx.note(f"{disk.target}: read {read} bytes over NBD, sent {sent} to Glance")
    return Action(run)
