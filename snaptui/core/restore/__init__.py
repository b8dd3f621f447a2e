"""Restore: put an image back on a guest's disk, undo that, or start a new guest from it.

The API the CLI and the dashboard share::

    plan, steps, store = await prepare(request)      # preflight, nothing touched
    job_id = launch(plan, request, steps, process)    # a detached, journaled job

A restore is a job like a snapshot (core/engine/): the same runner, journal, locks, recover and
audit, with the steps of core/restore/workflow.py.
"""

from __future__ import annotations

from typing import cast

from snaptui.core.engine import jobs
from snaptui.core.engine.plan import Plan, SnapshotRequest
from snaptui.core.engine.runner import Step
from snaptui.core.fleet.hosts import refuse_remote_disks
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt.host import LibvirtHost, default_uri
from snaptui.core.restore.plan import RestorePlan, RestoreRequest
from snaptui.core.restore.workflow import build_restore_steps

__all__ = ["RestorePlan", "RestoreRequest", "launch", "prepare"]


async def prepare(request: RestoreRequest, host: LibvirtHost | None = None,
                  store: ImageStore | None = None, *, job_id: str | None = None,
                  ) -> tuple[RestorePlan, list[Step], ImageStore | None]:
    """Preflight the request (a restore, its undo, or a new guest) and list its steps."""
    from snaptui.core.restore import preflight

    refuse_remote_disks(default_uri(request.uri) if host is None else host.uri)
    own_host = host is None
    host = host or LibvirtHost(request.uri).connect()
    try:
        if request.undo_job:
            plan = await preflight.preflight_undo(request, host, job_id=job_id)
        elif request.as_name:
            from snaptui.core.restore.new_guest import preflight_new_guest

            plan, store = await preflight_new_guest(request, host, store, job_id=job_id)
        else:
            plan, store = await preflight.preflight_restore(request, host, store,
                                                            job_id=job_id)
    finally:
        if own_host:
            host.close()
    return plan, build_restore_steps(plan), store


def launch(plan: RestorePlan, request: RestoreRequest, steps: list[Step],
           process: jobs.JobProcess | None = None, *, auth_state: str | None = None) -> str:
    """Write the journal header and let the job's detached process run it; the job id.
    The engine's launcher reads only what every plan and request has (ids, notes, to_json)."""
    return jobs.launch(cast(Plan, plan), cast(SnapshotRequest, request), steps, process,
                       auth_state=auth_state)
