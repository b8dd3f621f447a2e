"""Steps that read or change disk files with qemu-img: convert, internal snapshots, cleanup."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from snaptui.core import qemu_img
from snaptui.core.engine.context import JobContext
from snaptui.core.engine.plan import DiskPlan


def unlink_quietly(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)


async def convert_to_output(ctx: JobContext, disk: DiskPlan, source: str, *,
                            source_format: str | None, snapshot_name: str | None = None,
                            force_share: bool = False) -> None:
    """`qemu-img convert -p` of ``source`` to the disk's scratch output, with progress."""
    ctx.record(f"output:{disk.target}", disk.output_path)
    await qemu_img.convert(
        source, disk.output_path,
        out_format=ctx.plan.out_format,
        src_format=source_format,
        snapshot_name=snapshot_name,
        compress=ctx.plan.compress,
        compression_type=ctx.plan.compression_type if ctx.plan.compress else None,
        force_share=force_share,
        # Out-of-order writes: ~25 % faster for compressed output (benchmarks/results/
        # convert_options.md), no gain for raw or plain qcow2.
        out_of_order=ctx.plan.compress,
        on_progress=lambda pct: ctx.progress(round(pct, 2), 100.0, "%"),
        cancel=ctx.cancel_event,
    )
    os.chmod(disk.output_path, 0o600)


def convert_disk(disk: DiskPlan):
    async def run(ctx: JobContext) -> None:
        # Only a running guest's disk needs -U; cold/internal run while it is saved.
        active = ctx.plan.guest_active and ctx.plan.mode not in ("cold", "internal")
        await convert_to_output(ctx, disk, disk.source_path, source_format=disk.source_format,
                                force_share=active)
    return run


def remove_output(disk: DiskPlan):
    async def undo(ctx: JobContext) -> None:
        unlink_quietly(disk.output_path)
    return undo


def create_internal_snapshot(disk: DiskPlan):
    async def run(ctx: JobContext) -> None:
        name = ctx.plan.snapshot_name
        assert name
        ctx.record(f"internal_snapshot:{disk.target}", name)
        await qemu_img.snapshot_create(disk.source_path, name)
    return run


def delete_internal_snapshot(disk: DiskPlan):
    """Delete our internal snapshot if it is there (run, and undo of its creation).

    Only while the journal says it may exist: once deleted, the guest is restarted and owns the
    disk, and a later undo must not touch (or even lock) it.
    """
    async def run(ctx: JobContext) -> None:
        name = ctx.plan.snapshot_name
        if not ctx.facts.get(f"internal_snapshot:{disk.target}"):
            return
        assert name is not None  # recorded only by create_internal_snapshot, which named it
        existing = await qemu_img.snapshot_list(disk.source_path, force_share=True)
        if any(s.name == name for s in existing):
            await qemu_img.snapshot_delete(disk.source_path, name)
        ctx.forget(f"internal_snapshot:{disk.target}")
    return run


def convert_internal_snapshot(disk: DiskPlan):
    async def run(ctx: JobContext) -> None:
        await convert_to_output(ctx, disk, disk.source_path, source_format="qcow2",
                                snapshot_name=ctx.plan.snapshot_name)
    return run


def finish_output(disk: DiskPlan, keep_path: str | None):
    """Move the extracted image to --keep-local, or delete it once it is uploaded."""
    async def run(ctx: JobContext) -> None:
        out = Path(disk.output_path)
        ctx.record(f"output_actual:{disk.target}", out.stat().st_blocks * 512)
        ctx.record(f"output_apparent:{disk.target}", out.stat().st_size)
        if keep_path:
            try:
                shutil.move(str(out), keep_path)
            except BaseException:  # a copy across filesystems (ENOSPC...) leaves a partial file
                Path(keep_path).unlink(missing_ok=True)  # preflight made sure it was not there
                raise
            ctx.record(f"kept:{disk.target}", keep_path)
        else:
            out.unlink(missing_ok=True)
        ctx.forget(f"output:{disk.target}")
    return run
