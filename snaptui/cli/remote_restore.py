"""``snaptui restore`` on a fleet host: ``--domain HOST:NAME``, ``HOST:IMAGE --as NEW`` or
``--undo HOST:JOB`` runs snaptui on the host that owns the disk.

The host's snaptui preflights, launches the detached job and journals it; this side sends the
operator's Keystone login on the SSH channel's stdin (when the image is in Glance) and renders
the JSON events it streams back as a local job's (cli/remote_snapshot.py: re-attaching after a
lost connection, Ctrl-C cancelling the job there). The host cannot ask for confirmation: this
side asks it for a dry run first, shows its confirmation and asks here, unless ``--yes``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from snaptui.cli import output
from snaptui.cli.fleet import hosts_of, job_host, login_line, pick
from snaptui.core.errors import BadInput
from snaptui.core.fleet.hosts import HostSpec, split_host
from snaptui.core.fleet.ssh import RemoteCall
from snaptui.core.restore.plan import RestoreRequest


def _host_of_image(args: argparse.Namespace) -> HostSpec | None:
    """``HOST:IMAGE``: that host (and the image's name without it); None when not prefixed."""
    if not args.image:
        return None
    host, rest = split_host(args.image, hosts_of(args))
    if host is not None:
        args.image = rest
    return host


def restore_host(args: argparse.Namespace) -> HostSpec | None:
    """The SSH host the restore runs on (None: here), with the ``HOST:`` prefixes taken off
    ``args``; a local fleet host's URI becomes ``args.uri``."""
    by_image = _host_of_image(args)
    if args.undo_job:
        remote, args.undo_job = job_host(args, args.undo_job)
        return remote
    if args.domain:
        named, _ = split_host(args.domain, hosts_of(args))
        if named is None and by_image is not None:
            args.domain = f"{by_image.name}:{args.domain}"
        host, args.domain = pick(args, args.domain)
    else:  # --as: the image's host, else the only one
        hosts = hosts_of(args)
        chosen = by_image or (hosts[0] if len(hosts) == 1 else None)
        if chosen is None:
            return None
        host = chosen
        if not host.remote:
            args.uri = host.uri
    if by_image is not None and by_image.name != host.name:
        raise BadInput(f"the image is named on {by_image.name} but the guest is on "
                       f"{host.name}; a restore runs on the host that owns the disk")
    return host if host.remote else None


def route_restore(args: argparse.Namespace,
                  request_from_args: Callable[[argparse.Namespace], RestoreRequest]
                  ) -> int | None:
    """Run the restore on its guest's host when that is an SSH host; None: run it here."""
    host = restore_host(args)
    if host is None:
        return None
    from snaptui.core.restore.remote import restore_args

    request = request_from_args(args)
    state_line = None
    if not request.undo_job:
        state_line, _ = login_line(args, request.source)

    def call(**flags: bool) -> RemoteCall:
        return RemoteCall(host, restore_args(host, request, auth=state_line is not None,
                                             **flags), stdin_line=state_line)

    if args.dry_run:
        return _print_dry_run(host, call(dry_run=True), args.json)
    if not args.yes:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise BadInput("a restore replaces a disk: pass --yes to go ahead (or --dry-run "
                           "to see what it would do)")
        if not _confirmed(host, call(dry_run=True)):
            output.note("nothing changed")
            return 1
    if args.detach:
        return _print_launched(host, call(detach=True, yes=True), args.json)
    from snaptui.cli.remote_snapshot import RemoteFollower

    return RemoteFollower(host, args.json).run(call(yes=True))


def _dry_run_event(call: RemoteCall) -> dict[str, Any]:
    for event in call:
        if event.get("event") == "dry-run":
            return event
    return {}


def _confirmed(host: HostSpec, call: RemoteCall) -> bool:
    event = _dry_run_event(call)
    for text in event.get("confirmation") or []:
        output.note(f"snaptui: on {host.name}: {text}")
    return output.ask("Go ahead? [y/N] ")


def _print_dry_run(host: HostSpec, call: RemoteCall, as_json: bool) -> int:
    event = _dry_run_event(call)
    if not event:
        return 1
    if as_json:
        output.json_line({**event, "host": host.name})
        return 0
    output.line(f"# on {host.name}: preflight passed")
    for text in event.get("confirmation") or []:
        output.line(f"# {text}")
    for command in event.get("commands") or []:
        output.line(str(command))
    return 0


def _print_launched(host: HostSpec, call: RemoteCall, as_json: bool) -> int:
    for event in call:
        if event.get("event") == "launched":
            if as_json:
                output.json_line({**event, "host": host.name})
            else:
                output.line(f"{host.name}:{event.get('job_id', '?')}")
            return 0
    return 1
