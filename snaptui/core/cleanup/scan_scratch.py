"""Orphan scratch files of snaptui's own: deltas, backup targets and partial outputs whose job
is no longer running (named ``<job id>-<target>.<what>`` by preflight), and the per-job
directories of pull-mode NBD sockets (``<job id>.nbd``)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

from snaptui.core.cleanup.context import ScanContext
from snaptui.core.cleanup.findings import (
    JOB_ID_RE,
    NOT_OURS,
    SCRATCH_FILE_RE,
    Finding,
    Kind,
    allocated,
    command,
    file_age_s,
)
from snaptui.core.libvirt.qemu_access import SOCKET_DIR_SUFFIX
from snaptui.core.paths import scratch_dir
from snaptui.core.present import duration_text

SOCKET_DIR_RE = re.compile(rf"^(?P<job>{JOB_ID_RE}){re.escape(SOCKET_DIR_SUFFIX)}$")

WHAT = {"delta.qcow2": "live-copy delta", "backup.qcow2": "backup target",
        "raw.partial": "partial output", "qcow2.partial": "partial output",
        "cow.qcow2": "pull-backup copy-before-write scratch"}


def _judge(ctx: ScanContext, path: str, job: str | None, what: str) -> tuple[bool, str, str | None]:
    """(safe, reason, refused) for one file of the scratch directory."""
    age = file_age_s(path, ctx.now)
    holders = ctx.holders(path)
    if holders:
        pids = ", ".join(map(str, sorted(holders)))
        return False, f"{what}, open by process {pids}", f"open by process {pids}"
    if job is None:
        return False, "not named like a snaptui scratch file: kept unless chosen", None
    if job in ctx.jobs.job_ids or os.path.realpath(path) in ctx.jobs.paths:
        return False, f"{what} of snaptui job {job}, which is still running", \
            f"snaptui job {job} is still running"
    if not ctx.old_enough(age):
        return False, f"{what} of ended job {job}, but only {duration_text(age)} old " \
            "(--older-than)", None
    return True, f"{what} of snaptui job {job}, which is no longer running " \
        f"({duration_text(age)} old)", None


async def scan_scratch(ctx: ScanContext) -> AsyncIterator[Finding]:
    """Every file in the scratch directory that no running job of ours owns."""
    directory = scratch_dir()
    entries = sorted(p for p in directory.iterdir() if not p.is_symlink() and (
        p.is_file() or (p.is_dir() and SOCKET_DIR_RE.match(p.name))))
    for done, entry in enumerate(entries):
        ctx.progress(Kind.SCRATCH, done, len(entries), str(entry))
        path = str(entry)
        if entry.is_dir():
            match, what = SOCKET_DIR_RE.match(entry.name), "NBD socket directory"
        else:
            match = SCRATCH_FILE_RE.match(entry.name)
            what = WHAT.get(match.group("what"), "scratch file") if match else "file"
        job = match.group("job") if match else None
        safe, reason, refused = _judge(ctx, path, job, what)
        yield Finding(
            key=f"scratch:{os.path.realpath(path)}", kind=Kind.SCRATCH, location=path,
            size=allocated(path), safe=safe, reason=reason, action="delete file",
            domain=ctx.domain_of_job(job), unowned=job is None,
            label="snaptui" if job else NOT_OURS,
            commands=(command("rm", *(["-r"] if entry.is_dir() else []), "--", path),),
            refused=refused, paths=(path,),
            details={"path": path, "job_id": job, "what": what},
        )
    ctx.progress(Kind.SCRATCH, len(entries), len(entries))
