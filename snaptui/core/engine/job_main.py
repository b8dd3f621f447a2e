"""Entry point of a detached job process: ``python -m snaptui.core.engine.job_main JOB_ID``.

Runs in its own session (no controlling terminal), ignores SIGHUP, and turns SIGTERM/SIGINT
into a cancel with rollback. Holds the domain lock for its whole life.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from snaptui.core.engine.execute import execute, make_context
from snaptui.core.engine.jobs import close_job
from snaptui.core.engine.journal import JournalWriter, journal_path, load_job
from snaptui.core.engine.locks import DomainLock
from snaptui.core.engine.plan import Plan
from snaptui.core.errors import BadInput


async def _run(ctx) -> bool:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ctx.request_cancel)
    return await execute(ctx)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    job_id = argv[1]
    job = load_job(job_id)
    plan = Plan.from_json(job.plan)
    journal = JournalWriter(journal_path(job_id))
    lock = DomainLock(plan.domain_uuid, job_id)
    try:
        lock.acquire(plan.domain_name)
    except BadInput as err:
        journal.append("failed", error=str(err))
        close_job(job_id, journal)
        return 1
    journal.append("pid", pid=os.getpid())
    try:
        ok = asyncio.run(_run(make_context(plan, journal)))
    finally:
        lock.release()
        close_job(job_id, journal)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
