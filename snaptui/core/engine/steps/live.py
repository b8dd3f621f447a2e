"""Live snapshot steps (Nova's way): qcow2 delta, shallow block copy, abort without pivot.

Also the libvirt backup API in push mode. The guest is never paused by any of these.
"""

from __future__ import annotations

import asyncio
import os
from xml.sax.saxutils import quoteattr

import libvirt

from snaptui.core.disk import qemu_img
from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact, Fact
from snaptui.core.engine.neighbour import block_copy_params
from snaptui.core.engine.owned_jobs import foreign_block_job, foreign_domain_job
from snaptui.core.engine.plan import DiskPlan, Plan
from snaptui.core.engine.runner import Action, StepFn
from snaptui.core.engine.steps import quiesce
from snaptui.core.engine.steps.disk import convert_action, remove_output, unlink_quietly
from snaptui.core.errors import HypervisorError
from snaptui.core.libvirt import qemu_access

POLL_S = 0.2
COPY_FLAGS = (
    libvirt.VIR_DOMAIN_BLOCK_COPY_SHALLOW
    | libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT
    | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB
)


def _libvirt_error(what: str, err: libvirt.libvirtError) -> HypervisorError:
    return HypervisorError(f"{what}: {err.get_error_message()}")


def create_delta(disk: DiskPlan) -> Action:
    """A qcow2 with the source's backing file and virtual size (the block copy's destination);
    undone by removing it."""
    async def run(ctx: JobContext) -> None:
        assert disk.delta_path
        ctx.record(DiskFact.DELTA.of(disk.target), disk.delta_path)
        await qemu_img.create(
            disk.delta_path, ctx.plan.copy_format(disk), disk.virtual_size,
            backing_file=disk.backing_file,
            backing_format=disk.backing_format,
        )
    return Action(run, _remove_delta(disk))


def remove_delta(disk: DiskPlan) -> Action:
    """Delete the delta once converted."""
    return Action(_remove_delta(disk))


def _remove_delta(disk: DiskPlan) -> StepFn:
    async def run(ctx: JobContext) -> None:
        await asyncio.to_thread(_abort_job_if_any, ctx, disk)
        unlink_quietly(disk.delta_path)
        ctx.forget(DiskFact.DELTA.of(disk.target))
    return run


def _abort_job_if_any(ctx: JobContext, disk: DiskPlan) -> None:
    """Abort the block job on the disk when it copies to this plan's delta; a block job of
    someone else's (a migration, a blockcommit) is left running, and noted."""
    dom = ctx.domain()
    target = disk.target
    try:
        if not dom.isActive():
            return
        foreign = foreign_block_job(dom, target, disk.delta_path)
        if foreign is not None:
            ctx.note(foreign)
            return
        if dom.blockJobInfo(target, 0):
            dom.blockJobAbort(target, 0)
    except libvirt.libvirtError as err:
        if "does not have an active block job" not in (err.get_error_message() or ""):
            raise _libvirt_error(f"abort of the block job on {target}", err) from err
    _wait_no_block_job(ctx, target)


def _wait_no_block_job(ctx: JobContext, target: str, timeout: float = 30.0) -> None:
    import time

    dom = ctx.domain()
    deadline = time.monotonic() + timeout
    while dom.isActive() and dom.blockJobInfo(target, 0):
        if time.monotonic() > deadline:
            raise HypervisorError(f"block job on {target} still present after abort")
        time.sleep(0.05)


def block_copy(disk: DiskPlan) -> Action:
    """virDomainBlockCopy(SHALLOW|REUSE_EXT|TRANSIENT_JOB) into the delta, then wait until ready."""
    async def run(ctx: JobContext) -> None:
        dom = ctx.domain()
        xml = (f"<disk type='file'><driver type={quoteattr(ctx.plan.copy_format(disk))}/>"
               f"<source file={quoteattr(str(disk.delta_path))}/></disk>")
        ctx.record(DiskFact.BLOCK_JOB.of(disk.target), True)
        try:
            await asyncio.to_thread(dom.blockCopy, disk.target, xml,
                                    block_copy_params(ctx.plan), COPY_FLAGS)
        except libvirt.libvirtError as err:
            raise _libvirt_error(f"block copy of {disk.target}", err) from err
        while True:
            try:
                info = await asyncio.to_thread(dom.blockJobInfo, disk.target, 0)
            except libvirt.libvirtError as err:
                raise _libvirt_error(f"block job on {disk.target}", err) from err
            if not info:
                raise HypervisorError(f"block job on {disk.target} vanished before it was ready")
            cur, end = info.get("cur", 0), info.get("end", 0)
            ctx.progress(cur, end or None, "bytes")
            if end and cur == end:
                return
            await asyncio.sleep(POLL_S)

    async def undo(ctx: JobContext) -> None:
        await asyncio.to_thread(_abort_job_if_any, ctx, disk)
        ctx.forget(DiskFact.BLOCK_JOB.of(disk.target))
    return Action(run, undo)


def abort_copy(disk: DiskPlan) -> Action:
    """blockJobAbort without pivot: the guest keeps its disk, the delta holds the copy."""
    async def run(ctx: JobContext) -> None:
        await asyncio.to_thread(_abort_job_if_any, ctx, disk)
        ctx.forget(DiskFact.BLOCK_JOB.of(disk.target))
    return Action(run)


def freeze() -> Action:
    """Freeze the guest's filesystems (``--quiesce``); undone by thawing them."""
    return quiesce.freeze()


def thaw() -> Action:
    return quiesce.thaw()


def convert_delta(plan: Plan, disk: DiskPlan) -> Action:
    assert disk.delta_path
    return convert_action(plan, disk, disk.delta_path, source_format="qcow2")


# -- backup API (push mode) -------------------------------------------------------------------

def _backup_xml(plan: Plan, disks: list[DiskPlan], all_targets: list[str]) -> str:
    chosen = {d.target: d for d in disks}
    parts = []
    for target in all_targets:
        disk = chosen.get(target)
        if disk is None:
            parts.append(f"<disk name={quoteattr(target)} backup='no'/>")
        else:
            parts.append(
                f"<disk name={quoteattr(target)} backup='yes' type='file'>"
                f"<target file={quoteattr(str(disk.backup_path))}/>"
                f"<driver type={quoteattr(plan.copy_format(disk))}/></disk>"
            )
    return f"<domainbackup mode='push'><disks>{''.join(parts)}</disks></domainbackup>"


def _abort_backup_if_any(ctx: JobContext, disks: list[DiskPlan]) -> None:
    """Abort the guest's backup job when it writes this plan's backup files; any other
    domain job (the operator's backup, a migration) is left running, and noted."""
    dom = ctx.domain()
    if not dom.isActive():
        return
    foreign = foreign_domain_job(dom, [str(d.backup_path) for d in disks if d.backup_path])
    if foreign is not None:
        ctx.note(foreign)
        return
    if dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
        try:
            dom.abortJob()
        except libvirt.libvirtError as err:
            raise _libvirt_error("abort of the backup job", err) from err
    _wait_no_domain_job(dom)


def _wait_no_domain_job(dom, timeout: float = 30.0) -> None:
    """abortJob returns before QEMU has cancelled the backup; wait until the job is gone."""
    import time

    deadline = time.monotonic() + timeout
    while dom.isActive() and dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
        if time.monotonic() > deadline:
            raise HypervisorError("backup job still present after abort")
        time.sleep(0.05)


def backup_disks(disks: list[DiskPlan], all_targets: list[str]) -> Action:
    """virDomainBackupBegin (push) into pre-created 0600 qcow2 files, then wait for completion."""
    async def run(ctx: JobContext) -> None:
        for disk in disks:
            assert disk.backup_path
            ctx.record(DiskFact.BACKUP_FILE.of(disk.target), disk.backup_path)
            await qemu_img.create(disk.backup_path, ctx.plan.copy_format(disk),
                                  disk.virtual_size)
        dom = ctx.domain()
        await quiesce.freeze_guest(ctx)  # frozen only around backup-begin, as virtnbdbackup
        ctx.record(Fact.BACKUP_JOB, True)
        try:
            await asyncio.to_thread(dom.backupBegin,
                                    _backup_xml(ctx.plan, disks, all_targets), None,
                                    libvirt.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL)
        except libvirt.libvirtError as err:
            raise _libvirt_error("backup begin", err) from err
        finally:
            await asyncio.shield(quiesce.thaw_guest(ctx))
        while True:
            stats = await asyncio.to_thread(dom.jobStats, 0)
            if stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
                break
            ctx.progress(stats.get("disk_processed", 0), stats.get("disk_total") or None, "bytes")
            await asyncio.sleep(POLL_S)
        done = await asyncio.to_thread(dom.jobStats, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        ctx.forget(Fact.BACKUP_JOB)
        if not done.get("success", done.get("type") == libvirt.VIR_DOMAIN_JOB_COMPLETED):
            raise HypervisorError(f"backup job failed: {done.get('errmsg', 'no reason given')}")
        total = done.get("disk_total", 0)
        ctx.progress(total, total or None, "bytes")

    async def undo(ctx: JobContext) -> None:
        await quiesce.thaw_guest(ctx)  # killed while frozen: recover thaws here
        await asyncio.to_thread(_abort_backup_if_any, ctx, disks)
        ctx.forget(Fact.BACKUP_JOB)
        for disk in disks:
            unlink_quietly(disk.backup_path)
            ctx.forget(DiskFact.BACKUP_FILE.of(disk.target))
    return Action(run, undo)


def convert_backup(plan: Plan, disk: DiskPlan) -> Action:
    assert disk.backup_path
    return convert_action(plan, disk, disk.backup_path, source_format="qcow2")


def remove_backup_file(disk: DiskPlan) -> Action:
    async def run(ctx: JobContext) -> None:
        unlink_quietly(disk.backup_path)
        ctx.forget(DiskFact.BACKUP_FILE.of(disk.target))
    return Action(run)


def adopt_copy(disk: DiskPlan, copy_path: str | None, fact: DiskFact) -> Action:
    """The delta or backup file already is the image (standalone, in the output format): move
    it to the scratch output instead of converting it, which halves the scratch space."""
    async def run(ctx: JobContext) -> None:
        assert copy_path
        ctx.record(DiskFact.OUTPUT.of(disk.target), disk.output_path)
        os.replace(copy_path, disk.output_path)
        # QEMU is done with it; libvirt gave its owner back (remember_owner), or this does.
        if qemu_access.reclaim(disk.output_path):
            ctx.note(f"{disk.target}: took {disk.output_path} back from QEMU's user")
        os.chmod(disk.output_path, 0o600)
        ctx.forget(fact.of(disk.target))
    return Action(run, remove_output(disk))
