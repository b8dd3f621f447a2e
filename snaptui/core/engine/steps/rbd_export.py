"""Cold snapshots of RBD disks: the image is read from the disk's RBD snapshot ``snaptui-<job>``
while the guest runs again (the snapshot itself was taken while it was saved).

QEMU's ``rbd`` driver reads the snapshot (``qemu-img convert`` of a ``json:`` filename, as the
disk's cephx user); the key reaches qemu-img through a pipe as a ``secret`` object, never in its
argv, the environment or a file. The output is the job's scratch file, published as any cold
output is.
"""

from __future__ import annotations

import asyncio
import os

from snaptui.core.disk import qemu_img
from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact
from snaptui.core.engine.neighbour import rate_limited_argv
from snaptui.core.engine.plan import DiskPlan, Plan
from snaptui.core.engine.runner import Action
from snaptui.core.engine.steps.disk import remove_output
from snaptui.core.engine.steps.rbd import RbdPlan, in_cluster
from snaptui.core.rbd import qemu_info
from snaptui.core.rbd.cluster import RbdCluster


def export_argv(plan: Plan, disk: DiskPlan, key_fd: int | None) -> list[str]:
    """``qemu-img convert`` of the disk's snapshot to its scratch output (the key, when the
    disk's ``<auth>`` names one, read from ``key_fd``)."""
    rbd = RbdPlan.of(disk)
    argv = qemu_img.convert_argv(
        qemu_info.json_filename(rbd.source, key_fd, rbd.snapshot), disk.output_path,
        out_format=plan.out_format, src_format="raw", compress=plan.compress,
        compression_type=plan.compression_type if plan.compress else None,
        out_of_order=plan.compress)
    argv[2:2] = qemu_info.secret_object(key_fd)  # after "convert": an option of the command
    return rate_limited_argv(argv, plan.bwlimit)


def equivalent(plan: Plan, disk: DiskPlan) -> tuple[str, ...]:
    """The by-hand form (--dry-run): the ``rbd:`` URL, its key from the host's keyring."""
    rbd = RbdPlan.of(disk)
    return ("qemu-img", "convert", "-p", "-f", "raw", "-O", plan.out_format,
            *(("-c",) if plan.compress else ()),
            qemu_info.display_url(rbd.source, rbd.snapshot), disk.output_path)


def _snapshot_there(cluster: RbdCluster, rbd: RbdPlan) -> None:
    """Open the snapshot (an ImageMissing when it is gone: said before qemu-img is run)."""
    with cluster.image(rbd.source.pool, rbd.source.image, snapshot=rbd.snapshot):
        pass


def export_snapshot(plan: Plan, disk: DiskPlan) -> Action:
    """Read ``pool/image@snaptui-<job>`` into the scratch output; undone by removing it."""
    async def run(ctx: JobContext) -> None:
        rbd = RbdPlan.of(disk)
        await in_cluster(ctx, disk, lambda c, r: _snapshot_there(c, r))
        key = await asyncio.to_thread(ctx.host.ceph_key, rbd.source)
        ctx.record(DiskFact.OUTPUT.of(disk.target), disk.output_path)
        key_fd = qemu_info.key_pipe(key)
        try:
            await qemu_img.run_convert(
                export_argv(ctx.plan, disk, key_fd),
                on_progress=lambda pct: ctx.progress(round(pct, 2), 100.0, "%"),
                cancel=ctx.cancel_event, exclusive=True,
                pass_fds=(key_fd,) if key_fd is not None else ())
        finally:
            if key_fd is not None:
                os.close(key_fd)
        os.chmod(disk.output_path, 0o600)
    return Action(run, remove_output(disk))
