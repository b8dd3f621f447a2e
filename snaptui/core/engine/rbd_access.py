"""Reaching an RBD disk's cluster the way QEMU does: the disk's monitors and cephx user, the key
from the libvirt secret its ``<auth>`` names. Shared by the CLI, the dashboard and the steps."""

from __future__ import annotations

from snaptui.core.errors import BadInput
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DiskInfo, NetworkSource
from snaptui.core.rbd import images
from snaptui.core.rbd.cluster import RbdCluster


def rbd_source(disk: DiskInfo) -> NetworkSource:
    if disk.rbd is None:
        raise BadInput(f"disk {disk.target} is not an RBD image")
    return disk.rbd


def open_cluster(host: LibvirtHost, source: NetworkSource) -> RbdCluster:
    """A librados connection as the disk's cephx user (blocking)."""
    return RbdCluster(source, host.ceph_key(source))


def read_rbd_disk(host: LibvirtHost, disk: DiskInfo) -> images.RbdImageInfo:
    """librbd's view of one RBD disk: sizes, snapshots, clones, parents (blocking)."""
    source = rbd_source(disk)
    with open_cluster(host, source) as cluster:
        return images.inspect(cluster, source.pool, source.image)
