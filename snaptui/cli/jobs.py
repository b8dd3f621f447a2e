"""``snaptui jobs``, ``snaptui cancel JOB`` and ``snaptui recover``."""

from __future__ import annotations

import argparse
import time

from rich.text import Text

from snaptui.cli.output import line, note, print_json, print_table, table
from snaptui.core.engine.jobs import cancel_job, list_jobs
from snaptui.core.engine.recover import recover
from snaptui.core.engine.states import look


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("jobs", help="list snapshot jobs from the journal")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_jobs)
    p = sub.add_parser("cancel", help="cancel a running job (it rolls back)")
    common(p)
    p.add_argument("job_id")
    p.set_defaults(handler=run_cancel)
    p = sub.add_parser("recover", help="finish or undo jobs whose process is gone")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_recover)


def run_jobs(args: argparse.Namespace) -> int:
    jobs = list_jobs()
    if args.json:
        print_json([j.to_json() for j in jobs])
        return 0
    rows = table("job", "domain", "mode", "status", "started", "downtime", "image")
    for job in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.started or 0))
        down = f"{job.downtime_s:.2f} s" if job.downtime_s is not None else "-"
        glyph, style = look(job.status)
        rows.add_row(job.job_id, job.domain, job.mode, Text(f"{glyph} {job.status}", style=style),
                     started, down,
                      str(job.request.get("name", "")))
    print_table(rows)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    line(f"job {args.job_id}: {cancel_job(args.job_id)}")
    return 0


def run_recover(args: argparse.Namespace) -> int:
    # cli.main already ran recover() once at start; run again for what appeared since.
    outcomes = recover()
    if args.json:
        print_json([{"job_id": j, "outcome": o} for j, o in outcomes])
    else:
        for job_id, outcome in outcomes:
            line(f"{job_id}: {outcome}")
        if not outcomes:
            note("nothing to recover")
    return 0
