"""``snaptui jobs``, ``snaptui cancel JOB`` and ``snaptui recover`` (on every host: cli/fleet.py).

A job on an SSH host is named ``HOST:JOB`` (or ``--host NAME JOB``); ``jobs --follow JOB``
streams a job's events until it ends (how the other side re-attaches after a lost connection).
"""

from __future__ import annotations

import argparse

from rich.text import Text

from snaptui.cli import fleet
from snaptui.cli.output import line, note, print_json, print_table, table
from snaptui.core.engine.jobs import cancel_job, list_jobs
from snaptui.core.engine.recover import recover
from snaptui.core.engine.states import look
from snaptui.core.present import duration_text, local_time_text


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("jobs", help="list jobs (snapshots, restores) from the journal")
    common(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--follow", metavar="JOB",
                   help="stream JOB's events (from its start) until it ends ([HOST:]JOB)")
    p.add_argument("--host", metavar="NAME", help="the host of --follow's JOB")
    p.set_defaults(handler=run_jobs)
    p = sub.add_parser("cancel", help="cancel a running job (it rolls back)")
    common(p)
    p.add_argument("job_id", metavar="[HOST:]JOB")
    p.add_argument("--host", metavar="NAME", help="the host the job runs on")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_cancel)
    p = sub.add_parser("recover", help="finish or undo jobs whose process is gone")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_recover)


def run_jobs(args: argparse.Namespace) -> int:
    if args.follow:
        return _run_follow(args)
    hosts = fleet.hosts_of(args)
    if fleet.is_fleet(hosts):
        return fleet.run_jobs_fleet(args, hosts)
    jobs = list_jobs()
    if args.json:
        print_json([j.to_json() for j in jobs])
        return 0
    rows = table("job", "domain", "mode", "status", "started", "downtime", "image")
    for job in jobs:
        started = local_time_text(job.started)
        down = duration_text(job.downtime_s)
        glyph, style = look(job.status)
        rows.add_row(job.job_id, job.domain, job.mode, Text(f"{glyph} {job.status}", style=style),
                     started, down,
                      str(job.request.get("name", "")))
    print_table(rows)
    return 0


def _run_follow(args: argparse.Namespace) -> int:
    host, job_id = fleet.job_host(args, args.follow)
    if host is not None:
        from snaptui.cli.remote_snapshot import RemoteFollower
        from snaptui.core.fleet.remote_jobs import follow_remote_job

        follower = RemoteFollower(host, args.json)
        follower.feed.job_id = job_id
        return follower.run(follow_remote_job(host, job_id))
    from snaptui.cli.job_view import follow_json, follow_rich
    from snaptui.core.engine.jobs import get_job

    get_job(job_id)  # one line when there is no such job
    return follow_json(job_id) if args.json else follow_rich(job_id)


def run_cancel(args: argparse.Namespace) -> int:
    host, job_id = fleet.job_host(args, args.job_id)
    if host is not None:
        from snaptui.core.fleet.remote_jobs import cancel_remote_job

        outcome = cancel_remote_job(host, job_id)
        job_id = f"{host.name}:{job_id}"
    else:
        outcome = cancel_job(job_id)
    if args.json:
        print_json([{"job_id": job_id, "outcome": outcome}])
    else:
        line(f"job {job_id}: {outcome}")
    return 0


def run_recover(args: argparse.Namespace) -> int:
    hosts = fleet.hosts_of(args)
    if fleet.is_fleet(hosts):
        return fleet.run_recover_fleet(args, hosts)
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
