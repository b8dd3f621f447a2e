"""Rotation as Nova's ``createBackup`` does it (nova/compute/manager.py ``_rotate_backups``):
images with ``image_type=backup``, the same ``backup_type`` and ``instance_uuid``, newest
first; those beyond the rotation count are deleted.

snaptui's differences, all toward keeping: the images just made are always kept (and count);
protected images are kept and not counted (as Proxmox's prune does); images not proven ours
(``ownership``) are kept and not counted unless the operator asks (``include_unowned``);
images not active yet (another upload) are left alone; a delete that fails is reported and the
rotation goes on (Nova logs it and goes on too). Per disk: a multi-disk snapshot rotates
each disk's images among themselves (``snaptui_disk``); images without one (Nova's) belong to
the root disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from snaptui.core.errors import BadInput, NotFound, SnaptuiError
from snaptui.core.images.store import ImageStore
from snaptui.core.models import ImageRecord

BACKUP = "backup"  # image_type of a backup (Nova's createBackup)
MAX_BACKUP_TYPE = 255
MAX_ROTATE = 100_000

OwnershipCheck = Callable[[ImageRecord], str | None]


def check_options(backup_type: str | None, rotate: int | None) -> None:
    """BadInput unless ``--backup-type`` is a usable name and ``--rotate`` (which needs it)
    keeps at least the image just made."""
    if backup_type is not None:
        if not backup_type.strip() or len(backup_type) > MAX_BACKUP_TYPE \
                or any(ord(ch) < 32 or ord(ch) == 127 for ch in backup_type):
            raise BadInput(f"--backup-type {backup_type[:40]!r}: 1 to {MAX_BACKUP_TYPE} "
                           "characters, no control characters (e.g. daily, weekly)")
    if rotate is None:
        return
    if backup_type is None:
        raise BadInput("--rotate needs --backup-type (it rotates the backups of that type)")
    if isinstance(rotate, bool) or not 1 <= rotate <= MAX_ROTATE:
        raise BadInput(f"--rotate must be from 1 (the image just made) to {MAX_ROTATE}, "
                       f"not {str(rotate)[:40]}")


def backup_properties(backup_type: str) -> dict[str, str]:
    """What makes an image a backup of that type (Nova's createBackup)."""
    return {"image_type": BACKUP, "backup_type": backup_type}


def in_group(image: ImageRecord, *, instance_uuid: str, backup_type: str, disk: str,
             root_disk: str) -> bool:
    """Whether ``image`` is one of the disk's backups of that type."""
    props = image.properties
    if props.get("image_type") != BACKUP or str(props.get("backup_type")) != backup_type:
        return False
    if image.instance_uuid != instance_uuid:
        return False
    return str(props.get("snaptui_disk") or root_disk) == disk


@dataclass
class RotationRow:
    """One image of the group and what rotation did with it."""

    image_id: str
    name: str
    created_at: str | None
    action: str  # keep | delete (planned) | deleted | failed
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Rotation:
    """The outcome of one disk's rotation."""

    disk: str
    backup_type: str
    keep: int
    rows: list[RotationRow] = field(default_factory=list)

    @property
    def deleted(self) -> list[RotationRow]:
        return [r for r in self.rows if r.action == "deleted"]

    @property
    def failed(self) -> list[RotationRow]:
        return [r for r in self.rows if r.action == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {"disk": self.disk, "backup_type": self.backup_type, "keep": self.keep,
                "images": [r.to_json() for r in self.rows]}


def plan_rotation(group: Iterable[ImageRecord], *, keep: int, new_ids: set[str],
                  not_ours: OwnershipCheck, include_unowned: bool = False) -> list[RotationRow]:
    """Each image of the group, newest first, with ``keep`` or ``delete`` and why."""
    images = sorted(group, key=lambda i: (i.id in new_ids, i.created_at or ""), reverse=True)
    rows, counted = [], 0
    for image in images:
        row = RotationRow(image.id, image.name, image.created_at, "keep")
        foreign = None if image.id in new_ids else not_ours(image)
        if image.id in new_ids:
            counted += 1
            row.reason = "the image just made"
        elif image.protected:
            row.reason = "protected"
        elif image.status != "active":
            row.reason = f"{image.status}, not active"
        elif foreign and not include_unowned:
            row.reason = foreign
        elif counted < keep:
            counted += 1
            row.reason = f"one of the newest {keep}"
        else:
            row.action, row.reason = "delete", f"beyond the newest {keep}"
            if foreign:
                row.reason += f" ({foreign}; asked to include it)"
        rows.append(row)
    return rows


def rotate(store: ImageStore, images: Iterable[ImageRecord], *, instance_uuid: str,
           backup_type: str, disk: str, root_disk: str, keep: int, new_ids: set[str],
           not_ours: OwnershipCheck, include_unowned: bool = False,
           on_deleted: Callable[[RotationRow, str | None], None] | None = None) -> Rotation:
    """Delete the disk's backups beyond ``keep``; ``on_deleted(row, error)`` after each try.
    Never raises for a delete that fails: the row says ``failed`` and why."""
    group = [i for i in images if in_group(i, instance_uuid=instance_uuid,
                                            backup_type=backup_type, disk=disk,
                                            root_disk=root_disk)]
    result = Rotation(disk, backup_type, keep, plan_rotation(
        group, keep=keep, new_ids=new_ids, not_ours=not_ours, include_unowned=include_unowned))
    for row in result.rows:
        if row.action != "delete":
            continue
        error = None
        try:
            store.delete(row.image_id)
            row.action = "deleted"
        except NotFound:
            row.action, row.reason = "deleted", "already gone"
        except (SnaptuiError, OSError) as err:
            error = " ".join(str(err).split()) or type(err).__name__
            row.action, row.reason = "failed", error
        if on_deleted is not None:
            on_deleted(row, error)
    return result
