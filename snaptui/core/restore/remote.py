"""A restore on a fleet host: the ``snaptui restore … --json`` arguments that ask that host for
a request, so the job runs (and is journaled) where the disk is.

As for a remote snapshot (core/fleet/remote_jobs.py), the operator's Keystone login goes on the
SSH channel's stdin (``--auth-stdin``), never in these arguments; names that could be taken for
options are sent as ``--option=VALUE``, the image after ``--``.
"""

from __future__ import annotations

from snaptui.core.fleet.hosts import HostSpec, host_local_uri
from snaptui.core.restore.plan import RestoreRequest


def restore_args(host: HostSpec, request: RestoreRequest, *, auth: bool, dry_run: bool = False,
                 detach: bool = False, yes: bool = False) -> list[str]:
    """``restore …`` arguments for ``host`` asking for ``request`` (a restore, its undo or a
    new guest); ``auth``: the login comes on stdin (the image is in Glance)."""
    args = ["restore", "-c", host_local_uri(host)]
    if request.undo_job:
        args.append(f"--undo={request.undo_job}")
    elif request.as_name:
        args.append(f"--as={request.as_name}")
    else:
        args.append(f"--domain={request.domain}")
    if auth:
        args += ["--from", "glance", "--auth-stdin"]
    elif not request.undo_job:
        if request.source:
            args += ["--from", request.source]
        if request.cloud:
            args.append(f"--os-cloud={request.cloud}")
    if request.disk:
        args.append(f"--disk={request.disk}")
    args += ["--timeout", f"{round(request.timeout, 3)}s"]
    if request.memory_mib is not None:
        args += ["--memory", str(request.memory_mib)]
    if request.vcpus is not None:
        args += ["--vcpus", str(request.vcpus)]
    if request.directory:
        args.append(f"--dir={request.directory}")
    for flag, on in (("--shutdown", request.shutdown), ("--force", request.force),
                     ("--start", request.start), ("--overlay", request.overlay),
                     ("--dry-run", dry_run), ("--detach", detach),
                     ("--yes", yes)):
        if on:
            args.append(flag)
    args.append("--json")
    return [*args, "--", request.image] if request.image else args
