"""``--verify`` of a direct snapshot: the new image boots as a copy-on-write clone of its
``snap`` in the cluster, nothing downloaded.

The clone ``<disk pool>/snaptui-verify-<job>`` is made beside the guest's disk (where Nova puts
its clones of Glance images) and reached as the disk is: the same monitors, cephx user and
libvirt secret. The throwaway domain writes to the clone, never to the image; the clone is
removed once the domain is gone, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable

from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact
from snaptui.core.engine.plan import DiskPlan
from snaptui.core.engine.runner import Action
from snaptui.core.engine.steps.rbd import CLONE_SNAP, RbdPlan, in_cluster
from snaptui.core.engine.steps.verify import boot_checked, clean_domain, prefix
from snaptui.core.models import NetworkSource
from snaptui.core.rbd import snapshots
from snaptui.core.verify import boot as verify_boot


def verify_clone(disk: DiskPlan, job_id: str) -> NetworkSource:
    """The clone the verify domain boots: beside the disk, as the disk's user reaches it."""
    source = RbdPlan.of(disk).source
    return dataclasses.replace(source, name=f"{source.pool}/{verify_boot.VERIFY_PREFIX}{job_id}")


async def _remove_clone(ctx: JobContext, disk: DiskPlan) -> None:
    clone = verify_clone(disk, ctx.plan.job_id)
    await in_cluster(ctx, disk, lambda c, r: snapshots.remove_image(c, clone.pool, clone.image))
    ctx.forget(DiskFact.RBD_VERIFY_CLONE.of(disk.target))


def verify_rbd_image(disk: DiskPlan) -> Action:
    """Clone ``<glance pool>/<image id>@snap``, boot the clone, remove it; mark the image
    verified. Undone by destroying the domain and removing the clone."""
    async def run(ctx: JobContext) -> None:
        plan = ctx.plan
        clone = verify_clone(disk, plan.job_id)
        ctx.record(DiskFact.RBD_VERIFY_CLONE.of(disk.target), clone.name)
        await in_cluster(ctx, disk, lambda c, r: snapshots.clone(
            c, (r.clone_pool, r.clone_name, CLONE_SNAP), clone.pool, clone.image))

        def boot(name: str, source_xml: str | None) -> Awaitable[verify_boot.VerifyResult]:
            return verify_boot.verify_network(
                ctx.host.conn, clone, prefix=prefix(disk), name=name, source_xml=source_xml,
                target=disk.target, console_regex=plan.verify_console,
                timeout=plan.verify_timeout, accel=plan.verify_accel,
                on_progress=lambda done, total: ctx.progress(done, total, "s"))
        try:
            await boot_checked(ctx, disk, boot)
        finally:  # the domain is gone: its clone goes too
            await asyncio.shield(_remove_clone(ctx, disk))

    async def undo(ctx: JobContext) -> None:
        await asyncio.to_thread(clean_domain, ctx, disk)
        await _remove_clone(ctx, disk)
    return Action(run, undo)
