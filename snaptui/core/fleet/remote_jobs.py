"""Jobs on a fleet host, run by snaptui on that host over SSH (the API the dashboard calls).

A ``qemu+ssh://`` host's disks are only reachable there, so its jobs run as ``snaptui …
--json`` on the host (core/fleet/ssh.py: quoting, ssh options, one-line errors). The job is
launched, detached and journaled on the host exactly as a local one; the SSH connection only
carries its JSON events back, so losing it (or the operator's laptop) loses nothing:
``follow_remote_job`` re-attaches and streams the rest, ending with the job's terminal event.

Interface (every call blocks; run it in a worker thread from the dashboard; every failure is a
one-line ``RemoteError`` naming the host — ``SshUnreachable``, ``SshLost``, ``RemoteTooOld``):

- ``start_remote_snapshot(host, request, auth_state) -> RemoteCall``: preflight and launch on
  the host and stream the job's events as dicts (the first carries ``job_id``); ``close()`` the
  call to stop listening (the job goes on).
- ``launch_remote_snapshot(host, request, auth_state) -> job_id``: the same, detached at once.
- ``follow_remote_job(host, job_id) -> RemoteCall``: re-attach to a job; its events from the
  start of its journal, ending with ``done``/``failed``.
- ``list_remote_jobs(host) -> list[dict]``: ``snaptui jobs --json`` there, each row with
  ``host``.
- ``cancel_remote_job(host, job_id) -> str``: what the host's ``cancel`` did.
- ``recover_remote_jobs(host) -> list[dict]``: ``snaptui recover --json`` there.

Rows are checked (core/fleet/rows.py): a bad one is left out and said in one line.

``auth_state`` is the operator's Keystone login (``store_auth_state(store)``): it goes as the
first line of the remote snaptui's stdin (``--auth-stdin``) and nowhere else, and the host
then needs no clouds.yaml. ``None`` with ``destination == "glance"`` means: use the host's own
cloud configuration (``--os-cloud`` passes ``request.cloud``).
"""

from __future__ import annotations

import json
from typing import Any

from snaptui.core.engine.plan import SnapshotRequest
from snaptui.core.fleet.hosts import HostSpec, host_local_uri
from snaptui.core.fleet.rows import checked_rows, job_row_problem, recover_row_problem
from snaptui.core.fleet.ssh import RemoteCall, run_json


def _flag(args: list[str], name: str, value: Any) -> None:
    if value is not None:
        args += [name, str(value)]


def request_args(host: HostSpec, request: SnapshotRequest, *, auth: bool) -> list[str]:
    """``snapshot …`` arguments that ask the host for ``request`` (the domain last, after
    ``--``, so no name is ever taken for an option)."""
    args = ["snapshot", "-c", host_local_uri(host), "--name", request.name,
            "--mode", str(request.mode), "--format", request.out_format,
            "--quiesce", request.quiesce, "--verify-timeout", repr(request.verify_timeout)]
    if auth:
        args += ["--to", "glance", "--auth-stdin"]
    else:
        _flag(args, "--to", request.destination)
        _flag(args, "--os-cloud", request.cloud)
    _flag(args, "--priority", request.priority)
    _flag(args, "--bwlimit", request.bwlimit)
    _flag(args, "--disk", request.disk)
    _flag(args, "--keep-local", request.keep_local)
    _flag(args, "--visibility", request.visibility)
    _flag(args, "--min-disk", request.min_disk)
    _flag(args, "--min-ram", request.min_ram)
    _flag(args, "--base-image", request.base_image)
    _flag(args, "--verify-console", request.verify_console)
    _flag(args, "--verify-accel", request.verify_accel)
    _flag(args, "--backup-type", request.backup_type)
    _flag(args, "--rotate", request.rotate)
    for key, value in request.properties.items():
        args += ["--property", f"{key}={value}"]
    for tag in request.tags:
        args += ["--tag", tag]
    for flag, on in (("--all-disks", request.all_disks), ("--compress", request.compress),
                     ("--protected", request.protected), ("--no-derive", not request.derive),
                     ("--allow-nova-downtime", request.allow_nova_downtime),
                     ("--verify", request.verify),
                     ("--keep-unverified", request.keep_unverified),
                     ("--rotate-unowned", request.rotate_unowned),
                     ("--stream", request.stream == "on"),
                     ("--no-stream", request.stream == "off")):
        if on:
            args.append(flag)
    return [*args, "--json", "--", request.domain]


def _auth_line(auth_state: str | None) -> str | None:
    return json.dumps(auth_state) if auth_state else None


def start_remote_snapshot(host: HostSpec, request: SnapshotRequest,
                          auth_state: str | None) -> RemoteCall:
    """Launch the snapshot on ``host`` and stream its events (see the module docstring)."""
    args = request_args(host, request, auth=bool(auth_state))
    return RemoteCall(host, args, stdin_line=_auth_line(auth_state))


def launch_remote_snapshot(host: HostSpec, request: SnapshotRequest,
                           auth_state: str | None) -> str:
    """Launch the snapshot on ``host`` detached; its job id there."""
    args = request_args(host, request, auth=bool(auth_state))
    args.insert(args.index("--json"), "--detach")
    for event in RemoteCall(host, args, stdin_line=_auth_line(auth_state)):
        if event.get("event") == "launched":
            return str(event["job_id"])
    from snaptui.core.fleet.ssh import RemoteError

    raise RemoteError(f"{host.name}: the remote snapshot printed no job id")


def follow_remote_job(host: HostSpec, job_id: str) -> RemoteCall:
    """Re-attach to ``job_id`` on ``host``: its events, to its terminal event."""
    return RemoteCall(host, ["jobs", "--json", "--follow", job_id])


def list_remote_jobs(host: HostSpec, problems: list[str] | None = None
                     ) -> list[dict[str, Any]]:
    """The host's job rows, each checked (core/fleet/rows.py): a bad one is left out and
    counted in one line in ``problems``."""
    call = RemoteCall(host, ["jobs", "--json"])
    rows = list(call)
    return checked_rows(host.name, rows, job_row_problem, not_objects=call.not_objects,
                        problems=problems)


def cancel_remote_job(host: HostSpec, job_id: str) -> str:
    rows = run_json(host, ["cancel", "--json", job_id])
    return str(rows[0].get("outcome", "")) if rows else ""


def recover_remote_jobs(host: HostSpec, problems: list[str] | None = None
                        ) -> list[dict[str, Any]]:
    call = RemoteCall(host, ["recover", "--json"])
    rows = list(call)
    return checked_rows(host.name, rows, recover_row_problem, not_objects=call.not_objects,
                        problems=problems)
