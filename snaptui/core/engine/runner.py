"""Runs a workflow's steps in order; on failure or cancel, undoes the started ones in reverse.

The runner, not the workflows, owns ordering, cancellation, rollback, journaling and timing.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from snaptui.core import audit
from snaptui.core.engine.context import JobCancelled, JobContext
from snaptui.core.engine.facts import DiskFact, Fact
from snaptui.core.errors import SnaptuiError

log = logging.getLogger(__name__)

StepFn = Callable[[JobContext], Awaitable[None]]


@dataclass(frozen=True)
class Action:
    """What every step factory returns: how to run the step and how to undo it; for a step
    that runs one subprocess, the argv it runs (shown as is by --dry-run)."""

    run: StepFn
    undo: StepFn | None = None
    argv: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Step:
    """One runbook line: what it does, how it is undone, whether it may be interrupted."""

    name: str
    title: str
    action: Action
    interruptible: bool = True  # False: a blocking libvirt call that must finish once begun
    # Audited: it changes something outside snaptui's scratch dir (the guest's state, its disk
    # file or block jobs, the image store, or a file the operator named).
    destructive: bool = False
    target: str | None = None  # the disk it works on; None: the whole guest
    equivalent: tuple[str, ...] = ()  # by-hand command of an API call, for --dry-run

    @property
    def run(self) -> StepFn:
        return self.action.run

    @property
    def undo(self) -> StepFn | None:
        return self.action.undo

    @property
    def command(self) -> str:
        """The command --dry-run prints: the argv the step runs, else its by-hand equivalent."""
        argv = self.action.argv or self.equivalent
        return shlex.join(argv) if argv else ""


def _audit(ctx: JobContext, step: Step, result: str, *, undo: bool = False,
           error: str | None = None) -> None:
    """One audit record for a destructive step (or its undo): what, on which domain/disk/image."""
    if not step.destructive:
        return
    disk = step.target
    plans = [d for d in ctx.plan.disks if disk is None or d.target == disk]
    audit.record(
        f"undo:{step.name}" if undo else step.name, ctx.plan.domain_name, result,
        step=step.title, job_id=ctx.plan.job_id, domain_uuid=ctx.plan.domain_uuid,
        disk=disk or ",".join(d.target for d in plans),
        image_name=",".join(d.image_name for d in plans),
        image=",".join(str(i) for d in plans if (i := ctx.facts.get(DiskFact.IMAGE.of(d.target))))
        or None,
        mode=str(ctx.plan.mode), error=error,
    )


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, SnaptuiError):
        return str(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _run_step(ctx: JobContext, step: Step) -> None:
    if not step.interruptible:
        await step.run(ctx)
        return
    task = asyncio.ensure_future(step.run(ctx))
    waiter = asyncio.ensure_future(ctx.cancel_event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not task.done():
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, JobCancelled):
            pass
        except Exception:  # the step's own cleanup failed while stopping; rollback follows
            log.exception("step %s raised while being cancelled", step.name)
        raise JobCancelled("cancelled by the operator")
    task.result()


LIBVIRT_LOST = ("Cannot write data", "Broken pipe", "End of file while reading",
                "socket is closed", "Failed to connect socket", "client socket is closed")
UNDO_RETRY_S = 45.0


def _connection_lost(exc: BaseException) -> bool:
    text = str(exc)
    return any(marker in text for marker in LIBVIRT_LOST)


async def _undo(ctx: JobContext, step: Step) -> None:
    """Run one undo; while libvirtd is restarting, reconnect and try again (undo is idempotent)."""
    assert step.undo is not None
    deadline = time.monotonic() + (UNDO_RETRY_S if ctx.undo_retry_s is None
                                   else ctx.undo_retry_s)
    delay = 0.5
    while True:
        try:
            await step.undo(ctx)
            return
        except Exception as exc:
            if not _connection_lost(exc) or time.monotonic() > deadline:
                raise
            log.warning("undo of %s lost libvirtd (%s); retrying", step.name, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            await asyncio.to_thread(ctx.reconnect_host)


async def rollback(ctx: JobContext, started: Sequence[Step]) -> list[str]:
    """Undo started steps in reverse; every undo runs even if an earlier one fails, and even
    when the journal cannot be written (a full disk): the guest's restart never waits on it.
    What could not be journaled is redone by ``recover`` later (every undo is idempotent)."""
    problems = []
    journal = ctx.journal
    ctx.undoing = True
    try:
        for step in reversed(started):
            if step.undo is None:
                continue
            ctx.current_step = step.name
            journal.try_append("undo_started", step=step.name)
            failed_before = ctx.audited_undo_failures.get(step.name)
            if failed_before is None:  # a retry of an audited failure is no news yet
                _audit(ctx, step, "started", undo=True)
            try:
                await _undo(ctx, step)
            except Exception as exc:  # keep undoing: the guest's restart is the most vital
                message = describe_error(exc)
                problems.append(f"{step.name}: {message}")
                journal.try_append("undo_failed", step=step.name, error=message)
                if message != failed_before:
                    _audit(ctx, step, "failed", undo=True, error=message)
                log.exception("undo of %s failed", step.name)
            else:
                journal.try_append("step_undone", step=step.name)
                _audit(ctx, step, "undone", undo=True)
    finally:
        ctx.undoing = False
    return problems


async def run_steps(ctx: JobContext, steps: Sequence[Step],
                    finish: Callable[[JobContext], dict[str, Any]]) -> bool:
    """Run ``steps``; journal ``done`` with ``finish(ctx)`` or roll back. True on success."""
    ctx._loop = asyncio.get_running_loop()
    ctx.cancel_event  # bind the asyncio event to this loop  # noqa: B018
    started: list[Step] = []
    try:
        for step in steps:
            ctx.check_cancel()
            ctx.current_step = step.name
            started.append(step)
            ctx.journal.append("step_started", step=step.name)
            _audit(ctx, step, "started")
            t0 = time.monotonic()
            await _run_step(ctx, step)
            ctx.journal.append("step_finished", step=step.name,
                               seconds=round(time.monotonic() - t0, 3))
            _audit(ctx, step, "ok")
        ctx.check_cancel()
    except BaseException as exc:  # noqa: BLE001 - every way out must roll back
        cancelled = ctx.cancel_flag.is_set() or isinstance(
            exc, JobCancelled | asyncio.CancelledError | KeyboardInterrupt)
        message = (ctx.cancel_reason or "cancelled by the operator") if cancelled \
            else describe_error(exc)
        if ctx.current_step is not None:  # a full disk may refuse it: the undo runs anyway
            ctx.journal.try_append("step_failed", step=ctx.current_step, error=message)
            if started and started[-1].name == ctx.current_step:
                _audit(ctx, started[-1], "failed", error=message)
        problems = await asyncio.shield(rollback(ctx, started))
        extra: dict[str, Any] = {"undo_problems": problems} if problems else {}
        by_operator = cancelled and ctx.cancel_reason is None
        # Unwritten, the job stays active and recover ends it (its undos are idempotent).
        ctx.journal.try_append("cancelled" if by_operator else "failed", error=message,
                               downtime_s=downtime(ctx), **extra)
        if not isinstance(exc, Exception | asyncio.CancelledError):
            raise
        return False
    ctx.current_step = None
    ctx.journal.append("done", **finish(ctx))
    return True


def downtime(ctx: JobContext) -> float | None:
    stopped = ctx.facts.get(Fact.GUEST_STOPPED_AT)
    if stopped is None:
        return None
    resumed = ctx.facts.get(Fact.GUEST_RESUMED_AT) or time.time()
    return round(max(0.0, resumed - stopped), 3)
