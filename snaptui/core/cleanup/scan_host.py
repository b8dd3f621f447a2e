"""Leftovers libvirt holds: stale managed-save images, domains left transient by a job, and
block jobs still attached to a disk with no job of ours behind them."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import libvirt

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
from snaptui.core.engine.locks import locked_by
from snaptui.core.engine.owned_jobs import block_job_destination
from snaptui.core.errors import SnaptuiError
from snaptui.core.models import DomainInfo
from snaptui.core.present import duration_text
from snaptui.core.verify.boot import VERIFY_PREFIX

# Facts a workflow records when it makes a persistent domain transient (Nova's block copy way).
PERSISTENT_XML_FACTS = ("persistent_xml", "domain_xml", "inactive_xml")


def managed_save_dirs(uri: str) -> list[Path]:
    """Where libvirt's QEMU driver keeps managed-save images for this URI."""
    if uri.startswith("qemu:///system"):
        return [Path("/var/lib/libvirt/qemu/save")]
    if uri.startswith("qemu:///session"):
        config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        return [config / "libvirt" / "qemu" / "save"]
    return []


def managed_save_path(uri: str, name: str) -> str | None:
    for directory in managed_save_dirs(uri):
        path = directory / f"{name}.save"
        if path.exists():
            return str(path)
    return None


def _busy(ctx: ScanContext, dom: DomainInfo) -> str | None:
    """Why nothing of this domain may be touched now (a live job of ours holds it)."""
    if dom.uuid in ctx.jobs.domain_uuids:
        return f"a snaptui job on {dom.name} is still running"
    return locked_by(dom.name, dom.uuid)


def _jobs_of(ctx: ScanContext, dom: DomainInfo) -> list[tuple[str, str, str, dict[str, Any]]]:
    return ctx.jobs.by_domain.get(dom.uuid, [])


# A managed save is written before its job records ``guest_saved``; allow for coarse mtimes.
SAVE_CLOCK_SLACK_S = 2.0


def _saver(ctx: ScanContext, dom: DomainInfo,
           saved_at: float | None) -> tuple[tuple[str, str, str, dict[str, Any]] | None, str]:
    """The job whose managed save this is, or None and why it is nobody's of ours: the job
    must be unfinished (it saved the guest, and never restarted it) and the save no newer
    than the job's last journal record."""
    savers = [j for j in _jobs_of(ctx, dom) if j[3].get("guest_saved")]
    if not savers:
        return None, "not saved by snaptui"
    unfinished = [j for j in savers if not j[3].get("guest_resumed_at")]
    if not unfinished:
        return None, (f"not saved by snaptui: job {savers[0][0]}, the last to save it, "
                      "restarted the guest")
    for job in unfinished:
        last = ctx.jobs.last_write.get(job[0])
        if saved_at is not None and last is not None and saved_at <= last + SAVE_CLOCK_SLACK_S:
            return job, f"saved by snaptui job {job[0]} ({job[2]}), which never restarted it"
    return None, (f"not saved by snaptui: newer than job {unfinished[0][0]}, which saved the "
                  "guest and never restarted it")


def _managed_save(ctx: ScanContext, dom: DomainInfo) -> Finding:
    path = managed_save_path(ctx.uri, dom.name)
    age = file_age_s(path, ctx.now) if path else None
    refused = _busy(ctx, dom)
    saver, whose = _saver(ctx, dom, None if age is None else ctx.now - age)
    when = "at an unknown time" if age is None else f"{duration_text(age)} ago"
    words = (f"saved {when} and never restarted; removing it discards the "
             "guest's saved memory (its next start is a cold boot)")
    if refused:
        safe, reason = False, f"{refused}; {words}"
    elif saver is None:
        safe, reason = False, f"{words}; {whose}: kept unless chosen"
    elif not ctx.old_enough(age):
        safe, reason = False, f"{words}; only {duration_text(age)} old (--older-than)"
    else:
        safe, reason = True, f"{words}; {whose}"
    return Finding(
        key=f"managed-save:{dom.uuid}", kind=Kind.MANAGED_SAVE,
        location=path or f"{dom.name} (managed save)", size=allocated(path) if path else None,
        safe=safe, reason=reason, domain=dom.name, action="virsh managedsave-remove",
        commands=(command(*ctx.virsh("managedsave-remove", dom.name)),), refused=refused,
        paths=(path,) if path else (), unowned=saver is None,
        label=NOT_OURS if saver is None else "snaptui",
        details={"domain_uuid": dom.uuid, "path": path, "age_s": age,
                 "saved_by_job": saver[0] if saver else None},
    )


def _transient(ctx: ScanContext, dom: DomainInfo) -> Finding | None:
    jobs = _jobs_of(ctx, dom)
    if dom.persistent or not jobs:
        return None  # only domains a journal of ours speaks of
    refused = _busy(ctx, dom)
    saved = next(((j, k) for j in jobs for k in PERSISTENT_XML_FACTS if j[3].get(k)), None)
    job_id, mode, status, _ = saved[0] if saved else jobs[0]
    where = f"job {job_id} ({mode}, {status})"
    if refused:
        safe, reason = False, f"{refused}; transient"
    elif saved:
        safe, reason = True, f"made transient by {where}, which saved its definition; " \
            "defining it again makes it persistent"
    else:
        safe, reason = False, f"transient; snaptui {where} ran on it but saved no definition: " \
            "defining it from its live XML is left to you"
    xml_file = f"{dom.name}.xml"
    return Finding(
        key=f"transient:{dom.uuid}", kind=Kind.TRANSIENT, location=f"{dom.name} (transient)",
        size=0, safe=safe, reason=reason, domain=dom.name, action="virsh define",
        commands=(command(*ctx.virsh("dumpxml", "--inactive", "--security-info", dom.name))
                  + f" > {xml_file}", command(*ctx.virsh("define", xml_file))),
        refused=refused,
        details={"domain_uuid": dom.uuid, "job_id": job_id,
                 "xml_fact": saved[1] if saved else None},
    )


def _mirror_file(dom: libvirt.virDomain, target: str) -> str | None:
    """Destination of the block job on ``target`` (the <mirror> in the live XML)."""
    return block_job_destination(dom.XMLDesc(0), target)


def _block_jobs(ctx: ScanContext, dom: DomainInfo) -> list[Finding]:
    assert ctx.host is not None
    vdom = ctx.host.lookup(dom.uuid)
    found = []
    for disk in dom.disks:
        info = vdom.blockJobInfo(disk.target, 0)
        if not info:
            continue
        mirror = _mirror_file(vdom, disk.target)
        refused = _busy(ctx, dom)
        own = mirror is not None and SCRATCH_FILE_RE.match(os.path.basename(mirror))
        job = own.group("job") if own else None
        what = f"block job on {disk.target} ({info.get('cur', 0)}/{info.get('end', 0)})"
        if job and job in ctx.jobs.job_ids:
            refused = f"snaptui job {job} is still running"
        if refused:
            safe, reason = False, f"{refused}; {what}"
        elif not own:
            safe, reason = False, f"{what} not started by snaptui: kept unless chosen"
        else:
            safe, reason = True, f"{what} left by snaptui job {job}, which is no longer " \
                "running; aborting keeps the guest on its own disk"
        found.append(Finding(
            key=f"blockjob:{dom.uuid}:{disk.target}", kind=Kind.BLOCKJOB,
            location=f"{dom.name} {disk.target}" + (f" -> {mirror}" if mirror else ""),
            size=allocated(mirror) if mirror else None, safe=safe, reason=reason,
            domain=dom.name, action="virsh blockjob --abort",
            commands=(command(*ctx.virsh("blockjob", dom.name, disk.target, "--abort")),),
            refused=refused, unowned=not own, label="snaptui" if own else NOT_OURS,
            details={"domain_uuid": dom.uuid, "target": disk.target, "mirror": mirror,
                     "job_type": info.get("type")},
        ))
    return found


VERIFY_DOMAIN_RE = re.compile(rf"^{VERIFY_PREFIX}(?P<job>{JOB_ID_RE})$")


def _verify_domain(ctx: ScanContext, dom: DomainInfo) -> Finding | None:
    """A ``snaptui-verify-<job>`` boot check whose job is gone (its undo destroys it; a
    kill before recover ran, or ``snaptui verify`` killed, leaves it running)."""
    match = VERIFY_DOMAIN_RE.match(dom.name)
    if match is None or dom.persistent or not dom.state.is_active:
        return None
    job = match.group("job")
    refused = f"snaptui job {job} is still running" if job in ctx.jobs.job_ids else None
    return Finding(
        key=f"transient:{dom.uuid}", kind=Kind.TRANSIENT, location=f"{dom.name} (verify boot)",
        size=0, safe=refused is None,
        reason=refused or f"boot check of job {job}, which is no longer running; destroying "
        "it drops only its throwaway overlay",
        domain=dom.name, action="virsh destroy",
        commands=(command(*ctx.virsh("destroy", dom.name)),), refused=refused,
        details={"domain_uuid": dom.uuid, "job_id": job, "verify_domain": dom.name},
    )


async def scan_host(ctx: ScanContext) -> AsyncIterator[Finding]:
    """Managed saves, transient domains and stray block jobs, domain by domain."""
    kinds = ctx.only
    domains = [d for d in ctx.domains if ctx.wanted(d)]
    for done, dom in enumerate(domains):
        ctx.progress(Kind.MANAGED_SAVE, done, len(domains), dom.name)
        if Kind.MANAGED_SAVE in kinds and dom.has_managed_save:
            yield _managed_save(ctx, dom)
        if Kind.TRANSIENT in kinds:
            transient = _verify_domain(ctx, dom) or _transient(ctx, dom)
            if transient is not None:
                yield transient
        if Kind.BLOCKJOB in kinds and dom.state.is_active:
            try:
                for finding in await asyncio.to_thread(_block_jobs, ctx, dom):
                    yield finding
            except (SnaptuiError, libvirt.libvirtError):
                continue  # stopped or undefined meanwhile: no block job left on it
    ctx.progress(Kind.MANAGED_SAVE, len(domains), len(domains))
