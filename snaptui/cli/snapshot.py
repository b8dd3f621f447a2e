"""``snaptui snapshot``: preflight, launch a detached job, and follow it to the end."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from snaptui.cli import output
from snaptui.cli.job_view import follow_json, follow_rich
from snaptui.cli.neighbour import add_neighbour_options, neighbour_request_fields
from snaptui.core.engine.jobs import (
    JobProcess,
    launch,
    prepare_with_store,
    store_auth_state,
)
from snaptui.core.engine.plan import (
    OUTPUT_FORMATS,
    QUIESCE_CHOICES,
    VERIFY_ACCELS,
    Mode,
    SnapshotRequest,
)
from snaptui.core.engine.preflight.checks import new_job_id
from snaptui.core.images.properties import parse_properties
from snaptui.core.images.store import VISIBILITIES


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("snapshot", help="turn a domain's disk into an image")
    common(p)
    p.add_argument("domain", help="domain name or uuid")
    p.add_argument("--name", required=True, help="image name")
    p.add_argument("--mode", choices=[str(m) for m in Mode], default="auto")
    disks = p.add_mutually_exclusive_group()
    disks.add_argument("--disk", metavar="TARGET", help="disk target (default: first disk)")
    disks.add_argument("--all-disks", action="store_true", help="one image per disk")
    p.add_argument("--format", dest="out_format", choices=OUTPUT_FORMATS, default="qcow2")
    p.add_argument("--compress", action="store_true", help="compressed qcow2 (zstd if supported)")
    p.add_argument("--to", dest="destination", choices=["glance", "library"],
                   help="default: the library when --library is given without --os-cloud, "
                   "else glance when a cloud is configured, else the local library")
    p.add_argument("--keep-local", metavar="PATH", help="also keep the image file at PATH")
    streaming = p.add_mutually_exclusive_group()
    streaming.add_argument("--stream", dest="stream", action="store_const", const="on",
                           default="auto",
                           help="read a pull-mode backup over NBD straight into Glance (no "
                           "scratch copy; the pull-mode form of --mode backup); default with "
                           "--mode auto when the guest runs and the format allows it")
    streaming.add_argument("--no-stream", dest="stream", action="store_const", const="off",
                           help="always extract to a scratch file first (the copy path)")
    add_quiesce_verify_options(p)
    add_neighbour_options(p)
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and print the equivalent commands; change nothing")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.add_argument("--detach", action="store_true",
                   help="print the job id and return at once (follow with `snaptui jobs`)")
    _register_fleet_options(p)
    _register_image_metadata(p)
    p.set_defaults(handler=run_snapshot)


def _register_image_metadata(p: argparse.ArgumentParser) -> None:
    """The image's metadata (docs/images.md) and Nova coexistence."""
    g = p.add_argument_group("image properties")
    g.add_argument("--property", dest="properties", action="append", default=[],
                   metavar="KEY=VALUE", help="set an image property (repeatable; any UTF-8)")
    g.add_argument("--tag", dest="tags", action="append", default=[], metavar="TAG",
                   help="add an image tag (repeatable)")
    g.add_argument("--visibility", choices=list(VISIBILITIES),
                   help="default: private, or shared with a Nova instance's project when you "
                   "are not in it (as Nova does)")
    g.add_argument("--protected", action="store_true", help="protect the image from deletion")
    g.add_argument("--min-disk", type=int, metavar="GIB",
                   help="default: the base image's, the flavor's root disk or the disk's size, "
                   "whichever is largest")
    g.add_argument("--min-ram", type=int, metavar="MIB", help="default: the base image's")
    g.add_argument("--base-image", metavar="ID",
                   help="Glance image to inherit properties from (default: Nova's root image)")
    g.add_argument("--no-derive", dest="derive", action="store_false",
                   help="do not derive hw_* properties from the domain XML")
    g.add_argument("--backup-type", metavar="NAME",
                   help="make a backup (image_type=backup, backup_type=NAME), as Nova's "
                   "createBackup does")
    g.add_argument("--rotate", type=int, metavar="N",
                   help="with --backup-type: once the image is active, delete this guest's "
                   "oldest backups of that type beyond N (the new one counts; protected ones "
                   "and ones snaptui did not make are kept)")
    g.add_argument("--rotate-unowned", action="store_true",
                   help="let --rotate delete backups snaptui did not make (Nova's) too")
    g.add_argument("--allow-nova-downtime", action="store_true",
                   help="allow cold/internal mode on a running Nova instance (aborted and "
                   "restarted before Nova's 15 s power-state sync would stop it)")


def _register_fleet_options(p: argparse.ArgumentParser) -> None:
    """Remote jobs (docs/fleet.md): DOMAIN may be HOST:DOMAIN; a qemu+ssh:// host runs it."""
    p.add_argument("--remote-cloud", action="store_true",
                   help="on an SSH host: use that host's own clouds.yaml instead of sending "
                   "your Keystone login through the SSH channel")
    p.add_argument("--auth-stdin", action="store_true", help=argparse.SUPPRESS)


def _image_metadata(args: argparse.Namespace) -> dict[str, Any]:
    # The syntax here; what Glance refuses is checked by preflight, once the destination is known.
    return dict(properties=parse_properties(args.properties, glance=False),
                tags=tuple(args.tags), visibility=args.visibility, protected=args.protected,
                min_disk=args.min_disk, min_ram=args.min_ram, base_image=args.base_image,
                derive=args.derive, allow_nova_downtime=args.allow_nova_downtime,
                backup_type=args.backup_type, rotate=args.rotate,
                rotate_unowned=args.rotate_unowned)


def add_verify_options(p: argparse.ArgumentParser) -> None:
    """The options of the boot check (``snapshot --verify`` and ``snaptui verify``)."""
    p.add_argument("--verify-console", metavar="REGEX",
                   help="pass when REGEX matches the serial console (default: when the guest "
                   "agent answers guest-ping); either one passes")
    p.add_argument("--verify-timeout", metavar="SECONDS", type=float, default=120.0,
                   help="fail when the guest has not answered by then (default 120)")
    p.add_argument("--verify-accel", choices=VERIFY_ACCELS,
                   help="boot under TCG or KVM (default: the source domain's type; tcg for an "
                   "image with no source domain)")


def add_quiesce_verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiesce", choices=QUIESCE_CHOICES, default="auto",
                   help="freeze the guest's filesystems through its agent: auto (when it "
                   "answers, else crash-consistent), require (refuse when it does not), off")
    p.add_argument("--verify", action="store_true",
                   help="boot the new image on a throwaway overlay (no network) before "
                   "calling the job done; a failure deletes the image")
    add_verify_options(p)
    p.add_argument("--keep-unverified", action="store_true",
                   help="keep the image when the verification fails (not marked verified)")


def _quiesce_verify_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {"quiesce": args.quiesce, "verify": args.verify,
            "verify_console": args.verify_console, "verify_timeout": args.verify_timeout,
            "verify_accel": args.verify_accel, "keep_unverified": args.keep_unverified}


def request_from_args(args: argparse.Namespace) -> SnapshotRequest:
    return SnapshotRequest(
        domain=args.domain, name=args.name, mode=Mode(args.mode), disk=args.disk,
        all_disks=args.all_disks, out_format=args.out_format, compress=args.compress,
        destination=args.destination, keep_local=args.keep_local, uri=args.uri,
        cloud=args.cloud, library_dir=args.library, **_image_metadata(args),
        **_quiesce_verify_fields(args), **neighbour_request_fields(args), stream=args.stream,
    )


def run_snapshot(args: argparse.Namespace) -> int:
    from snaptui.cli.remote_snapshot import route_snapshot

    routed = route_snapshot(args, request_from_args)
    if routed is not None:
        return routed
    request = request_from_args(args)
    store, forwarded = None, None
    if args.auth_stdin:  # a fleet launcher's: the operator's login on stdin
        from snaptui.core.cloud.forwarded_login import login_on_stdin

        store, forwarded = login_on_stdin()
    # The job's process starts now and imports while the preflight runs.
    job_id = new_job_id()
    process = None if args.dry_run else JobProcess(job_id, request.priority)
    try:
        plan, steps, store = asyncio.run(prepare_with_store(
            request, store=store, job_id=job_id, hold_scratch=not args.dry_run))
        if args.dry_run:
            return _print_dry_run(args, plan, steps)
        for note in plan.notes:
            output.note(f"snaptui: {note}")
        login = forwarded or store_auth_state(store)
        job_id = launch(plan, request, steps, process, auth_state=login)
    finally:
        if process is not None:
            process.discard()
    if args.detach:
        if args.json:
            output.json_line({"event": "launched", "job_id": job_id})
        else:
            output.line(job_id)
        return 0
    if args.json:
        return follow_json(job_id)
    return follow_rich(job_id)


def _pull_backup_xml(plan) -> str | None:
    """The backup-pull.xml of a streamed plan's ``virsh backup-begin`` (None: not streamed)."""
    if not plan.stream:
        return None
    from snaptui.core.engine.steps.stream import export_paths
    from snaptui.core.libvirt.nbd_export import pull_backup_xml

    return pull_backup_xml(export_paths(plan),
                           plan.domain_targets or [d.target for d in plan.disks])


def _print_dry_run(args: argparse.Namespace, plan, steps) -> int:
    backup_xml = _pull_backup_xml(plan)
    if args.json:
        output.json_line({"event": "dry-run", "mode": str(plan.mode),
                          "reason": plan.mode_reason, "destination": plan.destination,
                          "commands": [s.command for s in steps if s.command],
                          "notes": plan.notes, "images": _planned_images(plan),
                          "stream": plan.stream, "backup_xml": backup_xml})
        return 0
    output.line(f"# preflight passed; {plan.mode_reason}; destination {plan.destination}")
    for note in plan.notes:
        output.line(f"# {note}")
    if backup_xml:
        output.line(f"# backup-pull.xml: {backup_xml}")
    for step in steps:
        if step.command:
            output.line(step.command)
    for image in _planned_images(plan):
        output.line(f"# image {image['name']!r} ({image['disk']}): " + ", ".join(
            f"{k}={v}" for k, v in image["settings"].items() if k != "members" or v))
        for key, value in sorted(image["properties"].items()):
            output.line(f"#   {key}={value}")
    return 0


def _planned_images(plan) -> list[dict[str, Any]]:
    """Each image's final settings and properties as preflight planned them (the job adds
    snaptui_downtime_s when it knows it)."""
    images = []
    for d in plan.disks:
        settings = {**(plan.image_settings or {}), "min_disk": d.min_disk}
        props = {**d.properties, "snaptui_domain": plan.domain_name, "snaptui_disk": d.target,
                 "snaptui_method": plan.method, "snaptui_job": plan.job_id,
                 "snaptui_host": plan.host}
        images.append({"name": d.image_name, "disk": d.target, "settings": settings,
                       "properties": props})
    return images
