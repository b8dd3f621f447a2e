"""Start a snapshot job from the dashboard, and follow a job into Textual messages.

Preflight and launch block (libvirt calls, qemu-img, the journal's fsync), so they run in a
thread; the UI's event loop only awaits them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from textual.message import Message

from snaptui.core.demo.backup import simulate_backup
from snaptui.core.demo.pace import pace_steps, paced_summary
from snaptui.core.engine.jobs import (
    follow,
    launch,
    prepare_with_store,
    run_inline,
    store_auth_state,
)
from snaptui.core.engine.plan import SnapshotRequest
from snaptui.core.engine.runner import Step
from snaptui.core.errors import BadInput
from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.restore import RestoreRequest
from snaptui.ui.messages import JobFinished, JobProgress, RemoteJobUpdated


def _store_for(request: SnapshotRequest, store: ImageStore | None) -> ImageStore | None:
    """The app's open store when it is the request's destination, else None (prepare opens one
    from the request's cloud or library directory)."""
    if store is None:
        return None
    kind = getattr(store, "kind", None)
    if request.destination not in (None, kind):
        return None
    location = getattr(store, "location", None)
    if kind == "library" and request.library_dir and location and \
            Path(request.library_dir).expanduser().absolute() != Path(location):
        return None
    return store


REMOTE_PROGRESS_S = 0.25  # the Jobs screen's progress of a remote job, at most 4 a second


def follow_remote_snapshot(spec: HostSpec, request: SnapshotRequest, store: ImageStore | None,
                           post: Callable[[Message], object],
                           stop: threading.Event | None = None) -> None:
    """Blocking (a thread worker): run ``request`` on the SSH host ``spec`` through snaptui
    there (core/fleet/remote_jobs.py) and post RemoteJobUpdated for each of its events, then
    JobFinished. The operator's login goes through the SSH channel only (the app's Glance
    store's token and catalog); the job is detached and journaled on the host, so a lost
    connection re-attaches (core/fleet/feed.py) and a closed dashboard loses nothing.
    Failures before the job exists (SSH, the host's preflight) raise one-line errors."""
    from snaptui.core.fleet.feed import RemoteFeed
    from snaptui.core.fleet.remote_jobs import start_remote_snapshot

    if request.destination in (None, "glance") and getattr(store, "kind", None) == "glance":
        auth_state = store_auth_state(store)  # type: ignore[arg-type]
        request = replace(request, destination="glance")
    else:
        auth_state = None
    notes: list[str] = []
    feed = RemoteFeed(spec, note=notes.append)
    call = start_remote_snapshot(spec, request, auth_state)
    shown = 0.0  # when progress was last folded and posted
    try:
        for event in feed.follow(call):
            if stop is not None and stop.is_set():
                return
            if feed.job_id is None:
                continue
            now = time.monotonic()
            if event.get("event") == "progress" and now - shown < REMOTE_PROGRESS_S \
                    and not notes:
                continue  # folding every progress event would redo the whole journal each time
            shown = now
            post(RemoteJobUpdated(spec.name, feed.record(), notes.pop() if notes else None))
        if feed.job_id is None:
            raise BadInput(f"{spec.name}: the remote snapshot ended before its job started")
        record = feed.record()
        post(RemoteJobUpdated(spec.name, record, notes.pop() if notes else None))
        post(JobFinished(f"{spec.name}:{record.job_id}"))
    finally:
        call.close()


async def start_snapshot(request: SnapshotRequest, host: LibvirtHost,
                         store: ImageStore | None, *, spec: HostSpec | None = None,
                         cloud: str | None = None, demo_speed: float = 0.0) -> str:
    """Preflight ``request`` and start its job; returns the job id (SnaptuiError propagates).

    The request's URI and cloud default to the app's (``host`` and ``cloud``): the detached
    job rebuilds its connections from the plan, so a missing cloud there would fall back to
    OS_CLOUD instead of the ``--os-cloud`` the dashboard was started with.
    The test:/// driver keeps its state in this process, so its jobs run inline in a thread;
    real hypervisors get a detached job process that outlives the dashboard. ``demo_speed``
    paces those like a real host's (snaptui.core.demo.pace; 0: as fast as they go).
    ``spec``: the fleet host the domain is on (an SSH host's jobs run there: see
    ``follow_remote_snapshot``).
    """
    if spec is not None and spec.remote:
        raise BadInput(f"{spec.name}: its jobs run on that host (follow_remote_snapshot)")
    if request.uri is None:
        request = replace(request, uri=host.uri)
    if request.cloud is None and cloud is not None:
        request = replace(request, cloud=cloud)
    store = _store_for(request, store)

    def preflight() -> tuple:
        # A private event loop in a worker thread: preflight mixes libvirt calls with qemu-img.
        return asyncio.run(prepare_with_store(request, host, store))

    plan, steps, checked = await asyncio.to_thread(preflight)
    if host.is_test_driver:  # the demo: its backup simulated, its steps paced
        def wrap(steps: Sequence[Step]) -> list[Step]:
            return pace_steps(simulate_backup(steps), speed=demo_speed)

        # Paced on a real guest's sizes: the size comparison shows those, marked demo.
        summary = paced_summary if demo_speed > 0 else None
        return await asyncio.to_thread(run_inline, plan, request, steps, host=host, store=store,
                                       wrap_steps=wrap, wrap_summary=summary)
    return await asyncio.to_thread(launch, plan, request, steps,  # resuming this login
                                   auth_state=store_auth_state(checked))


async def start_restore(request: RestoreRequest, store: ImageStore | None) -> str:
    """Preflight a restore again (the host may have moved since the dialog checked it) and
    start its detached job; returns the job id."""
    from snaptui.core.engine.preflight.checks import new_job_id
    from snaptui.core.restore import launch as launch_restore
    from snaptui.core.restore import prepare as prepare_restore

    kind = getattr(store, "kind", None)
    job_id = new_job_id()
    plan, steps, checked = await asyncio.to_thread(
        lambda: asyncio.run(prepare_restore(request, store=store if kind == request.source
                                            else None, job_id=job_id)))
    login = store_auth_state(checked) if checked is not None else None
    return await asyncio.to_thread(launch_restore, plan, request, steps, auth_state=login)


def follow_job(job_id: str, post: Callable[[Message], object],
               stop: threading.Event | None = None) -> None:
    """Blocking: post JobProgress for each journal event and JobFinished at the end.

    Meant for a thread worker (``post_message`` is thread-safe); returns when the job ends,
    its process is lost, or ``stop`` is set.
    """
    for event in follow(job_id, poll_s=0.1, stop=stop):
        kind = event.get("event")
        if kind in ("done", "failed", "cancelled", "abandoned", "lost"):
            post(JobFinished(job_id))
            return
        post(JobProgress(job_id))
