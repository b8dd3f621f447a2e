"""Rotation at the end of a backup job (``--backup-type T --rotate N``), in the job process.

It runs once every step succeeded and the job's images are active, before the ``done`` event,
which carries its outcome; every delete is a journal note and an audit record. Nothing here
can fail the job: the image is made, and a rotation that could not finish is said (as Nova
logs a failed rotation and keeps the backup).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from snaptui.core import audit
from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact
from snaptui.core.engine.journal import check_job_id, journal_path
from snaptui.core.errors import BadInput
from snaptui.core.keep import rotation
from snaptui.core.keep.ownership import not_ours
from snaptui.core.models import ImageRecord

log = logging.getLogger(__name__)


def job_in_journal(job_id: str) -> bool:
    """Whether this host's journal holds job ``job_id`` (it is one snaptui ran here)."""
    try:
        return journal_path(check_job_id(job_id)).is_file()
    except BadInput:
        return False


def ownership(host: str):
    """The ownership check of this host, for rotation and prune."""
    def check(image: ImageRecord) -> str | None:
        return not_ours(image, host=host, job_known=job_in_journal)
    return check


def rotate_after(ctx: JobContext) -> dict[str, Any] | None:
    """Rotate each disk's backups; the ``rotation`` part of the ``done`` event (None when the
    job asked for none)."""
    plan = ctx.plan
    if not plan.rotate or not plan.backup_type:
        return None
    try:
        return _rotate(ctx, plan.backup_type, plan.rotate)
    except Exception as err:  # noqa: BLE001 - the image is made: say it, never fail the job
        why = " ".join(str(err).split()) or type(err).__name__
        ctx.note(f"rotation not done: {why}")
        log.exception("rotation failed")
        return {"error": why, "disks": []}


def _rotate(ctx: JobContext, backup_type: str, keep: int) -> dict[str, Any]:
    plan, store = ctx.plan, ctx.store
    new_ids = {str(i) for d in plan.disks if (i := ctx.facts.get(DiskFact.IMAGE.of(d.target)))}
    inactive = [i for i in sorted(new_ids) if store.show(i).status != "active"]
    if inactive:
        ctx.note(f"rotation not done: image {inactive[0]} is not active")
        return {"error": f"image {inactive[0]} is not active", "disks": []}
    images = list(store.iter_images())
    host = plan.host or socket.gethostname()
    root = (plan.domain_targets or [d.target for d in plan.disks])[0]
    disks = []
    for d in plan.disks:
        def said(row: rotation.RotationRow, error: str | None, disk: str = d.target) -> None:
            verb = "could not delete" if error else "deleted"
            ctx.note(f"rotation ({backup_type}, {disk}): {verb} image {row.image_id} "
                     f"({row.name!r}, made {row.created_at})" + (f": {error}" if error else ""))
            audit.record("rotate", row.image_id, "failed" if error else "ok",
                         domain=plan.domain_name, domain_uuid=plan.domain_uuid, disk=disk,
                         job_id=plan.job_id, image=row.image_id, image_name=row.name,
                         backup_type=backup_type, error=error)

        result = rotation.rotate(
            store, images, instance_uuid=plan.domain_uuid, backup_type=backup_type,
            disk=d.target, root_disk=root, keep=keep, new_ids=new_ids,
            not_ours=ownership(host), include_unowned=plan.rotate_unowned, on_deleted=said)
        kept = sum(1 for r in result.rows if r.action == "keep")
        ctx.note(f"rotation ({backup_type}, {d.target}): {kept} kept, "
                 f"{len(result.deleted)} deleted, {len(result.failed)} failed")
        disks.append(result.to_json())
    return {"disks": disks}
