"""What an RBD image is: sizes (provisioned and used), snapshots with their protection and
clone children, and its parent when it is a copy-on-write clone (Nova's disks of a Glance
image are clones of the image's ``snap``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from snaptui.core.errors import CephError
from snaptui.core.rbd.cluster import RbdCluster, ceph_error, modules


@dataclass(frozen=True)
class RbdSnapshot:
    """One snapshot of an image, with the clones made from it (``pool/image``)."""

    name: str
    size: int
    protected: bool
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class RbdImageInfo:
    """An RBD image as librbd reports it. ``used`` counts whole allocated objects (what
    ``rbd du`` reports with fast-diff), ``None`` when it cannot be measured."""

    fsid: str
    pool: str
    name: str
    size: int  # provisioned (virtual) bytes
    used: int | None
    object_size: int
    features: tuple[str, ...] = ()
    snapshots: tuple[RbdSnapshot, ...] = ()
    parent: str | None = None  # pool/image@snap of a clone, else None
    parent_chain: tuple[str, ...] = field(default=())  # the parent's own parents, nearest first

    @property
    def spec(self) -> str:
        return f"{self.pool}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def used_bytes(image: Any, size: int) -> int:
    """Bytes of the objects that hold data in this image itself (not its parent's)."""
    total = 0

    def count(offset: int, length: int, exists: bool) -> int:
        nonlocal total
        if exists:
            total += length
        return 0

    image.diff_iterate(0, size, None, count, include_parent=False, whole_object=True)
    return total


def _parent(image: Any) -> str | None:
    _, rbd = modules()
    try:
        spec = image.get_parent_image_spec()
    except rbd.ImageNotFound:
        return None
    return f"{spec['pool_name']}/{spec['image_name']}@{spec['snap_name']}"


def _features(image: Any) -> tuple[str, ...]:
    _, rbd = modules()
    try:
        return tuple(sorted(rbd.RBD().features_to_string(image.features()).split(",")))
    except (AttributeError, rbd.Error):
        return ()


def _snapshots(cluster: RbdCluster, pool: str, name: str, image: Any) -> tuple[RbdSnapshot, ...]:
    snaps = []
    for snap in image.list_snaps():
        with cluster.image(pool, name, snapshot=snap["name"]) as at_snap:
            children = tuple(f"{c['pool']}/{c['image']}" for c in at_snap.list_children2()
                             if not c.get("trash"))
        snaps.append(RbdSnapshot(snap["name"], int(snap["size"]),
                                 bool(image.is_protected_snap(snap["name"])), children))
    return tuple(snaps)


def inspect(cluster: RbdCluster, pool: str, name: str) -> RbdImageInfo:
    """Sizes, snapshots and parent chain of ``pool/name``; a one-line CephError if it fails."""
    _, rbd = modules()
    try:
        with cluster.image(pool, name) as image:
            size = int(image.size())
            stat = image.stat()
            try:
                used: int | None = used_bytes(image, size)
            except rbd.Error:
                used = None
            parent = _parent(image)
            info = RbdImageInfo(
                fsid=cluster.fsid, pool=pool, name=name, size=size, used=used,
                object_size=int(stat["obj_size"]), features=_features(image),
                snapshots=_snapshots(cluster, pool, name, image), parent=parent,
                parent_chain=_chain(cluster, parent),
            )
    except rbd.Error as err:
        raise ceph_error(err, f"cannot inspect RBD image {pool}/{name}") from None
    return info


def _chain(cluster: RbdCluster, parent: str | None, depth: int = 8) -> tuple[str, ...]:
    """The parents of ``parent`` (pool/image@snap), nearest first; stops where it cannot see."""
    chain: list[str] = []
    while parent and depth:
        pool, _, rest = parent.partition("/")
        image_name, _, snap = rest.partition("@")
        try:
            with cluster.image(pool, image_name, snapshot=snap or None) as image:
                parent = _parent(image)
        except CephError:
            break
        if parent:
            chain.append(parent)
        depth -= 1
    return tuple(chain)
