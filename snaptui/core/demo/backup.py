"""The demo's push-mode backup: what libvirt's backup job does, done by qemu-img on the sample.

libvirt's ``test:///`` driver has no backup API, so on the demo lab a running Nova instance
could only be refused (cold and internal would let Nova stop it) and nothing showed what
snaptui does for one. The demo's host says it can back up (``DemoHost.supports_backup``), so
preflight and the dialog pick backup for the Nova instance exactly as on a real compute node;
``simulate_backup`` then replaces the one step that calls ``virDomainBackupBegin`` with a
``qemu-img convert -U`` of the disk into the same backup file (a full backup is a standalone
image of the disk's whole chain, as this copy is). Every other step, and every undo, is the
engine's own; the demo's pacing (demo_pace.py) gives the step a real backup's time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from snaptui.core.disk import qemu_img
from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact
from snaptui.core.engine.runner import Action, Step
from snaptui.core.engine.steps import quiesce
from snaptui.core.engine.steps.disk import unlink_quietly
from snaptui.core.libvirt.host import LibvirtHost

BACKUP_STEP = "backup"


class DemoHost(LibvirtHost):
    """The demo lab's connection: the test driver, with push-mode backup simulated."""

    @property
    def supports_backup(self) -> bool:
        return True


def _simulated_backup() -> Action:
    async def run(ctx: JobContext) -> None:
        plan = ctx.plan
        # As the real step: frozen only around the backup's start. The test driver's guests
        # write nothing, so the copy after it is the point-in-time image a backup gives.
        await quiesce.freeze_guest(ctx)
        await quiesce.thaw_guest(ctx)
        for disk in plan.disks:
            assert disk.backup_path
            ctx.record(DiskFact.BACKUP_FILE.of(disk.target), disk.backup_path)
            argv = qemu_img.convert_argv(disk.source_path, disk.backup_path,
                                         out_format=plan.copy_format(disk),
                                         src_format=disk.source_format, force_share=True)
            await qemu_img.run_convert(
                argv, on_progress=lambda pct: ctx.progress(round(pct, 2), 100.0, "%"),
                cancel=ctx.cancel_event, exclusive=True)
            os.chmod(disk.backup_path, 0o600)

    async def undo(ctx: JobContext) -> None:
        await quiesce.thaw_guest(ctx)
        for disk in ctx.plan.disks:
            unlink_quietly(disk.backup_path)
            ctx.forget(DiskFact.BACKUP_FILE.of(disk.target))
    return Action(run, undo)


def simulate_backup(steps: Sequence[Step]) -> list[Step]:
    """``steps`` with the backup step done by qemu-img (the test driver cannot)."""
    return [replace(s, action=_simulated_backup()) if s.name == BACKUP_STEP else s
            for s in steps]
