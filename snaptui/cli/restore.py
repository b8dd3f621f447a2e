"""``snaptui restore``: put an image back on a guest's disk (or undo that, or start a new guest
from an image) as a detached, journaled job, and follow it to the end."""

from __future__ import annotations

import argparse
import asyncio
import sys

from snaptui.cli import output
from snaptui.cli.job_view import events, follow_json, print_outcome, render_job
from snaptui.core.engine.jobs import JobProcess, store_auth_state
from snaptui.core.engine.journal import load_job
from snaptui.core.engine.preflight.checks import new_job_id
from snaptui.core.engine.runner import Step
from snaptui.core.errors import BadInput
from snaptui.core.present import parse_duration
from snaptui.core.restore import RestorePlan, RestoreRequest, launch, prepare
from snaptui.core.restore.describe import confirmation
from snaptui.core.restore.plan import DEFAULT_SHUTDOWN_TIMEOUT_S


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("restore", help="put an image back on a guest's disk, undo that, or "
                       "start a new guest from an image")
    common(p)
    p.add_argument("image", nargs="?", help="image id or name (Glance or the library)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--domain", metavar="NAME", help="the guest whose disk is replaced")
    target.add_argument("--as", dest="as_name", metavar="NEWNAME",
                        help="define a new guest from the image instead")
    target.add_argument("--undo", dest="undo_job", metavar="JOB",
                        help="put back the disk a finished restore job replaced")
    p.add_argument("--disk", metavar="TARGET", help="disk target (default: the first disk)")
    p.add_argument("--from", dest="source", choices=["glance", "library"],
                   help="where the image is (default: as snapshots choose)")
    p.add_argument("--shutdown", action="store_true",
                   help="ask a running guest to shut down (ACPI/agent) and wait for it; "
                   "refuse when it does not stop in time")
    p.add_argument("--timeout", metavar="DURATION",
                   help=f"how long --shutdown waits (default {DEFAULT_SHUTDOWN_TIMEOUT_S:g} s)")
    p.add_argument("--force", action="store_true",
                   help="power the guest off when it does not shut down in time (or is paused)")
    p.add_argument("--start", action="store_true", help="start the guest after the restore")
    p.add_argument("--memory", metavar="MIB", type=int, help="--as: memory of the new guest")
    p.add_argument("--vcpus", metavar="N", type=int, help="--as: vCPUs of the new guest")
    p.add_argument("--overlay", action="store_true",
                   help="--as: the new disk is a qcow2 overlay over a local copy of the image")
    p.add_argument("--dir", dest="directory", metavar="DIR",
                   help="--as: where the new disk goes (default: beside the source domain's "
                   "disk, else libvirt's default pool)")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and print the equivalent commands; change nothing")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.add_argument("--detach", action="store_true",
                   help="print the job id and return at once (follow with `snaptui jobs`)")
    p.add_argument("--remote-cloud", action="store_true",
                   help="on an SSH host (--domain HOST:NAME, HOST:IMAGE --as, --undo "
                   "HOST:JOB): use that host's own clouds.yaml instead of sending your Keystone "
                   "login through the SSH channel")
    p.add_argument("--auth-stdin", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=run_restore)


def request_from_args(args: argparse.Namespace) -> RestoreRequest:
    if args.undo_job:
        if args.image:
            raise BadInput("--undo JOB takes no image (the job names it)")
    elif not args.image:
        raise BadInput("name the image to restore (its id or name)")
    elif not (args.domain or args.as_name):
        raise BadInput("say where the image goes: --domain NAME, or --as NEWNAME for a new "
                       "guest")
    if not args.as_name and (args.memory or args.vcpus or args.overlay or args.directory):
        raise BadInput("--memory, --vcpus, --overlay and --dir are for --as NEWNAME")
    for flag, value in (("--memory", args.memory), ("--vcpus", args.vcpus)):
        if value is not None and value <= 0:
            raise BadInput(f"{flag} must be a positive number")
    timeout = (parse_duration(args.timeout, "--timeout") if args.timeout
               else DEFAULT_SHUTDOWN_TIMEOUT_S)
    return RestoreRequest(
        image=args.image or "", domain=args.domain, disk=args.disk, shutdown=args.shutdown,
        timeout=timeout, force=args.force, start=args.start, as_name=args.as_name,
        memory_mib=args.memory, vcpus=args.vcpus, overlay=args.overlay,
        directory=args.directory,
        undo_job=args.undo_job, source=args.source, uri=args.uri, cloud=args.cloud,
        library_dir=args.library)


def _print_dry_run(args: argparse.Namespace, plan: RestorePlan, steps: list[Step]) -> int:
    commands = [s.command for s in steps if s.command]
    if args.json:
        output.json_line({"event": "dry-run", "job_id": plan.job_id, "action": plan.action,
                          "domain": plan.domain_name, "image": plan.image_id,
                          "confirmation": confirmation(plan), "commands": commands,
                          "notes": plan.notes})
        return 0
    output.line(f"# preflight passed; {plan.mode_reason}")
    for text in confirmation(plan):
        output.line(f"# {text}")
    for command in commands:
        output.line(command)
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from snaptui.cli.remote_restore import route_restore

    routed = route_restore(args, request_from_args)
    if routed is not None:
        return routed
    request = request_from_args(args)
    forwarded_store, forwarded = None, None
    if args.auth_stdin:  # a fleet launcher's: the operator's login on stdin
        from snaptui.core.cloud.forwarded_login import login_on_stdin

        forwarded_store, forwarded = login_on_stdin()
    job_id = new_job_id()
    plan, steps, store = asyncio.run(prepare(request, store=forwarded_store, job_id=job_id))
    if args.dry_run:
        return _print_dry_run(args, plan, steps)
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if not args.yes and not interactive:
        raise BadInput("a restore replaces a disk: pass --yes to go ahead (or --dry-run to "
                       "see what it would do)")
    if not args.json:
        for text in confirmation(plan):
            output.note(f"snaptui: {text}")
    if not args.yes and not output.ask("Go ahead? [y/N] "):
        output.note("nothing changed")
        return 1
    process = JobProcess(job_id, plan.priority)
    try:
        login = forwarded or (store_auth_state(store) if store is not None else None)
        launch(plan, request, steps, process, auth_state=login)
    finally:
        process.discard()
    if args.detach:
        if args.json:
            output.json_line({"event": "launched", "job_id": job_id})
        else:
            output.line(job_id)
        return 0
    if args.json:
        return follow_json(job_id)
    return _follow_rich(job_id)


def _follow_rich(job_id: str) -> int:
    console = output.console()
    with output.live_view(console, render_job(load_job(job_id))) as live:
        for _event in events(job_id):
            live.update(render_job(load_job(job_id)))
        job = load_job(job_id)
        live.update(render_job(job))
    return print_outcome(console, job)
