"""Reading a pool for cleanup: its images with their parent, snapshots (protection, clone
children), age and the space they hold. Read-only and blocking (librbd calls)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from snaptui.core.rbd.cluster import ImageMissing, RbdCluster, ceph_error, modules
from snaptui.core.rbd.images import RbdSnapshot, used_bytes


@dataclass(frozen=True)
class PoolImage:
    """One image of a pool as cleanup judges it."""

    pool: str
    name: str
    created: float | None  # epoch seconds (None when librbd does not say)
    used: int | None  # bytes of its own objects (not its parent's)
    parent: str | None  # pool/image@snap of an unflattened clone
    snapshots: tuple[RbdSnapshot, ...] = ()

    @property
    def spec(self) -> str:
        return f"{self.pool}/{self.name}"

    @property
    def children(self) -> tuple[str, ...]:
        """Clones made from any of its snapshots (``pool/image``)."""
        return tuple(c for s in self.snapshots for c in s.children)


def _epoch(when: Any) -> float | None:
    if not isinstance(when, datetime):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def image_names(cluster: RbdCluster, pool: str) -> list[str]:
    """Names of the pool's images (those in its trash are not listed)."""
    _, rbd = modules()
    try:
        return sorted(rbd.RBD().list(cluster.ioctx(pool)))
    except rbd.Error as err:
        raise ceph_error(err, f"cannot list pool {pool}") from None


def snapshots_of(cluster: RbdCluster, pool: str, name: str, image: Any) -> tuple[RbdSnapshot, ...]:
    """The image's snapshots, each with the clones made from it (in the trash or not)."""
    found = []
    for snap in image.list_snaps():
        with cluster.image(pool, name, snapshot=snap["name"]) as at_snap:
            children = tuple(f"{c['pool']}/{c['image']}" for c in at_snap.list_children2())
        found.append(RbdSnapshot(snap["name"], int(snap["size"]),
                                 bool(image.is_protected_snap(snap["name"])), children))
    return tuple(found)


def read_image(cluster: RbdCluster, pool: str, name: str, *,
               measure: bool = True) -> PoolImage | None:
    """``pool/name`` with its parent and snapshots (and, when ``measure``, the bytes it holds);
    None when it is gone (or going)."""
    _, rbd = modules()
    try:
        with cluster.image(pool, name) as image:
            try:
                spec = image.get_parent_image_spec()
                parent: str | None = (f"{spec['pool_name']}/{spec['image_name']}"
                                      f"@{spec['snap_name']}")
            except rbd.ImageNotFound:
                parent = None
            used: int | None = None
            if measure:
                with contextlib.suppress(rbd.Error):
                    used = used_bytes(image, int(image.size()))
            try:
                created = _epoch(image.create_timestamp())
            except (AttributeError, rbd.Error):
                created = None
            return PoolImage(pool, name, created, used, parent,
                             snapshots_of(cluster, pool, name, image))
    except (ImageMissing, rbd.ImageNotFound):
        return None
    except rbd.Error as err:
        raise ceph_error(err, f"cannot read RBD image {pool}/{name}") from None


def held_by_snapshot(cluster: RbdCluster, pool: str, name: str, snap: str) -> int | None:
    """Bytes written to the image since ``snap`` (whole objects): the old data the snapshot
    alone keeps, which its removal gives back. None when librbd cannot tell."""
    _, rbd = modules()
    total = 0

    def count(_offset: int, length: int, _exists: bool) -> int:
        nonlocal total
        total += length
        return 0

    try:
        with cluster.image(pool, name) as image:
            image.diff_iterate(0, int(image.size()), snap, count, include_parent=False,
                               whole_object=True)
    except (ImageMissing, rbd.Error):
        return None
    return total
