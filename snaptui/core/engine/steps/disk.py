"""Steps that read or change disk files with qemu-img: convert, internal snapshots, cleanup."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import tempfile
from pathlib import Path

from snaptui.core.disk import qemu_img
from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact
from snaptui.core.engine.neighbour import rate_limited_argv
from snaptui.core.engine.plan import DiskPlan, Mode, Plan
from snaptui.core.engine.runner import Action, StepFn
from snaptui.core.errors import BadInput


def unlink_quietly(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)


def place_new(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest`` without following or replacing anything at ``dest`` (a file
    or a link planted there since preflight): a hard link when on one filesystem, else a copy
    under a private temporary name beside ``dest``, then linked into place."""
    try:
        os.link(src, dest)
    except FileExistsError:
        raise BadInput(f"--keep-local: {dest} appeared during the job; not overwritten") from None
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as data:
                shutil.copyfileobj(data, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, dest)
        except FileExistsError:
            raise BadInput(f"--keep-local: {dest} appeared during the job; not overwritten") \
                from None
        finally:
            os.unlink(tmp)
    src.unlink()


def convert_action(plan: Plan, disk: DiskPlan, source: str, *, source_format: str | None,
                   snapshot_name: str | None = None, force_share: bool = False) -> Action:
    """`qemu-img convert -p` of ``source`` to the disk's scratch output, with progress; undone
    by removing the output. The argv is built once: the step runs it, --dry-run shows it."""
    argv = qemu_img.convert_argv(
        source, disk.output_path,
        out_format=plan.out_format,
        src_format=source_format,
        snapshot_name=snapshot_name,
        compress=plan.compress,
        compression_type=plan.compression_type if plan.compress else None,
        force_share=force_share,
        # Out-of-order writes: ~25 % faster for compressed output (benchmarks/results/
        # convert_options.md), no gain for raw or plain qcow2.
        out_of_order=plan.compress,
    )
    argv = rate_limited_argv(argv, plan.bwlimit)  # --bwlimit: qemu-img's own -r

    async def run(ctx: JobContext) -> None:
        ctx.record(DiskFact.OUTPUT.of(disk.target), disk.output_path)
        await qemu_img.run_convert(
            argv, on_progress=lambda pct: ctx.progress(round(pct, 2), 100.0, "%"),
            cancel=ctx.cancel_event, exclusive=True)
        os.chmod(disk.output_path, 0o600)
    return Action(run, remove_output(disk), argv=tuple(argv))


def convert_disk(plan: Plan, disk: DiskPlan) -> Action:
    """Convert the disk itself (cold: the guest is saved or off, so no -U is needed)."""
    active = plan.guest_active and plan.mode not in (Mode.COLD, Mode.INTERNAL)
    return convert_action(plan, disk, disk.source_path, source_format=disk.source_format,
                          force_share=active)


def remove_output(disk: DiskPlan) -> StepFn:
    """Undo of whatever made the scratch output: remove it."""
    async def undo(ctx: JobContext) -> None:
        unlink_quietly(disk.output_path)
    return undo


def create_internal_snapshot(disk: DiskPlan) -> Action:
    """`qemu-img snapshot -c` on the (saved or shut off) guest's disk; undone by deleting it."""
    async def run(ctx: JobContext) -> None:
        name = ctx.plan.snapshot_name
        assert name
        ctx.record(DiskFact.INTERNAL_SNAPSHOT.of(disk.target), name)
        await qemu_img.snapshot_create(disk.source_path, name)
    return Action(run, _delete_internal_snapshot(disk))


def delete_internal_snapshot(disk: DiskPlan) -> Action:
    """Delete our internal snapshot once the image is extracted from it (no undo)."""
    return Action(_delete_internal_snapshot(disk))


def _delete_internal_snapshot(disk: DiskPlan) -> StepFn:
    """Delete our internal snapshot if it is there (run, and undo of its creation).

    Only while the journal says it may exist: once deleted, the guest is restarted and owns the
    disk, and a later undo must not touch (or even lock) it.
    """
    async def run(ctx: JobContext) -> None:
        name = ctx.plan.snapshot_name
        if not ctx.facts.get(DiskFact.INTERNAL_SNAPSHOT.of(disk.target)):
            return
        assert name is not None  # recorded only by create_internal_snapshot, which named it
        existing = await qemu_img.snapshot_list(disk.source_path, force_share=True)
        if any(s.name == name for s in existing):
            await qemu_img.snapshot_delete(disk.source_path, name)
        ctx.forget(DiskFact.INTERNAL_SNAPSHOT.of(disk.target))
    return run


def convert_internal_snapshot(plan: Plan, disk: DiskPlan) -> Action:
    return convert_action(plan, disk, disk.source_path, source_format="qcow2",
                          snapshot_name=plan.snapshot_name)


def finish_output(disk: DiskPlan, keep_path: str | None) -> Action:
    """Move the extracted image to --keep-local, or delete it once it is uploaded."""
    async def run(ctx: JobContext) -> None:
        out = Path(disk.output_path)
        ctx.record(DiskFact.OUTPUT_ACTUAL.of(disk.target), out.stat().st_blocks * 512)
        ctx.record(DiskFact.OUTPUT_APPARENT.of(disk.target), out.stat().st_size)
        if keep_path:
            await asyncio.to_thread(place_new, out, Path(keep_path))
            ctx.record(DiskFact.KEPT.of(disk.target), keep_path)
        else:
            out.unlink(missing_ok=True)
        ctx.forget(DiskFact.OUTPUT.of(disk.target))
    return Action(run)
