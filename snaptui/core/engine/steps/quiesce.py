"""Freezing the guest's filesystems through its agent (``--quiesce auto|require|off``).

Every mode freezes the same way: live around the block copy's abort, backup around
``backup-begin`` (as virtnbdbackup does), cold and internal before the managed save (thawed
after the restore). Three rules keep a hung or dead agent from leaving the guest frozen:

- the fact ``frozen`` is journaled *before* the freeze is asked for, so every way out (an
  error, a cancel, a SIGKILL then ``recover``) runs a thaw;
- the agent's response timeout is set to ``FREEZE_TIMEOUT_S`` for the freeze and the thaw, so
  neither call blocks for ever on a hung agent;
- a thaw is retried for ``THAW_RETRY_S`` while the agent does not answer, and the fact is only
  forgotten once a thaw succeeded (or the agent is not there at all, so nothing can be frozen).
"""

from __future__ import annotations

import asyncio
import json
import time

import libvirt

from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import Fact
from snaptui.core.engine.runner import Action
from snaptui.core.errors import HypervisorError

FREEZE_TIMEOUT_S = 10  # the agent's response timeout during a freeze or a thaw
THAW_RETRY_S = 60.0  # how long a thaw is tried again while the agent does not answer
PING_TIMEOUT_S = 3
# libvirt's words when no agent can be reached at all (none configured, not connected, the
# guest paused or stopped): nothing was sent, nothing can be frozen
NO_AGENT = ("not configured", "not connected", "domain is not running")


def _message(err: libvirt.libvirtError) -> str:
    return " ".join((err.get_error_message() or str(err)).split())


def agent_answers(dom: libvirt.virDomain, timeout: int = PING_TIMEOUT_S) -> str | None:
    """None when the guest agent answers ``guest-ping`` within ``timeout`` s, else why not."""
    import libvirt_qemu

    try:
        libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-ping"}), timeout, 0)
    except libvirt.libvirtError as err:
        return _message(err)
    return None


def _set_timeout(dom, seconds: int) -> None:
    try:
        dom.agentSetResponseTimeout(seconds, 0)
    except (libvirt.libvirtError, AttributeError):
        pass  # an older libvirt, or the test driver: the call's own default applies


def freeze() -> Action:
    """Freeze the guest's filesystems (as ``--quiesce`` says); undone by thawing them."""
    return Action(freeze_guest, thaw_guest)


def thaw() -> Action:
    return Action(thaw_guest)


async def freeze_guest(ctx: JobContext) -> None:
    """Freeze through the agent. ``auto``: a refusal leaves a crash-consistent image (noted);
    ``require``: it fails the step; ``off``: nothing is asked."""
    quiesce = ctx.plan.quiesce
    if quiesce == "off":
        ctx.note("--quiesce off: filesystems not frozen; image is crash-consistent")
        return
    dom = ctx.domain()
    if (await asyncio.to_thread(dom.state))[0] != libvirt.VIR_DOMAIN_RUNNING:
        if quiesce == "require":
            raise HypervisorError("--quiesce require: the guest is not running, its agent "
                                  "cannot freeze")
        ctx.note("filesystems not frozen (the guest is not running); image is crash-consistent")
        return
    ctx.record(Fact.FROZEN, True)  # before asking: a freeze that lands late is thawed too
    t0 = time.monotonic()
    try:
        await asyncio.to_thread(_freeze_call, dom)
    except libvirt.libvirtError as err:
        why = _message(err)
        await _settle_failed_freeze(ctx, why)
        if quiesce == "require":
            raise HypervisorError(f"freeze of guest filesystems failed (guest agent: {why}); "
                                  "--quiesce require stops here") from err
        ctx.note(f"filesystems not frozen (guest agent: {why}); image is crash-consistent")
        return
    ctx.record(Fact.FROZEN_AT, time.time())
    ctx.note(f"filesystems frozen in {time.monotonic() - t0:.2f} s")


def _freeze_call(dom) -> int:
    _set_timeout(dom, FREEZE_TIMEOUT_S)  # kept for the thaw; reset by it (or here on failure)
    try:
        return dom.fsFreeze(None, 0)
    except libvirt.libvirtError:
        _set_timeout(dom, libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT)
        raise


async def _settle_failed_freeze(ctx: JobContext, why: str) -> None:
    """After a failed freeze: no agent at all means nothing is frozen; a timeout may mean the
    freeze still lands, so a thaw is sent at once (and the fact kept while it fails)."""
    if any(marker in why for marker in NO_AGENT):
        ctx.forget(Fact.FROZEN)
        return
    try:
        await asyncio.to_thread(_thaw_call, ctx.domain())
    except libvirt.libvirtError as err:
        if any(marker in _message(err) for marker in NO_AGENT):
            ctx.forget(Fact.FROZEN)
        else:
            ctx.note(f"thaw after the failed freeze failed too ({_message(err)}); "
                     "it is tried again when the job ends")
        return
    ctx.forget(Fact.FROZEN)


def _thaw_call(dom) -> int:
    _set_timeout(dom, FREEZE_TIMEOUT_S)
    try:
        return dom.fsThaw(None, 0)
    finally:
        _set_timeout(dom, libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT)


async def thaw_guest(ctx: JobContext) -> None:
    """Thaw when a freeze may have happened; retried while the agent does not answer. Also the
    undo of the freeze (idempotent: nothing to do once the fact is gone)."""
    if not ctx.facts.get(Fact.FROZEN):
        return
    deadline = time.monotonic() + THAW_RETRY_S
    while True:
        try:
            await asyncio.to_thread(_thaw_call, ctx.domain())
            break
        except libvirt.libvirtError as err:
            why = _message(err)
            if any(marker in why for marker in NO_AGENT) and not ctx.facts.get(Fact.FROZEN_AT):
                break  # the freeze never got through, and no agent is there to freeze later
            if time.monotonic() > deadline or not _unresponsive(err):
                raise HypervisorError(f"thaw of guest filesystems: {why}") from err
            ctx.note(f"thaw: guest agent not answering ({why}); trying again")
            await asyncio.sleep(1.0)
    frozen_at = ctx.facts.get(Fact.FROZEN_AT)
    if frozen_at:
        ctx.note(f"filesystems thawed after {time.time() - frozen_at:.2f} s frozen")
    ctx.forget(Fact.FROZEN)
    ctx.forget(Fact.FROZEN_AT)


def _unresponsive(err: libvirt.libvirtError) -> bool:
    code = err.get_error_code()
    return code in (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_ERR_OPERATION_TIMEOUT,
                    libvirt.VIR_ERR_AGENT_UNSYNCED) or "not responding" in _message(err)
