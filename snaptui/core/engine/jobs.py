"""Start, list, follow and cancel jobs. A job runs detached in its own process session.

The launcher writes the journal header (plan, steps) and spawns ``python -m
snaptui.core.engine.job_main JOB_ID`` with a new session, so a dropped SSH connection or a
closed dashboard does not stop it. ``run_inline`` runs a job in a thread of this process,
for the in-process ``test:///`` driver of the demo lab.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from snaptui.core.engine.execute import StepsWrapper, SummaryWrapper, execute, make_context
from snaptui.core.engine.job_kinds import kind_of
from snaptui.core.engine.job_processes import job_main_argv
from snaptui.core.engine.journal import (
    JOURNAL_FORMAT,
    TERMINAL_EVENTS,
    JobRecord,
    JournalWriter,
    iter_jobs,
    jobs_dir,
    journal_path,
    load_job,
    open_regular,
    parse_line,
)
from snaptui.core.engine.liveness import INLINE, close_job, mark_active, pid_runs_job
from snaptui.core.engine.locks import DomainLock
from snaptui.core.engine.plan import Plan, SnapshotRequest
from snaptui.core.engine.preflight.checks import preflight
from snaptui.core.engine.recover import recover_job
from snaptui.core.engine.reservations import release as release_reservation
from snaptui.core.engine.runner import Step
from snaptui.core.engine.workflows import build_steps
from snaptui.core.errors import BadInput, DomainBusy, NotFound, SnaptuiError
from snaptui.core.fleet.hosts import refuse_remote_disks
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt.host import LibvirtHost, default_uri
from snaptui.core.priority import DEFAULT_PRIORITY, spawn_prefix


async def prepare(request: SnapshotRequest, host: LibvirtHost | None = None,
                  store: ImageStore | None = None) -> tuple[Plan, list[Step]]:
    """Preflight the request (nothing touched, no scratch reserved) and list the steps it
    would run."""
    plan, steps, _ = await prepare_with_store(request, host, store, hold_scratch=False)
    return plan, steps


async def prepare_with_store(request: SnapshotRequest, host: LibvirtHost | None = None,
                             store: ImageStore | None = None, *, job_id: str | None = None,
                             hold_scratch: bool = True) -> tuple[Plan, list[Step], ImageStore]:
    """``prepare`` (for job ``job_id``, see JobProcess), also returning the image store the
    preflight checked (authenticated); the job's scratch stays reserved (``hold_scratch``)
    until it ends, or until the process that prepared it exits without launching it."""
    refuse_remote_disks(default_uri(request.uri) if host is None else host.uri)
    own_host = host is None
    host = host or LibvirtHost(request.uri).connect()
    try:
        plan, checked = await preflight(request, host, store, job_id=job_id,
                                        hold_scratch=hold_scratch)
    finally:
        if own_host:
            host.close()
    return plan, build_steps(plan), checked


def write_header(plan: Plan, request: SnapshotRequest, steps: list[Step]) -> JournalWriter:
    journal = JournalWriter(journal_path(plan.job_id))
    journal.append(
        "job", format=JOURNAL_FORMAT, job_id=plan.job_id, plan=plan.to_json(),
        request=request.to_json(),
        steps=[{"name": s.name, "title": s.title, "command": s.command} for s in steps],
        launcher_pid=os.getpid(),
    )
    if plan.mode_reason:
        journal.append("note", text=plan.mode_reason)
    for note in plan.notes:  # preflight's warnings (a Nova instance, its downtime limit)
        journal.append("note", text=note)
    mark_active(plan.job_id)
    return journal




class JobProcess:
    """The detached process (own session, SIGHUP ignored) of job ``job_id``, started before
    the job exists and waiting on a pipe until ``start``.

    Started before the preflight, it imports while the preflight runs. Its argv names the job
    from the start, so ``pid_runs_job`` and cleanup know it. ``start`` hands it the launcher's
    Keystone auth state (token and catalog) when there is one, so the job need not log in
    again; that secret goes through the pipe only, never into a file or argv. ``discard`` (or
    this process ending) closes the pipe: an unused process exits, no journal ever named it."""

    def __init__(self, job_id: str, priority: str = DEFAULT_PRIORITY) -> None:
        self.job_id = job_id
        # Its output goes to the job's log from the start (an import error is kept); an unused
        # process removes the empty log again.
        fd = os.open(job_log_path(job_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603
                # at the job's priority from its first instruction (core/priority.py)
                [*spawn_prefix(priority), *job_main_argv(job_id, "--wait")],
                stdin=subprocess.PIPE, stdout=fd, stderr=fd,
                start_new_session=True, close_fds=True,
            )
        finally:
            os.close(fd)

    def start(self, auth_state: str | None = None) -> bool:
        """Let the job run; False when the process is gone (then start a fresh one)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.stdin is None or proc.poll() is not None:
            return False
        try:
            proc.stdin.write(f"{json.dumps(auth_state)}\n".encode())
            proc.stdin.close()
        except OSError:
            return False
        return True

    def discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # still importing: it exits on its own
                pass


def launch(plan: Plan, request: SnapshotRequest, steps: list[Step],
           process: JobProcess | None = None, *, auth_state: str | None = None) -> str:
    """Write the journal header and let the job's detached process run it (the one started
    early for this job id, or a fresh one); returns the job id."""
    try:
        write_header(plan, request, steps).close()
        if process is not None and process.job_id == plan.job_id and process.start(auth_state):
            return plan.job_id
        if not JobProcess(plan.job_id, plan.priority).start(auth_state):
            raise SnaptuiError(f"job {plan.job_id}: the job process did not start")
    except BaseException:
        release_reservation(plan.job_id)  # a long-lived launcher (the dashboard) holds none
        raise
    return plan.job_id


def store_auth_state(store: ImageStore) -> str | None:
    """The login a launched job resumes (a Glance store's Keystone auth state), if any."""
    auth_state = getattr(store, "auth_state", None)
    return auth_state() if callable(auth_state) else None


def job_log_path(job_id: str) -> Path:
    """The job process's own log (stdout/stderr) beside its journal."""
    return jobs_dir() / f"{job_id}.log"


def run_inline(plan: Plan, request: SnapshotRequest, steps: list[Step], *,
               host: LibvirtHost, store: ImageStore | None = None,
               wrap_steps: StepsWrapper | None = None,
               wrap_summary: SummaryWrapper | None = None) -> str:
    """Run the job in a background thread of this process (demo's test:/// driver);
    ``wrap_steps`` changes how its steps run (the demo paces them like a real host)."""
    journal = write_header(plan, request, steps)
    ctx = make_context(plan, journal, host=host, store=store)
    INLINE[plan.job_id] = ctx

    def worker() -> None:
        lock = DomainLock(plan.domain_uuid, plan.job_id, kind=kind_of(plan).name)
        try:
            lock.acquire(plan.domain_name)
        except DomainBusy as err:
            journal.append("failed", error=str(err))
            close_job(plan.job_id, journal)
            release_reservation(plan.job_id)
            return
        journal.append("pid", pid=os.getpid(), inline=True)
        try:
            asyncio.run(execute(ctx, wrap_steps=wrap_steps, wrap_summary=wrap_summary))
        finally:
            lock.release()
            close_job(plan.job_id, journal)
            release_reservation(plan.job_id)

    threading.Thread(target=worker, name=f"job-{plan.job_id}", daemon=True).start()
    return plan.job_id


def list_jobs() -> list[JobRecord]:
    return list(iter_jobs())


def get_job(job_id: str) -> JobRecord:
    if not journal_path(job_id).exists():
        raise NotFound(f"no such job: {job_id}")
    job = load_job(job_id)
    job.check_format()
    return job


def cancel_job(job_id: str) -> str:
    """Ask a running job to stop and roll back; returns what was done."""
    job = get_job(job_id)
    if job.terminal:
        raise BadInput(f"job {job_id} already ended ({job.status})")
    if job_id in INLINE:
        INLINE[job_id].request_cancel()
        return "cancel requested"
    if pid_runs_job(job.pid, job_id):
        os.kill(job.pid, signal.SIGTERM)  # type: ignore[arg-type]
        return "cancel requested"
    return recover_job(job)


def follow(job_id: str, *, poll_s: float = 0.1, timeout_s: float | None = None,
           stop: threading.Event | None = None,
           liveness_s: float = 2.0) -> Iterator[dict[str, Any]]:
    """Yield the job's journal events as they are written, until a terminal event.

    When nothing is written for ``liveness_s`` and the job's process is gone, yields a
    synthetic ``{"event": "lost"}`` and stops (the caller may then run recover).
    """
    path = journal_path(job_id)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    pid: int | None = None
    quiet_since = time.monotonic()
    with open_regular(path) as handle:  # bytes: a line torn inside a character is skipped
        pending = b""
        while True:
            chunk = handle.readline()
            if chunk:
                quiet_since = time.monotonic()
                pending += chunk
                if not pending.endswith(b"\n"):
                    continue
                line, pending = pending, b""
                event = parse_line(line)
                if event is None:
                    continue
                if event.get("event") == "pid":
                    pid = event.get("pid")
                yield event
                if event.get("event") in TERMINAL_EVENTS:
                    return
                continue
            if time.monotonic() - quiet_since > liveness_s:
                quiet_since = time.monotonic()
                started = get_job(job_id)
                if not started.terminal and (pid or started.pid) and not pid_runs_job(
                        pid or started.pid, job_id):
                    yield {"event": "lost", "pid": pid or started.pid}
                    return
            if stop is not None and stop.is_set():
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(poll_s)
