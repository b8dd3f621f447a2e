"""Finish or undo jobs whose process is gone (SIGKILL, host crash, OOM).

Runs at every start of the CLI and the dashboard; cheap when nothing is pending because only
jobs with an active marker are looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from snaptui.core.engine.context import JobContext
from snaptui.core.engine.execute import make_context
from snaptui.core.engine.job_kinds import kind_of, load_plan
from snaptui.core.engine.job_processes import pid_names_job, session_members
from snaptui.core.engine.journal import JobRecord, JournalWriter, load_job
from snaptui.core.engine.liveness import active_dir, clear_active, pid_runs_job
from snaptui.core.engine.locks import DomainLock
from snaptui.core.engine.plan import Plan
from snaptui.core.engine.runner import downtime, rollback
from snaptui.core.engine.states import StepState
from snaptui.core.errors import DomainBusy
from snaptui.core.libvirt.host import LibvirtHost

log = logging.getLogger(__name__)

UNJOURNALED = "; its journal could not be written (it is ended at the next recover)"
STARTUP_GRACE_S = 30.0  # a job whose process has not written its pid yet may still be starting
PROBE_TIMEOUT_S = 5.0  # libvirtd asked once per command; a hung one is not waited on longer
RECOVER_UNDO_RETRY_S = 5.0  # a libvirtd lost mid-rollback: the next command tries again
DOWN_FOR_S = 10.0  # a libvirtd found down is not asked again by this process for this long
_libvirtd_down: dict[str, tuple[float, str]] = {}  # uri -> (when, why), this process's view


def libvirtd_down(uri: str) -> str | None:
    """Why libvirtd at ``uri`` does not answer, or None when it does. Asked with a short
    timeout, and a libvirtd found down is not asked again for DOWN_FOR_S: every command runs
    recover at its start, and none may stall on a libvirtd that is down."""
    seen = _libvirtd_down.get(uri)
    if seen is not None and time.monotonic() - seen[0] < DOWN_FOR_S:
        return seen[1]
    answer: list[str | None] = []

    def probe() -> None:
        try:
            LibvirtHost(uri).connect().close()
            answer.append(None)
        except Exception as err:  # noqa: BLE001 - any failure to connect is the answer
            answer.append(_one_line(err))

    worker = threading.Thread(target=probe, name="libvirtd-probe", daemon=True)
    worker.start()
    worker.join(PROBE_TIMEOUT_S)
    why = answer[0] if answer else f"no answer within {PROBE_TIMEOUT_S:.0f} s"
    if why is not None:
        _libvirtd_down[uri] = (time.monotonic(), why)
    return why


def _recovery_context(plan: Plan, journal: JournalWriter, job: JobRecord) -> JobContext:
    """The context recover undoes in: a short wait for libvirtd, and the undo failures the
    audit log already holds (not audited again)."""
    ctx = make_context(plan, journal, facts=job.facts)
    ctx.undo_retry_s = RECOVER_UNDO_RETRY_S
    ctx.audited_undo_failures = {s.name: s.error or "" for s in job.steps
                                 if s.state == StepState.UNDO_FAILED}
    return ctx


def _skip_if_libvirtd_down(plan: Plan) -> str | None:
    why = libvirtd_down(plan.uri)
    if why is None:
        return None
    return f"skipped: libvirtd at {plan.uri} does not answer ({why}); tried again next time"


def stop_leftovers(job: JobRecord, timeout: float = 10.0) -> None:
    """SIGKILL what the dead job left running in its session (a qemu-img still holding the
    disk's lock would make the guest's restart fail) and wait until it is gone."""
    leader = job.pid
    if not leader:
        return

    def left_by_job() -> list[int]:
        return [pid for pid in session_members(leader) if pid_names_job(pid, job.job_id)]
    deadline = time.monotonic() + timeout
    while (left := left_by_job()):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)


def recover_job(job: JobRecord) -> str:
    """Undo (or, when every step finished, complete) one dead job; returns the outcome.

    ``job`` may be stale (read before the lock was free): the journal is read again under the
    domain lock, and a job that has meanwhile finished, or whose process now runs, is left be.
    """
    job.check_format()
    with _domain_locked(job) as (plan, skipped):
        if skipped:
            return skipped
        job = load_job(job.job_id)
        if job.terminal:
            if not job.undo_failed:
                clear_active(job.job_id)
            return f"skipped: already {job.status}"
        if pid_runs_job(job.pid, job.job_id):
            return "skipped: its process runs"
        return _recover_locked(job, plan)


@contextlib.contextmanager
def _domain_locked(job: JobRecord) -> Iterator[tuple[Plan, str]]:
    """The job's plan with its domain's lock held, and "" ; or, without the lock, why the job
    is skipped (libvirtd down, or a live job holds the domain)."""
    plan = load_plan(job.plan, job.job_id)
    if (down := _skip_if_libvirtd_down(plan)) is not None:
        yield plan, down
        return
    lock = DomainLock(plan.domain_uuid, f"recover {job.job_id}", kind=kind_of(plan).name)
    try:
        lock.acquire(plan.domain_name)
    except DomainBusy:
        yield plan, "skipped: domain is locked by a live job"
        return
    try:
        yield plan, ""
    finally:
        lock.release()


def _recover_locked(job: JobRecord, plan: Plan) -> str:
    """Roll the dead job back. Nothing here waits on the journal being writable (the disk
    may still be full): the undos run, and a journal that took no end keeps the job active
    for the next recover."""
    journal = JournalWriter(job.path)
    ended = False
    problems: list[str] = []
    try:
        journal.try_append("recovering", dead_pid=job.pid)
        stop_leftovers(job)
        ctx = _recovery_context(plan, journal, job)
        kind = kind_of(plan)
        steps = kind.build_steps(plan)
        states = {s.name: s.state for s in job.steps}
        started = [s for s in steps if states.get(s.name, StepState.PENDING) != StepState.PENDING]
        if started and all(states.get(s.name) == StepState.DONE for s in steps):
            ended = journal.try_append("done", recovered=True, **kind.summarize(ctx))
            return "completed" + ("" if ended else UNJOURNALED)
        problems = asyncio.run(rollback(ctx, started))
        dead_in = next((s.name for s in reversed(started)), None)
        error = (f"job process {job.pid or '?'} died"
                 + (f" during {dead_in}" if dead_in else " before starting")
                 + "; rolled back by recover")
        extra: dict[str, Any] = {"undo_problems": problems} if problems else {}
        ended = journal.try_append("failed", error=error, recovered=True,
                                   downtime_s=downtime(ctx), **extra)
        return ("rolled back" + (f" with problems: {'; '.join(problems)}" if problems else "")
                + ("" if ended else UNJOURNALED))
    finally:
        journal.close()
        if ended and not problems:
            clear_active(job.job_id)


def retry_failed_undos(job: JobRecord) -> str:
    """Run again the undos that failed when the job ended (they are idempotent), under the
    domain lock and from the journal as it is then (another recover may have done it)."""
    with _domain_locked(job) as (plan, skipped):
        if skipped:
            return skipped
        job = load_job(job.job_id)
        failed_names = {s.name for s in job.steps if s.state == StepState.UNDO_FAILED}
        if not failed_names:
            clear_active(job.job_id)
            return "skipped: no failed undo left"
        journal = JournalWriter(job.path)
        try:
            ctx = _recovery_context(plan, journal, job)
            steps = [s for s in kind_of(plan).build_steps(plan) if s.name in failed_names]
            problems = asyncio.run(rollback(ctx, steps))
        finally:
            journal.close()
    if problems:
        return "undo still failing: " + "; ".join(problems)
    clear_active(job.job_id)
    return "finished the undo that had failed"


def recover(now: float | None = None) -> list[tuple[str, str]]:
    """Recover every dead job; returns (job id, outcome) for each one acted on. Each job on
    its own: whatever goes wrong with one (an unreadable journal, libvirtd gone) is its
    outcome, and the next job is still recovered."""
    now = now or time.time()
    outcomes = []
    for marker in sorted(active_dir().iterdir()):
        job_id = marker.name
        try:
            outcome = _recover_marker(job_id, now)
        except Exception as err:  # one bad job never blocks another's rollback
            log.debug("recovering job %s failed", job_id, exc_info=True)
            outcome = f"skipped: {_one_line(err)}"
        if outcome is None:
            continue
        outcomes.append((job_id, outcome))  # the CLI prints them, the dashboard logs them
    return outcomes


def _one_line(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return " ".join(str(err).split()) or type(err).__name__


def _recover_marker(job_id: str, now: float) -> str | None:
    try:
        job = load_job(job_id)
    except FileNotFoundError:
        (active_dir() / job_id).unlink(missing_ok=True)
        return None
    return _recover_one(job, now)


def _recover_one(job: JobRecord, now: float) -> str | None:
    """What recover did for this job, or None when it needs nothing (yet)."""
    if job.terminal:
        if job.undo_failed:
            return retry_failed_undos(job)
        clear_active(job.job_id)
        return None
    if pid_runs_job(job.pid, job.job_id):
        return None
    if job.pid is None and job.started and now - job.started < STARTUP_GRACE_S:
        return None
    return recover_job(job)
