"""Preflight of RBD disks: what librbd says of them (sizes for the plan), and whether a direct
snapshot can run (Glance has an rbd store on the disks' own cluster, and the request needs
nothing only a local file gives)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.rbd_access import open_cluster, rbd_source
from snaptui.core.errors import CephError, CloudError, HypervisorError
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DiskInfo, ImageFileInfo
from snaptui.core.rbd import cluster as rbd_cluster
from snaptui.core.rbd import images


def rbd_file_info(host: LibvirtHost, disk: DiskInfo) -> ImageFileInfo:
    """The plan's sizes of an RBD disk: provisioned as virtual, used objects as allocated."""
    source = rbd_source(disk)
    with open_cluster(host, source) as cluster:
        info = images.inspect(cluster, source.pool, source.image)
    return ImageFileInfo(path=disk.path or source.name, format="raw", virtual_size=info.size,
                         actual_size=info.used if info.used is not None else info.size,
                         apparent_size=info.size)


def _request_blocks(request: SnapshotRequest, destination: str) -> str | None:
    if destination != "glance":
        return "the local library has no rbd store (direct needs Glance's)"
    if request.compress:
        return "--compress needs the copy path"
    if request.keep_local:
        return "--keep-local needs a local image file"
    return None


def direct_target(request: SnapshotRequest, destination: str, store: ImageStore,
                  host: LibvirtHost, disks: list[DiskInfo]) -> tuple[str | None, dict[str, Any]]:
    """(why a direct snapshot cannot run or None, the Glance rbd store it would go to:
    ``{"id", "pool", "fsid"}``). Asks Glance and each disk's cluster (blocking)."""
    if not disks or any(d.rbd is None for d in disks):
        return "not every chosen disk is an RBD image", {}
    if why := _request_blocks(request, destination):
        return why, {}
    if not rbd_cluster.available():
        return "the Ceph bindings (python3-rados, python3-rbd) are missing", {}
    rbd_stores = getattr(store, "rbd_stores", None)
    if not callable(rbd_stores):
        return "the image store has no rbd store", {}
    try:
        stores = rbd_stores()
    except CloudError as err:
        return f"Glance's store details are not readable ({err})", {}
    if not stores:
        return "Glance has no rbd store", {}
    fsids = set()
    for disk in disks:
        try:
            with open_cluster(host, rbd_source(disk)) as cluster:
                fsids.add(cluster.fsid)
        except (CephError, HypervisorError) as err:
            return str(err), {}
    if len(fsids) != 1:
        return "the chosen disks are on different Ceph clusters", {}
    fsid = fsids.pop()
    match = next((s for s in stores if s.get("fsid") == fsid and s.get("pool")), None)
    if match is None:
        have = ", ".join(f"{s['id']} (cluster {s.get('fsid')})" for s in stores)
        return (f"Glance's rbd stores are on other clusters than the disk's ({fsid}): "
                f"{have}"), {}
    return None, match


def rbd_plan(disk: DiskInfo, job_id: str, target: dict[str, Any]) -> dict[str, Any]:
    """The direct snapshot's names for one disk: the source's snapshot ``snaptui-<job>``, and
    the clone in Glance's pool named by the new image's id (as Nova names it)."""
    source = rbd_source(disk)
    return {"source": dataclasses.asdict(source), "fsid": target["fsid"],
            "snapshot": f"snaptui-{job_id}", "clone_pool": target["pool"],
            "clone_name": str(uuid.uuid4()), "store": target["id"]}


def cold_plan(disk: DiskInfo, job_id: str) -> dict[str, Any]:
    """A cold export's names for one disk: the snapshot ``snaptui-<job>`` it is read from."""
    return {"source": dataclasses.asdict(rbd_source(disk)), "snapshot": f"snaptui-{job_id}"}


def wants_direct(request: SnapshotRequest, disks: list[DiskInfo]) -> bool:
    """Whether preflight must ask Glance and the cluster about a direct snapshot."""
    return request.mode in (Mode.AUTO, Mode.DIRECT) and any(d.rbd for d in disks)
