"""The restore's steps and their undos: stop the guest, write the new file beside the disk,
swap it in by renames only, start the guest.

At every instant the disk's path names either the complete old file or the complete new one:
the new file is written under a hidden name and fsynced; the old one gets a second name (a hard
link) before ``rename(2)`` puts the new one over the path in one atomic step. Undo is the same
rename the other way. Every undo is idempotent (``recover`` may run it twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import cast

import libvirt

from snaptui.core.disk import qemu_img
from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import Fact
from snaptui.core.engine.runner import Action, StepFn
from snaptui.core.errors import BadInput, HypervisorError, SnaptuiError
from snaptui.core.libvirt.host import error_message
from snaptui.core.paths import sync_dir
from snaptui.core.restore import download
from snaptui.core.restore.plan import RestoreDisk, RestoreFact, RestorePlan

POLL_S = 0.2
# the guest agent when it answers, else the ACPI power button (libvirt tries them in turn)
SHUTDOWN_FLAGS = (libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT
                  | libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)


def _sync_dir(path: str) -> None:
    """fsync the directory holding ``path`` (a rename or link in it is durable)."""
    sync_dir(Path(path).parent)


def plan_of(ctx: JobContext) -> RestorePlan:
    return cast(RestorePlan, ctx.plan)


def _remove(*paths: str | None) -> None:
    for path in paths:
        if path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


# -- the guest ----------------------------------------------------------------------------

def stop_guest() -> Action:
    """Ask the guest to shut down (ACPI or its agent) and wait; when it has not stopped by
    the timeout, power it off if --force, else refuse. Undo: start it again."""
    async def run(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        dom = ctx.domain()
        ctx.record(RestoreFact.STOPPED.key, True)
        ctx.record(Fact.GUEST_STOPPED_AT, time.time())
        if await asyncio.to_thread(dom.isActive):
            try:
                await asyncio.to_thread(dom.shutdownFlags, SHUTDOWN_FLAGS)
            except libvirt.libvirtError as err:
                if not plan.force:
                    raise HypervisorError(f"cannot ask {plan.domain_name} to shut down: "
                                          f"{error_message(err)}") from None
        deadline = time.monotonic() + plan.shutdown_timeout_s
        while await asyncio.to_thread(dom.isActive):
            ctx.check_cancel()
            if time.monotonic() > deadline:
                if not plan.force:
                    raise SnaptuiError(
                        f"{plan.domain_name} did not shut down within "
                        f"{plan.shutdown_timeout_s:g} s; nothing was replaced (--force powers "
                        "it off)")
                ctx.note(f"{plan.domain_name} did not shut down within "
                         f"{plan.shutdown_timeout_s:g} s; powered off (--force)")
                with contextlib.suppress(libvirt.libvirtError):
                    await asyncio.to_thread(dom.destroy)
                break
            await asyncio.sleep(POLL_S)

    async def undo(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        if not ctx.facts.get(RestoreFact.STOPPED.key):
            return
        dom = ctx.domain()
        if not await asyncio.to_thread(dom.isActive):
            flags = libvirt.VIR_DOMAIN_START_PAUSED if plan.original_state == "paused" else 0
            await asyncio.to_thread(dom.createWithFlags, flags)
        ctx.record(Fact.GUEST_RESUMED_AT, time.time())
        ctx.forget(RestoreFact.STOPPED.key)

    return Action(run, undo)


def start_guest() -> Action:
    """Start the guest on its restored disk. Undo: power off a guest this job started (its
    disk is about to be put back)."""
    async def run(ctx: JobContext) -> None:
        dom = ctx.domain()
        ctx.record(RestoreFact.STARTED.key, True)
        if not await asyncio.to_thread(dom.isActive):
            await asyncio.to_thread(dom.create)
        ctx.record(Fact.GUEST_RESUMED_AT, time.time())

    async def undo(ctx: JobContext) -> None:
        if not ctx.facts.get(RestoreFact.STARTED.key):
            return
        dom = ctx.domain()
        if await asyncio.to_thread(dom.isActive):
            await asyncio.to_thread(dom.destroy)
        ctx.forget(RestoreFact.STARTED.key)

    return Action(run, undo)


def _refuse_if_running(ctx: JobContext, what: str) -> None:
    if ctx.domain().isActive():
        raise SnaptuiError(f"{ctx.plan.domain_name} runs: {what} only while it is shut off "
                           "(shut it down, then run `snaptui recover`)")


# -- the new file -------------------------------------------------------------------------

def download_image(d: RestoreDisk) -> Action:
    """Stream the image into a new hidden file beside the disk (the partial file, or the
    staging file a convert reads), sha512 checked. Undo: remove both."""
    async def run(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        partial, staging = d.partial_path(plan.job_id), d.staging_path(plan.job_id)
        target = staging if d.converts(plan.image_format) else partial
        fact = RestoreFact.STAGING if target == staging else RestoreFact.PARTIAL
        ctx.record(fact.of(d.target), target)
        store = ctx.store
        image = await asyncio.to_thread(store.show, plan.image_id)
        if image.os_hash_value != plan.image_hash:
            raise SnaptuiError(f"image {plan.image_id} changed since the preflight (its hash "
                               "differs); nothing was replaced")

        def progress(done: int, total: int | None) -> None:
            ctx.progress(done, total, "bytes")

        digest, _ = await asyncio.to_thread(
            download.write_new_file, download.iter_data(store, image), target,
            expected=plan.image_hash, total=plan.image_size or None, on_progress=progress,
            cancel=ctx.cancel_flag)
        ctx.record(RestoreFact.CHECKSUM.of(d.target), digest)

    async def undo(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        await asyncio.to_thread(_remove, d.staging_path(plan.job_id), d.partial_path(plan.job_id))
        ctx.forget(RestoreFact.STAGING.of(d.target))
        ctx.forget(RestoreFact.PARTIAL.of(d.target))

    return Action(run, undo)


def _drop_new_files(d: RestoreDisk) -> StepFn:
    """The undo of every step that writes the new file: remove it and the download."""
    async def undo(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        await asyncio.to_thread(_remove, d.staging_path(plan.job_id), d.partial_path(plan.job_id))
        ctx.forget(RestoreFact.STAGING.of(d.target))
        ctx.forget(RestoreFact.PARTIAL.of(d.target))

    return undo


async def _finish_new_file(ctx: JobContext, d: RestoreDisk) -> None:
    """fsync the complete new file, then drop the download it was made from."""
    plan = plan_of(ctx)
    fd = os.open(d.partial_path(plan.job_id), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _remove(d.staging_path(plan.job_id))
    ctx.forget(RestoreFact.STAGING.of(d.target))


def convert_image(d: RestoreDisk) -> Action:
    """Convert the downloaded image to the disk's format (a new hidden file beside the disk),
    then drop the download. Undo: remove both."""
    async def run(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        ctx.record(RestoreFact.PARTIAL.of(d.target), d.partial_path(plan.job_id))
        argv = qemu_img.convert_argv(d.staging_path(plan.job_id), d.partial_path(plan.job_id),
                                     out_format=d.format, src_format=plan.image_format)
        await qemu_img.run_convert(
            argv, on_progress=lambda pct: ctx.progress(round(pct, 2), 100.0, "%"),
            cancel=ctx.cancel_event, exclusive=True)
        await _finish_new_file(ctx, d)

    return Action(run, _drop_new_files(d), tuple(convert_argv_text(d)))


def convert_argv_text(d: RestoreDisk) -> list[str]:
    return ["qemu-img", "convert", "-O", d.format, "IMAGE", d.path + ".new"]


def overlay_image(d: RestoreDisk) -> Action:
    """Make the new file a qcow2 overlay over the downloaded image (no data copied yet), the
    first half of an overlay restore. Undo: remove both."""
    async def run(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        ctx.record(RestoreFact.PARTIAL.of(d.target), d.partial_path(plan.job_id))
        await qemu_img.create(d.partial_path(plan.job_id), "qcow2",
                              backing_file=d.staging_path(plan.job_id),
                              backing_format=plan.image_format)

    return Action(run, _drop_new_files(d))


def rebase_image(d: RestoreDisk) -> Action:
    """Rebase the new file from the download onto the chain's base: qemu-img compares the
    two and writes into the new file only what differs from the base, which it only reads
    (the base is shared, like Nova's image cache). Then drop the download. Undo: remove
    both."""
    async def run(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        assert d.overlay_base
        argv = qemu_img.rebase_argv(d.partial_path(plan.job_id), d.overlay_base, fmt="qcow2",
                                    backing_format=d.overlay_base_format or "raw")
        await qemu_img.run_convert(
            argv, on_progress=lambda pct: ctx.progress(round(pct, 2), 100.0, "%"),
            cancel=ctx.cancel_event)
        await _finish_new_file(ctx, d)

    return Action(run, _drop_new_files(d))


def prepare_file(d: RestoreDisk) -> Action:
    """Check the new file (its format, no backing file but the planned base, a virtual size
    no smaller than the disk's) and give it the old disk's owner, group and mode. Its undo is
    the download's."""
    async def run(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        partial = d.partial_path(plan.job_id)
        got = await qemu_img.info(partial, chain=False, fmt=d.format)
        if got.backing_file != d.overlay_base:
            raise BadInput(f"the restored file's backing file is {got.backing_file or 'none'}, "
                           f"not {d.overlay_base or 'none'} as planned")
        if got.virtual_size < d.virtual_size:
            raise BadInput(f"the image's virtual size {got.virtual_size} is smaller than "
                           f"{d.target}'s {d.virtual_size}: a restore never shrinks a disk")
        await asyncio.to_thread(_copy_owner, d, partial)

    return Action(run, None)


def _copy_owner(d: RestoreDisk, path: str) -> None:
    """The plan's owner/group/mode (the old disk's at preflight; its current ones if they
    changed since, e.g. libvirt gave it back to root when the guest stopped)."""
    try:
        st = os.stat(d.path)
        uid, gid, mode = st.st_uid, st.st_gid, st.st_mode & 0o7777
    except FileNotFoundError:
        uid, gid, mode = d.uid, d.gid, d.mode
    os.chown(path, uid, gid)
    os.chmod(path, mode)


# -- the swap -----------------------------------------------------------------------------

def _link(existing: str, new: str) -> None:
    if not os.path.exists(new):
        os.link(existing, new)
    _sync_dir(new)


def _unlink_if_same(name: str, disk: str) -> None:
    """Remove the second name ``name`` while it is the disk file itself (nothing was swapped)."""
    if os.path.exists(name) and os.path.exists(disk) and os.path.samefile(name, disk):
        os.unlink(name)
        _sync_dir(disk)


def _rename_over(ctx: JobContext, name: str, d: RestoreDisk, what: str) -> None:
    """Rename ``name`` over the disk's path unless it is already there (or gone)."""
    if not os.path.exists(name) or os.path.samefile(name, d.path):
        return
    _refuse_if_running(ctx, f"{what} is put back")
    os.rename(name, d.path)
    _sync_dir(d.path)


def keep_old(d: RestoreDisk) -> Action:
    """Give the old disk its second name ``<disk>.pre-restore-<job>`` (a hard link: the path
    still names it). Undo: drop that name while it still is the disk."""
    async def run(ctx: JobContext) -> None:
        pre = d.pre_restore_path(ctx.plan.job_id)
        ctx.record(RestoreFact.PRE_RESTORE.of(d.target), pre)
        await asyncio.to_thread(_link, d.path, pre)

    async def undo(ctx: JobContext) -> None:
        await asyncio.to_thread(_unlink_if_same, d.pre_restore_path(ctx.plan.job_id), d.path)
        ctx.forget(RestoreFact.PRE_RESTORE.of(d.target))

    return Action(run, undo)


def swap_in(d: RestoreDisk) -> Action:
    """Rename the new file over the disk's path: one atomic rename(2). Undo: rename the kept
    old disk back over it (the new file goes)."""
    async def run(ctx: JobContext) -> None:
        partial = d.partial_path(ctx.plan.job_id)

        def swap() -> None:
            os.rename(partial, d.path)
            _sync_dir(d.path)
        await asyncio.to_thread(swap)
        ctx.forget(RestoreFact.PARTIAL.of(d.target))

    async def undo(ctx: JobContext) -> None:
        pre = d.pre_restore_path(ctx.plan.job_id)
        await asyncio.to_thread(_rename_over, ctx, pre, d, f"the old {d.target}")

    return Action(run, undo)


def hold_restored(d: RestoreDisk) -> Action:
    """--undo: give the restored disk a hidden second name. Undo: drop it while it still is
    the disk."""
    async def run(ctx: JobContext) -> None:
        held = d.held_path(ctx.plan.job_id)
        ctx.record(RestoreFact.HELD.of(d.target), held)
        await asyncio.to_thread(_link, d.path, held)

    async def undo(ctx: JobContext) -> None:
        await asyncio.to_thread(_unlink_if_same, d.held_path(ctx.plan.job_id), d.path)
        ctx.forget(RestoreFact.HELD.of(d.target))

    return Action(run, undo)


def swap_back(d: RestoreDisk) -> Action:
    """--undo: rename the pre-restore disk over the path. Undo: the restored one goes back
    over it, and the old one gets its pre-restore name again."""
    async def run(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        assert plan.undo_of
        pre = d.pre_restore_path(plan.undo_of)

        def swap() -> None:
            if not os.path.exists(pre):
                raise BadInput(f"{pre} no longer exists; the restore cannot be undone")
            os.rename(pre, d.path)
            _sync_dir(d.path)
        await asyncio.to_thread(swap)

    async def undo(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        assert plan.undo_of
        pre, held = d.pre_restore_path(plan.undo_of), d.held_path(plan.job_id)

        def back() -> None:
            if not os.path.exists(held) or os.path.samefile(held, d.path):
                return
            _link(d.path, pre)
            _rename_over(ctx, held, d, f"the restored {d.target}")
        await asyncio.to_thread(back)

    return Action(run, undo)


def drop_held(d: RestoreDisk) -> Action:
    """--undo, last: remove the restored disk that was taken out (the image still has it)."""
    async def run(ctx: JobContext) -> None:
        held = d.held_path(ctx.plan.job_id)
        await asyncio.to_thread(_remove, held)
        ctx.forget(RestoreFact.HELD.of(d.target))

    return Action(run, None)
