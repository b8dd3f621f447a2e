"""The verify step: boot the new image (core/verify/boot.py) before its local file is removed.

A failed verification fails the step, so the rollback deletes the image (the image step's
undo), unless ``--keep-unverified``: then the image stays, without ``snaptui_verified``. The
job log holds the reason and the last console lines either way. The source guest is only read
(its inactive XML), never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import libvirt

from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact, Fact
from snaptui.core.engine.plan import DiskPlan, Plan
from snaptui.core.engine.runner import Action
from snaptui.core.verify import boot as verify_boot


def verify_name(plan: Plan) -> str:
    return f"{verify_boot.VERIFY_PREFIX}{plan.job_id}"


def prefix(disk: DiskPlan) -> Path:
    """``<scratch>/<job>-<target>``: the verify files sit next to the job's output."""
    out = Path(disk.output_path)
    return out.parent / out.name.split(".", 1)[0]


Boot = Callable[[str, str | None], Awaitable[verify_boot.VerifyResult]]


def verify_image(disk: DiskPlan) -> Action:
    """Boot the image's local file on a throwaway overlay; mark the image verified."""
    async def run(ctx: JobContext) -> None:
        plan = ctx.plan

        def boot(name: str, source_xml: str | None) -> Awaitable[verify_boot.VerifyResult]:
            return verify_boot.verify_file(
                ctx.host.conn, Path(disk.output_path), plan.out_format, prefix=prefix(disk),
                name=name, source_xml=source_xml, target=disk.target,
                console_regex=plan.verify_console, timeout=plan.verify_timeout,
                accel=plan.verify_accel,
                on_progress=lambda done, total: ctx.progress(done, total, "s"))
        await boot_checked(ctx, disk, boot)

    async def undo(ctx: JobContext) -> None:
        await asyncio.to_thread(clean_domain, ctx, disk)
    return Action(run, undo)


async def boot_checked(ctx: JobContext, disk: DiskPlan, boot: Boot) -> None:
    """Run ``boot`` (the verify domain's name, the source's inactive XML) and mark the image
    verified; a failure fails the step unless ``--keep-unverified``. The job log holds the
    reason and the console's last lines either way."""
    plan = ctx.plan
    name = verify_name(plan)
    ctx.record(Fact.VERIFY_DOMAIN, name)
    source_xml = await asyncio.to_thread(ctx.domain().XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE)
    try:
        result = await boot(name, source_xml)
    except verify_boot.VerifyFailed as failed:
        ctx.note(f"verification failed: {failed.reason}")
        for line in failed.console:
            ctx.note(f"console: {line}")
        if not plan.keep_unverified:
            raise
        ctx.note("--keep-unverified: the image is kept, not marked verified")
        return
    finally:
        ctx.forget(Fact.VERIFY_DOMAIN)
    image_id = ctx.facts[DiskFact.IMAGE.of(disk.target)]
    await asyncio.to_thread(ctx.store.set_properties, image_id,
                            verify_boot.verified_properties(result))
    how = "guest agent answered" if result.method == "agent" else "console matched"
    ctx.note(f"verified: {how} {result.seconds:.1f} s after the start")


def clean_domain(ctx: JobContext, disk: DiskPlan) -> None:
    """Destroy the verify domain and remove its files, if there (blocking; idempotent)."""
    verify_boot.destroy_domain(ctx.host.conn, verify_name(ctx.plan))
    verify_boot.VerifyFiles.for_prefix(prefix(disk)).remove()
    ctx.forget(Fact.VERIFY_DOMAIN)
