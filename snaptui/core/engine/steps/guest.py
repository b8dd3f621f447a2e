"""Steps that stop and restart the guest: managedSave, and the restart that is also its undo."""

from __future__ import annotations

import asyncio
import time

import libvirt

from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import Fact
from snaptui.core.engine.runner import Action
from snaptui.core.errors import HypervisorError


def save() -> Action:
    """Save the guest (managedSave); undone by restarting it as it was."""
    return Action(save_guest, restore_guest)


def restart() -> Action:
    """Restart the guest as it was before the job."""
    return Action(restore_guest)


async def save_guest(ctx: JobContext) -> None:
    """`virsh managedsave`: the guest stops here (downtime starts)."""
    dom = ctx.domain()
    ctx.record(Fact.GUEST_STOPPED_AT, time.time())
    # managedSave pauses the vCPUs before it writes the memory; a save that fails and cannot
    # resume them leaves the guest paused, and it is then ours to resume.
    if dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
        ctx.record(Fact.GUEST_PAUSED_BY_US, True)
    try:
        await asyncio.to_thread(dom.managedSave, 0)
    except libvirt.libvirtError as err:
        raise HypervisorError(f"managedsave of {ctx.plan.domain_name} failed: "
                              f"{err.get_error_message()}") from err
    ctx.record(Fact.GUEST_SAVED, True)
    _arm_downtime_guard(ctx)


def _arm_downtime_guard(ctx: JobContext) -> None:
    """With a downtime limit (a Nova instance, --allow-nova-downtime), abort the job (whose
    rollback restarts the guest) once the guest has been down that long."""
    limit = ctx.plan.downtime_limit_s
    stopped = ctx.facts.get(Fact.GUEST_STOPPED_AT)
    if not limit or not stopped:
        return

    def expire() -> None:
        if not ctx.facts.get(Fact.GUEST_RESUMED_AT):
            ctx.request_cancel(f"the guest was down {limit:.0f} s, and Nova stops an instance "
                               "that stays down 15 s: aborted, the guest is restarted")

    left = max(0.0, limit - (time.time() - stopped))
    asyncio.get_running_loop().call_later(left, expire)


def _job_running(dom) -> bool:
    try:
        return dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:  # test:/// driver: no jobs
            return False
        raise


def _wait_domain_job(dom, name: str, timeout: float = 120.0) -> None:
    """Wait while libvirt runs a job on the domain: a managedSave begun by a job process that
    was then killed goes on in libvirtd, and the guest's state only settles when it ends."""
    deadline = time.monotonic() + timeout
    while dom.isActive() and _job_running(dom):
        if time.monotonic() > deadline:
            raise HypervisorError(f"a libvirt job on {name} still runs after {timeout:.0f} s")
        time.sleep(0.1)


def _restore(ctx: JobContext) -> str:
    """Bring the guest back to its original power state; a no-op when it already is there."""
    dom = ctx.domain()
    _wait_domain_job(dom, ctx.plan.domain_name)
    original = ctx.plan.original_state
    state = dom.state()[0]
    if original == "running":
        if state == libvirt.VIR_DOMAIN_PAUSED:
            if not ctx.facts.get(Fact.GUEST_PAUSED_BY_US):
                return "found paused, not by snaptui: left paused"
            dom.resume()
            return "resumed"
        if not dom.isActive():
            if not dom.hasManagedSaveImage(0) and ctx.facts.get(Fact.GUEST_SAVED):
                return NOT_AS_LEFT
            dom.create()  # from the managed save image; without one, it died during the save
            return "restarted"
    elif original == "paused":
        if not dom.isActive():
            if not dom.hasManagedSaveImage(0) and ctx.facts.get(Fact.GUEST_SAVED):
                return NOT_AS_LEFT
            _start_paused(dom)
            return "restarted paused"
    return "already " + original


def _start_paused(dom) -> None:
    """Start from the managed save, paused. libvirt's test driver (the demo) has no
    START_PAUSED: there it starts and is paused at once (its guests run no code)."""
    try:
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    except libvirt.libvirtError as err:
        if err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG or \
                dom.connect().getType().lower() != "test":
            raise
        dom.create()
        dom.suspend()


# Shut off without the managed save the job made: someone started it from the save and shut it
# down since (or discarded the save) on purpose; snaptui does not override that. A guest that
# went down while the save was still running (no save was made: it crashed, or was destroyed
# under it) is started again, as it was before the job.
NOT_AS_LEFT = "found shut off without its managed save (not as snaptui left it): left shut off"


async def restore_guest(ctx: JobContext) -> None:
    """Restart (or leave) the guest as it was before the job; downtime ends here."""
    try:
        outcome = await asyncio.to_thread(_restore, ctx)
    except libvirt.libvirtError as err:
        raise HypervisorError(f"restart of {ctx.plan.domain_name} failed: "
                              f"{err.get_error_message()}") from err
    if ctx.facts.get(Fact.GUEST_STOPPED_AT) and not ctx.facts.get(Fact.GUEST_RESUMED_AT):
        ctx.record(Fact.GUEST_RESUMED_AT, time.time())
    if ctx.facts.get(Fact.GUEST_PAUSED_BY_US) and outcome in ("resumed", "restarted"):
        ctx.forget(Fact.GUEST_PAUSED_BY_US)  # it runs again: a later pause is not ours
    ctx.note(f"guest {outcome}")
