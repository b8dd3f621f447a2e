"""Run a planned job to its end: build the steps, run them, summarise the result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact
from snaptui.core.engine.journal import JournalWriter
from snaptui.core.engine.plan import Plan
from snaptui.core.engine.rotate_job import rotate_after
from snaptui.core.engine.runner import Step, downtime, run_steps
from snaptui.core.images.factory import open_store
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt.host import LibvirtHost


def make_context(plan: Plan, journal: JournalWriter, *, host: LibvirtHost | None = None,
                 store: ImageStore | None = None, facts: dict[str, Any] | None = None,
                 auth_state: str | None = None) -> JobContext:
    """A context whose host and store are the given ones, or opened from the plan on first use
    (a Glance store resuming the launcher's login when ``auth_state`` is given)."""
    def host_factory() -> LibvirtHost:
        return host if host is not None else LibvirtHost(plan.uri).connect()

    def store_factory() -> ImageStore:
        if store is not None:
            return store
        if auth_state and plan.destination == "glance" and _forwarded_only(plan.cloud):
            from snaptui.core.cloud.forwarded_login import forwarded_store

            return forwarded_store(auth_state)  # a remote job: the operator's login only
        opened = open_store(plan.destination, cloud=plan.cloud, library=plan.library_dir)
        adopt = getattr(opened, "adopt_auth_state", None)
        if auth_state and callable(adopt):
            adopt(auth_state)
        return opened

    return JobContext(plan=plan, journal=journal, host_factory=host_factory,
                      store_factory=store_factory, facts=dict(facts or {}))


def _forwarded_only(cloud: str | None) -> bool:
    """No cloud configured here (a fleet host): the launcher's login is all there is."""
    from snaptui.core.cloud.config import cloud_configured

    return not cloud_configured(cloud)


def summarize(ctx: JobContext) -> dict[str, Any]:
    """The ``done`` event: image ids, downtime, and the size comparison of every disk."""
    plan, facts = ctx.plan, ctx.facts
    images = []
    for d in plan.disks:
        images.append({
            "target": d.target,
            "image_id": facts.get(DiskFact.IMAGE.of(d.target)),
            "name": d.image_name,
            "checksum": facts.get(DiskFact.CHECKSUM.of(d.target)),
            "kept": facts.get(DiskFact.KEPT.of(d.target)),
            "sizes": {
                "source_virtual": d.virtual_size,
                "source_actual": d.actual_size,
                "source_apparent": d.apparent_size,
                "output_actual": facts.get(DiskFact.OUTPUT_ACTUAL.of(d.target)),
                "output_apparent": facts.get(DiskFact.OUTPUT_APPARENT.of(d.target)),
                "uploaded": facts.get(DiskFact.UPLOADED_SIZE.of(d.target)),
            },
        })
    first = images[0]
    return {
        "image_id": first["image_id"],
        "name": first["name"],
        "checksum": first["checksum"],
        "sizes": first["sizes"],
        "images": images,
        "mode": str(plan.mode),
        "destination": plan.destination,
        "downtime_s": downtime(ctx) or 0.0,
    }


StepsWrapper = Callable[[Sequence[Step]], list[Step]]
SummaryWrapper = Callable[[JobContext, dict[str, Any]], dict[str, Any]]


async def execute(ctx: JobContext, on_ready: Callable[[JobContext], None] | None = None, *,
                  wrap_steps: StepsWrapper | None = None,
                  wrap_summary: SummaryWrapper | None = None) -> bool:
    """Run the plan's workflow in ``ctx``; True when the image(s) are done. ``wrap_steps``
    changes how the steps run, not which (the demo's pacing); ``wrap_summary`` what the
    ``done`` event says (the demo's sizes, marked as such)."""
    if on_ready is not None:
        on_ready(ctx)
    from snaptui.core.engine.job_kinds import SNAPSHOT, kind_of

    kind = kind_of(ctx.plan)
    steps = kind.build_steps(ctx.plan)

    def finish(done: JobContext) -> dict[str, Any]:
        result = kind.summarize(done)
        # --rotate: the images are in, nothing can undo them now
        rotated = rotate_after(done) if kind.name == SNAPSHOT else None
        if rotated is not None:
            result["rotation"] = rotated
        return wrap_summary(done, result) if wrap_summary else result

    return await run_steps(ctx, wrap_steps(steps) if wrap_steps else steps, finish)
