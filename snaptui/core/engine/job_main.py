"""Entry point of a detached job process: ``python -m snaptui.core.engine.job_main JOB_ID``.

Runs in its own session (no controlling terminal), ignores SIGHUP, and turns SIGTERM/SIGINT
into a cancel with rollback. Holds the domain lock for its whole life.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

from snaptui.core.engine.execute import execute, make_context
from snaptui.core.engine.job_kinds import kind_of, load_plan
from snaptui.core.engine.journal import JournalWriter, check_job_id, journal_path, load_job
from snaptui.core.engine.liveness import close_job
from snaptui.core.engine.locks import DomainLock
from snaptui.core.engine.neighbour import lower_job_priority
from snaptui.core.engine.plan import Plan
from snaptui.core.engine.reservations import release
from snaptui.core.errors import BadInput, DomainBusy, SnaptuiError


async def _run(ctx) -> bool:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ctx.request_cancel)
    return await execute(ctx)


def _wait_for_start(job_id: str) -> tuple[bool, str | None]:
    """``JOB_ID --wait`` (jobs.JobProcess): wait for the launcher's go, a JSON line with its
    auth state (or null). (False, None): the launcher gave up (EOF), there is no job to run
    (its empty log is removed)."""
    from snaptui.core.engine.jobs import job_log_path

    line = sys.stdin.readline()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if not line.strip():
        log_file = job_log_path(job_id)
        if log_file.exists() and log_file.stat().st_size == 0:
            log_file.unlink(missing_ok=True)
        return False, None
    auth_state = json.loads(line)
    return True, auth_state if isinstance(auth_state, str) else None


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        job_id = check_job_id(argv[1] if len(argv) > 1 else "")
    except BadInput as err:
        print(f"job_main: {err}", file=sys.stderr)
        return 2
    auth_state = None
    if argv[2:] == ["--wait"]:
        go, auth_state = _wait_for_start(job_id)
        if not go:
            return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        job = load_job(job_id)
        job.check_format()
        plan = load_plan(job.plan, job_id)
    except (OSError, SnaptuiError) as err:
        print(f"job_main: {err}", file=sys.stderr)
        return 2
    if job.terminal:  # recover declared it dead before this process got going
        print(f"job_main: job {job_id} already {job.status}; nothing to run", file=sys.stderr)
        release(job_id)
        return 0
    # Before any thread or child exists: they all inherit it (core/priority.py).
    priority_note = lower_job_priority(plan)
    try:
        return _locked_run(job_id, plan, auth_state, priority_note)
    finally:
        release(job_id)  # the job's scratch reservation (core/engine/reservations.py)


def _locked_run(job_id: str, plan: Plan, auth_state: str | None, priority_note: str) -> int:
    lock = DomainLock(plan.domain_uuid, job_id, kind=kind_of(plan).name)
    try:
        lock.acquire(plan.domain_name)
    except DomainBusy as err:
        return _not_started(job_id, str(err))
    try:
        if load_job(job_id).terminal:  # recover finished it while we waited for the lock
            print(f"job_main: job {job_id} already finished; nothing to run", file=sys.stderr)
            return 0
        journal = JournalWriter(journal_path(job_id))
        journal.append("pid", pid=os.getpid())
        journal.append("note", text=priority_note)
        try:
            ok = asyncio.run(_run(make_context(plan, journal, auth_state=auth_state)))
        finally:
            close_job(job_id, journal)
    finally:
        lock.release()
    return 0 if ok else 1


def _not_started(job_id: str, why: str) -> int:
    """The domain is locked: by recover rolling back this very job (it writes the end), or by
    another job (then this one fails, touching nothing)."""
    if load_job(job_id).terminal or f"recover {job_id}" in why:
        print(f"job_main: job {job_id} is being recovered; nothing to run", file=sys.stderr)
        return 0
    journal = JournalWriter(journal_path(job_id))
    journal.append("failed", error=why)
    close_job(job_id, journal)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
