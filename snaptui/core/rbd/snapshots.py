"""The writes a direct snapshot makes in the cluster: snapshots, protection, clones, flatten,
removal. Each is safe to repeat (an undo or ``recover`` may run it again): creating what exists
or removing what is gone is not an error."""

from __future__ import annotations

import errno
from collections.abc import Callable

from snaptui.core.rbd.cluster import ImageMissing, RbdCluster, ceph_error, modules

Progress = Callable[[int, int], None]


def create_snapshot(cluster: RbdCluster, pool: str, name: str, snap: str, *,
                    protect: bool = False) -> None:
    """``rbd snap create pool/name@snap`` (and ``snap protect``); an existing one is kept."""
    _, rbd = modules()
    try:
        with cluster.image(pool, name, read_only=False) as image:
            if snap not in {s["name"] for s in image.list_snaps()}:
                image.create_snap(snap)
            if protect and not image.is_protected_snap(snap):
                image.protect_snap(snap)
    except rbd.Error as err:
        raise ceph_error(err, f"cannot snapshot {pool}/{name}@{snap}") from None


def protect_snapshot(cluster: RbdCluster, pool: str, name: str, snap: str) -> None:
    _, rbd = modules()
    try:
        with cluster.image(pool, name, read_only=False) as image:
            if not image.is_protected_snap(snap):
                image.protect_snap(snap)
    except rbd.Error as err:
        raise ceph_error(err, f"cannot protect {pool}/{name}@{snap}") from None


def remove_snapshot(cluster: RbdCluster, pool: str, name: str, snap: str) -> bool:
    """Unprotect and remove ``pool/name@snap``; False when it (or the image) is gone already.
    A snapshot that still has clones stays, with librbd's reason."""
    _, rbd = modules()
    try:
        with cluster.image(pool, name, read_only=False) as image:
            if snap not in {s["name"] for s in image.list_snaps()}:
                return False
            if image.is_protected_snap(snap):
                image.unprotect_snap(snap)
            image.remove_snap(snap)
            return True
    except (rbd.ImageNotFound, ImageMissing):
        return False
    except rbd.Error as err:
        raise ceph_error(err, f"cannot remove snapshot {pool}/{name}@{snap}") from None


def clone(cluster: RbdCluster, parent: tuple[str, str, str], pool: str, name: str) -> bool:
    """Copy-on-write clone of ``parent`` (pool, image, snap) as ``pool/name`` with layering
    only; False when ``pool/name`` exists already (a clone this job made before a crash)."""
    _, rbd = modules()
    p_pool, p_name, p_snap = parent
    try:
        rbd.RBD().clone(cluster.ioctx(p_pool), p_name, p_snap, cluster.ioctx(pool), name,
                        features=rbd.RBD_FEATURE_LAYERING)
    except rbd.ImageExists:
        return False
    except rbd.Error as err:
        raise ceph_error(err, f"cannot clone {p_pool}/{p_name}@{p_snap} into "
                              f"{pool}/{name}") from None
    return True


def flatten(cluster: RbdCluster, pool: str, name: str, progress: Progress | None = None,
            cancelled: Callable[[], bool] | None = None) -> None:
    """Copy the parent's objects into the clone (inside the cluster) and detach it; a clone
    with no parent any more is done already. ``progress(done, total)`` in objects; when
    ``cancelled()`` turns true librbd stops (a CephError)."""
    _, rbd = modules()

    def report(done: int, total: int) -> int:
        if progress is not None:
            progress(int(done), int(total))
        return -errno.ECANCELED if cancelled is not None and cancelled() else 0

    try:
        with cluster.image(pool, name, read_only=False) as image:
            try:
                image.get_parent_image_spec()
            except rbd.ImageNotFound:
                return
            image.flatten(on_progress=report)
    except rbd.Error as err:
        raise ceph_error(err, f"cannot flatten {pool}/{name}") from None


def remove_image(cluster: RbdCluster, pool: str, name: str) -> bool:
    """Remove ``pool/name`` and its snapshots; False when it is gone already."""
    _, rbd = modules()
    try:
        with cluster.image(pool, name, read_only=False) as image:
            for snap in list(image.list_snaps()):
                if image.is_protected_snap(snap["name"]):
                    image.unprotect_snap(snap["name"])
                image.remove_snap(snap["name"])
        rbd.RBD().remove(cluster.ioctx(pool), name)
    except (rbd.ImageNotFound, ImageMissing):
        return False
    except rbd.Error as err:
        raise ceph_error(err, f"cannot remove RBD image {pool}/{name}") from None
    return True


def image_exists(cluster: RbdCluster, pool: str, name: str) -> bool:
    _, rbd = modules()
    try:
        return name in rbd.RBD().list(cluster.ioctx(pool))
    except rbd.Error as err:
        raise ceph_error(err, f"cannot list pool {pool}") from None
