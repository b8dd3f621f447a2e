"""Disks a restore replaced: ``<disk>.pre-restore-<job>`` beside each domain disk.

A restore keeps the old disk so that it can itself be undone (``snaptui restore --undo JOB``);
cleanup lists it, but pre-selects it only when the operator chose an age (``--older-than``):
the default age guards snapshot leftovers, not a disk an operator may still want back.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

from snaptui.core.cleanup.context import ScanContext
from snaptui.core.cleanup.findings import (
    JOB_ID_RE,
    Finding,
    Kind,
    allocated,
    command,
    file_age_s,
    job_id_age_s,
)
from snaptui.core.present import duration_text

PRE_RESTORE_RE = re.compile(rf"\.pre-restore-(?P<job>{JOB_ID_RE})$")


def _finding(ctx: ScanContext, path: str, disk: str, job: str, domain: str,
             domain_uuid: str) -> Finding:
    age = job_id_age_s(job, ctx.now) or file_age_s(path, ctx.now)
    base = f"pre-restore disk of job {job} (the {os.path.basename(disk)} it replaced"
    holders = ctx.holders(path)
    refused = None
    if holders:
        refused = f"open by process {', '.join(map(str, sorted(holders)))}"
    elif job in ctx.jobs.job_ids:
        refused = f"restore job {job} is still running"
    if refused:
        safe, reason = False, f"{refused}; {base})"
    elif not ctx.older_than_given:
        safe, reason = False, (f"{base}, {duration_text(age)} old; undo: snaptui restore "
                               f"--undo {job}): kept unless chosen or --older-than is given")
    elif not ctx.old_enough(age):
        safe, reason = False, f"{base}), only {duration_text(age)} old (--older-than)"
    else:
        safe, reason = True, f"{base}, {duration_text(age)} old)"
    return Finding(
        key=f"scratch:{os.path.realpath(path)}", kind=Kind.SCRATCH, location=path,
        size=allocated(path), safe=safe, reason=reason, domain=domain, action="delete file",
        label="snaptui", commands=(command("rm", "--", path),), refused=refused,
        paths=(path,), details={"path": path, "job_id": job, "pre_restore_of": disk,
                                "domain_uuid": domain_uuid})


async def scan_pre_restore(ctx: ScanContext) -> AsyncIterator[Finding]:
    """Every ``<disk>.pre-restore-<job>`` beside a disk of a domain of this host."""
    domains = [d for d in ctx.domains if ctx.wanted(d)]
    for done, dom in enumerate(domains):
        ctx.progress(Kind.SCRATCH, done, len(domains), dom.name)
        for disk in dom.disks:
            if not disk.path or disk.source_type != "file":
                continue
            directory, name = os.path.split(disk.path)
            try:
                entries = os.listdir(directory or ".")
            except OSError:
                continue
            for entry in sorted(entries):
                if not entry.startswith(name):
                    continue
                match = PRE_RESTORE_RE.fullmatch(entry[len(name):])
                path = os.path.join(directory, entry)
                if match and os.path.isfile(path) and not os.path.islink(path):
                    yield _finding(ctx, path, disk.path, match.group("job"), dom.name,
                                   dom.uuid)
    ctx.progress(Kind.SCRATCH, len(domains), len(domains))
