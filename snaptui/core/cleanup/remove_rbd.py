"""Removing an RBD leftover: a clone in Glance's pool (its snapshots unprotected and removed,
then the image), a snapshot on a domain's disk (unprotected, removed), or a boot check's clone
beside the disks (once its domain is gone).

Checked again right before acting: the same cluster, no snaptui job of its name running now,
no clone made from it since (children go first), and for a clone still no Glance image of its
id. The space is what librbd counts: the clone's own objects, or what was written to the disk
since the snapshot.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import libvirt

from snaptui.core.cleanup.context import read_jobs
from snaptui.core.cleanup.findings import Finding
from snaptui.core.cleanup.scan_rbd import source_from
from snaptui.core.engine.rbd_access import open_cluster
from snaptui.core.errors import BadInput, NotFound, SnaptuiError
from snaptui.core.rbd import pool as rbd_pool
from snaptui.core.rbd import snapshots
from snaptui.core.rbd.cluster import RbdCluster
from snaptui.core.verify.boot import VERIFY_PREFIX

if TYPE_CHECKING:
    from snaptui.core.images.store import ImageStore
    from snaptui.core.libvirt.host import LibvirtHost


class RbdRefused(SnaptuiError):
    """Removal would be unsafe now (remove.py reports it as refused)."""


def _cluster(finding: Finding, host: LibvirtHost | None) -> RbdCluster:
    if host is None:
        raise BadInput("no libvirt connection to read the ceph secret through")
    cluster = open_cluster(host, source_from(finding.details["source"]))
    if cluster.fsid != finding.details["fsid"]:
        cluster.close()
        raise RbdRefused(f"the disk now reaches cluster {cluster.fsid}, not "
                         f"{finding.details['fsid']} scanned")
    return cluster


def _job_not_running(finding: Finding) -> None:
    job = finding.details.get("job_id")
    if job and job in read_jobs(time.time()).job_ids:
        raise RbdRefused(f"snaptui job {job} is running now")


def _no_children(image: rbd_pool.PoolImage, snap: str | None = None) -> None:
    kids = [c for s in image.snapshots if snap is None or s.name == snap for c in s.children]
    if kids:
        raise RbdRefused(f"clones were made from it ({', '.join(kids)}): they go first")


def _no_glance_image(finding: Finding, store: ImageStore | None) -> None:
    if store is None:
        raise BadInput("no image store to ask whether the image exists")
    try:
        store.show(finding.details["image"])
    except NotFound:
        return
    raise RbdRefused(f"Glance has image {finding.details['image']} now")


def _not_booted(host: LibvirtHost | None, job: str) -> None:
    """The boot check's own domain is gone (it would still be using the clone)."""
    if host is None:
        raise BadInput("no libvirt connection to ask whether the boot check still runs")
    try:
        host.conn.lookupByName(f"{VERIFY_PREFIX}{job}")
    except libvirt.libvirtError:
        return
    raise RbdRefused(f"domain {VERIFY_PREFIX}{job} still boots from it")


def _remove(finding: Finding, host: LibvirtHost | None, store: ImageStore | None) -> None:
    details = finding.details
    pool, name = details["pool"], details["image"]
    with _cluster(finding, host) as cluster:
        image = rbd_pool.read_image(cluster, pool, name, measure=False)
        if details["what"] == "clone":
            if image is None:
                return  # gone already
            _no_children(image)
            _no_glance_image(finding, store)
            _job_not_running(finding)
            snapshots.remove_image(cluster, pool, name)
            return
        if details["what"] == "verify-clone":
            if image is None:
                return  # gone already
            _no_children(image)
            _job_not_running(finding)
            _not_booted(host, details["job_id"])
            snapshots.remove_image(cluster, pool, name)
            return
        snap = details["name"]
        if image is None or snap not in {s.name for s in image.snapshots}:
            return
        _no_children(image, snap)
        _job_not_running(finding)
        snapshots.remove_snapshot(cluster, pool, name, snap)


async def remove_rbd(finding: Finding, host: LibvirtHost | None, store: ImageStore | None) -> None:
    await asyncio.to_thread(_remove, finding, host, store)


def _held(finding: Finding, host: LibvirtHost | None) -> int:
    details = finding.details
    pool, name = details["pool"], details["image"]
    with _cluster(finding, host) as cluster:
        if details["what"] in ("clone", "verify-clone"):
            image = rbd_pool.read_image(cluster, pool, name)
            return (image.used or 0) if image is not None else 0
        image = rbd_pool.read_image(cluster, pool, name, measure=False)
        if image is None or details["name"] not in {s.name for s in image.snapshots}:
            return 0
        return rbd_pool.held_by_snapshot(cluster, pool, name, details["name"]) or 0


async def measure_rbd(finding: Finding, host: LibvirtHost | None) -> int:
    """Bytes the leftover holds now (0 once it is gone)."""
    return await asyncio.to_thread(_held, finding, host)

