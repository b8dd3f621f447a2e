"""Steps that put the extracted image in the image store (Glance or the local library)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Callable
from pathlib import Path

from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact, Fact
from snaptui.core.engine.neighbour import upload_kwargs
from snaptui.core.engine.plan import DiskPlan
from snaptui.core.engine.runner import Action
from snaptui.core.errors import NotFound
from snaptui.core.images.store import ImageSettings, UploadProgress
from snaptui.core.keep.rotation import backup_properties


def image_properties(ctx: JobContext, disk: DiskPlan) -> dict[str, str]:
    """The properties preflight planned (inherited, derived, the operator's and Nova's; see
    core/images/properties.py) plus snaptui_* ones; every value a string (Glance schema)."""
    plan = ctx.plan
    props = dict(disk.properties)
    props.update({
        "image_type": "snapshot",
        "instance_uuid": plan.domain_uuid,
        "image_location": "snapshot",
        "image_state": "available",
        "snaptui_host": plan.host or socket.gethostname(),
        "snaptui_domain": plan.domain_name,
        "snaptui_disk": disk.target,
        "snaptui_method": plan.method,
        "snaptui_job": plan.job_id,
    })
    if plan.backup_type is not None:
        props.update(backup_properties(plan.backup_type))
    owner = None if "owner_id" in props else getattr(ctx.store, "project_id", None)
    if owner:
        props["owner_id"] = str(owner)
    if plan.base_image_ref:
        props["base_image_ref"] = plan.base_image_ref
    stopped, resumed = ctx.facts.get(Fact.GUEST_STOPPED_AT), ctx.facts.get(Fact.GUEST_RESUMED_AT)
    props["snaptui_downtime_s"] = f"{(resumed - stopped):.3f}" if stopped and resumed else "0"
    return props


def image_settings(ctx: JobContext, disk: DiskPlan) -> ImageSettings:
    """Glance's own fields of the disk's image, as preflight planned them (a plan written by an
    older snaptui has none: a private image, as before)."""
    settings = ImageSettings.from_json(ctx.plan.image_settings)
    return dataclasses.replace(settings, min_disk=disk.min_disk or settings.min_disk)


def create_image(disk: DiskPlan) -> Action:
    """Create the (queued) image record; its undo deletes it, whatever state it reached."""
    async def run(ctx: JobContext) -> None:
        settings = image_settings(ctx, disk)
        record = await asyncio.to_thread(
            ctx.store.create, disk.image_name, ctx.plan.out_format, "bare",
            image_properties(ctx, disk), dataclasses.replace(settings, protected=False),
        )
        ctx.record(DiskFact.IMAGE.of(disk.target), record.id)

    async def undo(ctx: JobContext) -> None:
        image_id = ctx.facts.get(DiskFact.IMAGE.of(disk.target))
        ids = [image_id] if image_id else await asyncio.to_thread(_made_by_job, ctx, disk)
        for one in ids:
            try:
                if image_settings(ctx, disk).protected:
                    await asyncio.to_thread(ctx.store.set_protected, one, False)
                await asyncio.to_thread(ctx.store.delete, one)
            except NotFound:
                pass
        ctx.forget(DiskFact.IMAGE.of(disk.target))
    return Action(run, undo)


def _made_by_job(ctx: JobContext, disk: DiskPlan) -> list[str]:
    """Images this job created without living to record their id (killed during the create
    call, or the answer lost): found by their snaptui_job property."""
    return [i.id for i in ctx.store.iter_images()
            if i.properties.get("snaptui_job") == ctx.plan.job_id
            and i.properties.get("snaptui_disk") == disk.target]


UPLOAD_STOP_S = 60.0


async def send_upload(ctx: JobContext, disk: DiskPlan, image_id: str,
                      send: Callable[[], str]) -> int | None:
    """Run ``send`` (an upload that returns the sha512 the store checked) in a thread, record
    the checksum and Glance's size of the image, protect it if asked; returns that size."""
    upload = asyncio.ensure_future(asyncio.to_thread(send))
    try:
        digest = await asyncio.shield(upload)
    except asyncio.CancelledError:
        # The thread goes on until its reader sees the cancel flag; the rollback must not
        # delete the image under a live upload (Glance answers 500 and keeps it).
        await asyncio.wait({upload}, timeout=UPLOAD_STOP_S)
        raise
    ctx.record(DiskFact.CHECKSUM.of(disk.target), digest)
    uploaded = await asyncio.to_thread(ctx.store.show, image_id)
    ctx.record(DiskFact.UPLOADED_SIZE.of(disk.target), uploaded.size)
    if image_settings(ctx, disk).protected:
        await asyncio.to_thread(ctx.store.set_protected, image_id, True)
    return uploaded.size


def upload_image(disk: DiskPlan) -> Action:
    """Stream the extracted file with sha512; the store compares it with os_hash_value."""
    async def run(ctx: JobContext) -> None:
        image_id = ctx.facts[DiskFact.IMAGE.of(disk.target)]

        def on_progress(p: UploadProgress) -> None:
            ctx.progress(p.sent, p.total, "bytes", rate=round(p.rate),
                         eta_s=None if p.eta_s is None else round(p.eta_s, 1))

        await send_upload(ctx, disk, image_id, lambda: ctx.store.upload(
            image_id, Path(disk.output_path), on_progress, ctx.cancel_flag,
            **upload_kwargs(ctx.plan),  # --bwlimit
        ))
    return Action(run)
