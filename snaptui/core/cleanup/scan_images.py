"""Images left in the store: stuck in queued / saving past the threshold (pre-selected only
when a job of this host's journal made them), and snapshot images whose instance is not on this
host (flagged only, never pre-selected)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from snaptui.core.cleanup.context import ScanContext
from snaptui.core.cleanup.findings import NOT_OURS, Finding, Kind, command
from snaptui.core.images.store import ImageStore
from snaptui.core.keep import ownership
from snaptui.core.models import ImageRecord
from snaptui.core.present import duration_text, iso_age_s

STUCK_STATUSES = ("queued", "saving")


def library_files(store: ImageStore, image_id: str) -> tuple[str, ...]:
    """The files of a library image (data, partial, sidecar); none for Glance."""
    directory = getattr(store, "directory", None)
    if store.kind != "library" or directory is None:
        return ()
    return tuple(sorted(str(p) for p in Path(directory).glob(f"{image_id}.*")))


def delete_commands(store: ImageStore, image: ImageRecord) -> tuple[str, ...]:
    if store.kind == "library":
        files = library_files(store, image.id)
        return (command("rm", "--", *files),) if files else ()
    cloud = getattr(getattr(store, "cloud", None), "name", None)
    where = ("--os-cloud", cloud) if cloud else ()
    return (command("openstack", *where, "image", "delete", image.id),)


def _finding(ctx: ScanContext, store: ImageStore, image: ImageRecord, safe: bool,
             reason: str, refused: str | None = None, *, unowned: bool = False) -> Finding:
    files = library_files(store, image.id)
    return Finding(
        key=f"images:{store.kind}:{image.id}", kind=Kind.IMAGES,
        location=f"{store.kind} image {image.id} ({image.name or 'no name'})",
        size=image.size, safe=safe, reason=reason, action="delete image",
        domain=ctx.domain_of_uuid(image.instance_uuid),
        commands=delete_commands(store, image), refused=refused, paths=files,
        unowned=unowned, label=NOT_OURS if unowned else "",
        details={"image_id": image.id, "name": image.name, "status": image.status,
                 "created_at": image.created_at, "instance_uuid": image.instance_uuid,
                 "store": store.kind, "snaptui_job": image.properties.get("snaptui_job"),
                 "snaptui_host": image.properties.get("snaptui_host")},
    )


def not_ours(ctx: ScanContext, image: ImageRecord) -> str | None:
    """Why this image is not proven snaptui's on this host, or None when it is (the rule
    rotation and prune use too: core/keep/ownership.py)."""
    return ownership.not_ours(image, host=socket.gethostname(),
                              job_known=ctx.jobs.journal_ids.__contains__)


def _judge(ctx: ScanContext, store: ImageStore, image: ImageRecord,
           domain_uuids: set[str]) -> Finding | None:
    age = iso_age_s(image.created_at, ctx.now)
    if image.status in STUCK_STATUSES:
        stuck = f"{image.status} for {duration_text(age)}"
        if image.id in ctx.jobs.image_ids:
            why = "a snaptui job still uploading it"
            return _finding(ctx, store, image, False, f"{stuck}; {why}", why)
        foreign = not_ours(ctx, image)
        if foreign:  # maybe someone's upload in progress: never pre-selected
            return _finding(ctx, store, image, False, f"{stuck}; {foreign}: flagged only",
                            unowned=True)
        if not ctx.old_enough(age):
            return _finding(ctx, store, image, False, f"{stuck}, younger than --older-than")
        return _finding(ctx, store, image, True,
                        f"{stuck}: an upload of snaptui job {image.properties['snaptui_job']} "
                        "that never finished")
    instance = image.instance_uuid
    if ctx.host is None:
        return None  # without the host's domains, no instance can be called missing
    if instance and instance not in domain_uuids:
        return _finding(ctx, store, image, False,
                        f"snapshot of instance {instance}, which is not on this host (it may "
                        "live on another host): flagged only")
    return None


async def scan_images(ctx: ScanContext) -> AsyncIterator[Finding]:
    """Every image of the store, judged one by one as the pages arrive."""
    store = ctx.store
    if store is None:
        return
    domain_uuids = {d.uuid for d in ctx.domains}
    pages = iter(store.iter_images())
    done = 0
    while True:
        image = await asyncio.to_thread(next, pages, None)
        if image is None:
            break
        done += 1
        if done % 50 == 0:
            ctx.progress(Kind.IMAGES, done, None, image.id)
        finding = _judge(ctx, store, image, domain_uuids)
        if finding is not None:
            yield finding
    ctx.progress(Kind.IMAGES, done, done)
