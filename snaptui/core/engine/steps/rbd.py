"""Steps of a direct snapshot of RBD disks, as Nova's ``Rbd.direct_snapshot`` takes them.

Snapshot the disk (``snaptui-<job>``, between a freeze and a thaw when quiesced), protect it,
clone it into Glance's pool under the new image's id, flatten the clone (librbd copies the
objects inside the cluster), snapshot and protect the clone as ``snap``, create the Glance image
with the location ``rbd://<fsid>/<pool>/<id>/snap``, and remove the disk's snapshot. Nothing
is read by snaptui, uploaded through Glance's API or written to scratch.

Every undo is idempotent: what is gone already is not an error (``recover`` may run it again).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from snaptui.core.engine.context import CLUSTER_WRAPPERS, JobContext
from snaptui.core.engine.facts import DiskFact
from snaptui.core.engine.plan import DiskPlan, PlanDataError
from snaptui.core.engine.rbd_access import open_cluster
from snaptui.core.engine.runner import Action
from snaptui.core.engine.steps.upload import image_properties, image_settings
from snaptui.core.errors import CephError, NotFound
from snaptui.core.models import NetworkSource
from snaptui.core.rbd import snapshots
from snaptui.core.rbd.cluster import RbdCluster

T = TypeVar("T")
CLONE_SNAP = "snap"  # Glance's rbd store and Nova name the image's snapshot so


@dataclasses.dataclass(frozen=True)
class RbdPlan:
    """A disk's direct snapshot, as preflight named it (``DiskPlan.rbd``)."""

    source: NetworkSource
    snapshot: str  # snaptui-<job>, on the guest's disk
    # direct only (a cold export reads the snapshot and clones nothing):
    fsid: str = ""
    clone_pool: str = ""  # Glance's rbd store's pool
    clone_name: str = ""  # the Glance image's id
    store: str = ""  # Glance's store id

    @classmethod
    def of(cls, disk: DiskPlan) -> RbdPlan:
        data = disk.rbd
        if not isinstance(data, dict) or not isinstance(data.get("source"), dict):
            raise PlanDataError(f"the plan of disk {disk.target} has no RBD details")
        src = dict(data["source"])
        src["hosts"] = tuple((h, p) for h, p in src.get("hosts") or ())
        fields = {f.name for f in dataclasses.fields(NetworkSource)}
        if not data.get("snapshot"):
            raise PlanDataError(f"the plan of disk {disk.target} names no RBD snapshot")
        return cls(NetworkSource(**{k: v for k, v in src.items() if k in fields}),
                   data["snapshot"], data.get("fsid", ""), data.get("clone_pool", ""),
                   data.get("clone_name", ""), data.get("store", ""))

    @property
    def disk_spec(self) -> tuple[str, str]:
        return self.source.pool, self.source.image

    @property
    def location(self) -> str:
        return f"rbd://{self.fsid}/{self.clone_pool}/{self.clone_name}/{CLONE_SNAP}"


async def in_cluster(ctx: JobContext, disk: DiskPlan,
                      work: Callable[[RbdCluster, RbdPlan], T]) -> T:
    """Run ``work`` on the disk's cluster (a connection per step: librados calls block)."""
    rbd = RbdPlan.of(disk)

    def call() -> T:
        with open_cluster(ctx.host, rbd.source) as cluster:
            seen: Any = cluster
            for wrap in CLUSTER_WRAPPERS:  # a test's fault injection (tests/fault_seam/)
                seen = wrap(seen, lambda: ctx.current_step)
            return work(seen, rbd)
    return await asyncio.to_thread(call)


def snapshot_disk(disk: DiskPlan) -> Action:
    """``rbd snap create vms/<disk>@snaptui-<job>``; undone by removing it (unprotected)."""
    async def run(ctx: JobContext) -> None:
        rbd = RbdPlan.of(disk)
        pool, image = rbd.disk_spec
        ctx.record(DiskFact.RBD_SNAPSHOT.of(disk.target), f"{pool}/{image}@{rbd.snapshot}")
        await in_cluster(ctx, disk, lambda c, r: snapshots.create_snapshot(
            c, pool, image, r.snapshot))

    async def undo(ctx: JobContext) -> None:
        await in_cluster(ctx, disk, lambda c, r: snapshots.remove_snapshot(
            c, *r.disk_spec, r.snapshot))
        ctx.forget(DiskFact.RBD_SNAPSHOT.of(disk.target))
    return Action(run, undo)


def protect_snapshot(disk: DiskPlan) -> Action:
    """``rbd snap protect``: a clone needs a protected parent (the snapshot's undo unprotects)."""
    async def run(ctx: JobContext) -> None:
        await in_cluster(ctx, disk, lambda c, r: snapshots.protect_snapshot(
            c, *r.disk_spec, r.snapshot))
    return Action(run)


def clone_into_glance_pool(disk: DiskPlan) -> Action:
    """``rbd clone vms/<disk>@snaptui-<job> images/<image id>``; undone by removing the clone."""
    async def run(ctx: JobContext) -> None:
        rbd = RbdPlan.of(disk)
        ctx.record(DiskFact.RBD_CLONE.of(disk.target), f"{rbd.clone_pool}/{rbd.clone_name}")
        await in_cluster(ctx, disk, lambda c, r: snapshots.clone(
            c, (*r.disk_spec, r.snapshot), r.clone_pool, r.clone_name))

    async def undo(ctx: JobContext) -> None:
        await in_cluster(ctx, disk, lambda c, r: snapshots.remove_image(
            c, r.clone_pool, r.clone_name))
        ctx.forget(DiskFact.RBD_CLONE.of(disk.target))
    return Action(run, undo)


def flatten_clone(disk: DiskPlan) -> Action:
    """``rbd flatten``: librbd copies the parent's objects into the clone, inside the cluster
    (progress in objects). A cancel stops it through librbd's progress callback (the step is
    not interrupted from outside: the clone's undo must not race the flatten). Undone with
    the clone."""
    async def run(ctx: JobContext) -> None:
        def progress(done: int, total: int) -> None:
            ctx.progress(done, total, "objects")

        try:
            await in_cluster(ctx, disk, lambda c, r: snapshots.flatten(
                c, r.clone_pool, r.clone_name, progress, ctx.cancel_flag.is_set))
        except CephError:
            ctx.check_cancel()  # stopped by the cancel: say so, not librbd's ECANCELED
            raise
    return Action(run)


def snapshot_clone(disk: DiskPlan) -> Action:
    """``rbd snap create images/<id>@snap`` and protect it, as Glance's rbd store does for
    an upload (Nova's clones of the image are made from it). Undone with the clone."""
    async def run(ctx: JobContext) -> None:
        await in_cluster(ctx, disk, lambda c, r: snapshots.create_snapshot(
            c, r.clone_pool, r.clone_name, CLONE_SNAP, protect=True))
    return Action(run)


def create_located_image(disk: DiskPlan) -> Action:
    """Create the Glance image (id = the clone's name) and give it the clone's location; it
    turns active without any data sent. Undone by deleting the image (Glance then removes
    the clone from its store too; the clone's own undo finds it gone)."""
    async def run(ctx: JobContext) -> None:
        rbd = RbdPlan.of(disk)
        store: Any = ctx.store
        settings = image_settings(ctx, disk)
        ctx.record(DiskFact.IMAGE.of(disk.target), rbd.clone_name)
        await asyncio.to_thread(
            store.create, disk.image_name, "raw", "bare", image_properties(ctx, disk),
            dataclasses.replace(settings, protected=False), image_id=rbd.clone_name)
        ctx.record(DiskFact.LOCATION.of(disk.target), rbd.location)
        api = await asyncio.to_thread(store.add_location, rbd.clone_name, rbd.location,
                                      rbd.store)
        ctx.note(f"{disk.target}: Glance image {rbd.clone_name} at {rbd.location} ({api} API)")
        shown = await asyncio.to_thread(store.show, rbd.clone_name)
        ctx.record(DiskFact.UPLOADED_SIZE.of(disk.target), shown.size)
        if settings.protected:
            await asyncio.to_thread(store.set_protected, rbd.clone_name, True)

    async def undo(ctx: JobContext) -> None:
        image_id = ctx.facts.get(DiskFact.IMAGE.of(disk.target)) or RbdPlan.of(disk).clone_name
        try:
            if image_settings(ctx, disk).protected:
                await asyncio.to_thread(ctx.store.set_protected, image_id, False)
            await asyncio.to_thread(ctx.store.delete, image_id)
        except NotFound:
            pass
        ctx.forget(DiskFact.IMAGE.of(disk.target))
    return Action(run, undo)


def remove_disk_snapshot(disk: DiskPlan) -> Action:
    """``rbd snap unprotect`` and ``rbd snap rm`` of ``snaptui-<job>``: the flattened clone no
    longer needs it."""
    async def run(ctx: JobContext) -> None:
        await in_cluster(ctx, disk, lambda c, r: snapshots.remove_snapshot(
            c, *r.disk_spec, r.snapshot))
        ctx.forget(DiskFact.RBD_SNAPSHOT.of(disk.target))
    return Action(run)
