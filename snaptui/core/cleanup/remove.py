"""Remove one finding safely, measuring the space it gave back (allocated size before / after).

Everything is checked again right before acting, because the host moves between scan and
removal: a guest that started since owns its disk now, and qemu-img must not modify it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt

from snaptui.core import audit
from snaptui.core.cleanup.context import open_files
from snaptui.core.cleanup.findings import Finding, Kind, RemovalResult, allocated_total
from snaptui.core.cleanup.remove_rbd import RbdRefused, measure_rbd, remove_rbd
from snaptui.core.disk import qemu_img
from snaptui.core.engine.journal import iter_jobs
from snaptui.core.engine.locks import DomainLock
from snaptui.core.errors import BadInput, DomainBusy, NotFound, SnaptuiError
from snaptui.core.libvirt import qemu_access
from snaptui.core.libvirt.host import error_message

if TYPE_CHECKING:
    from snaptui.core.images.store import ImageStore
    from snaptui.core.libvirt.host import LibvirtHost

ResultCallback = Callable[[RemovalResult], None]
BLOCK_JOB_GONE_S = 30.0


class Refused(SnaptuiError):
    """Removal would be unsafe now; the message says why."""


@contextlib.contextmanager
def _domain_locked(finding: Finding) -> Iterator[None]:
    """Hold the domain's job lock while touching it, so no snapshot job starts meanwhile."""
    uuid = finding.details.get("domain_uuid")
    if not uuid:
        yield
        return
    lock = DomainLock(uuid, "snaptui cleanup", kind="cleanup")
    try:
        lock.acquire(finding.domain or "")
    except DomainBusy as err:
        raise Refused(str(err)) from None
    try:
        yield
    finally:
        lock.release()


def _not_open(path: str) -> None:
    pids = open_files().get(os.path.realpath(path))
    if pids:
        raise Refused(f"{path} is open by process {', '.join(map(str, sorted(pids)))}")


def _need_host(host: LibvirtHost | None) -> LibvirtHost:
    if host is None:
        raise BadInput("no libvirt connection to act through")
    return host


# ---------------------------------------------------------------- one function per kind


async def _internal(finding: Finding, host: LibvirtHost | None, _store: Any) -> None:
    name = finding.details["name"]
    if finding.details.get("managed"):
        dom = _need_host(host).lookup(finding.details["domain_uuid"])

        def delete() -> None:
            try:
                snap = dom.snapshotLookupByName(name, 0)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                    return  # already gone
                raise
            snap.delete(0)
        await asyncio.to_thread(delete)
        return
    path = finding.details["path"]
    uuid = finding.details.get("domain_uuid")
    if uuid:
        dom = _need_host(host).lookup(uuid)
        if await asyncio.to_thread(dom.isActive):
            raise Refused(f"{finding.domain} is running and owns {path}: qemu-img must not "
                          "modify an image in use, and libvirt does not manage this snapshot")
    _not_open(path)
    snaps = await qemu_img.snapshot_list(path, force_share=True)
    if any(s.name == name for s in snaps):
        await qemu_img.snapshot_delete(path, name)


async def _scratch(finding: Finding, _host: Any, _store: Any) -> None:
    path = finding.details["path"]
    _not_open(path)
    live = {j.job_id for j in iter_jobs() if not j.terminal}
    if finding.details.get("job_id") in live:
        raise Refused(f"snaptui job {finding.details['job_id']} has not ended")
    if os.path.isdir(path) and not os.path.islink(path):
        qemu_access.remove_socket_dir(Path(path))  # <job>.nbd: the socket QEMU left
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def _managed_save(finding: Finding, host: LibvirtHost | None, _store: Any) -> None:
    dom = _need_host(host).lookup(finding.details["domain_uuid"])
    if await asyncio.to_thread(dom.isActive):
        return  # restarted since the scan: the image was consumed
    await asyncio.to_thread(dom.managedSaveRemove, 0)


def _saved_definition(finding: Finding) -> str | None:
    job_id, key = finding.details.get("job_id"), finding.details.get("xml_fact")
    if not key:
        return None
    for job in iter_jobs():
        if job.job_id == job_id and job.facts.get(key):
            return str(job.facts[key])
    return None


async def _transient(finding: Finding, host: LibvirtHost | None, _store: Any) -> None:
    host = _need_host(host)
    if finding.details.get("verify_domain"):  # a leftover boot check: destroy, never define
        from snaptui.core.verify.boot import destroy_domain

        await asyncio.to_thread(destroy_domain, host.conn, finding.details["verify_domain"])
        return
    dom = host.lookup(finding.details["domain_uuid"])
    if await asyncio.to_thread(dom.isPersistent):
        return
    xml = _saved_definition(finding) or await asyncio.to_thread(
        dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    await asyncio.to_thread(host.conn.defineXML, xml)


async def _blockjob(finding: Finding, host: LibvirtHost | None, _store: Any) -> None:
    dom = _need_host(host).lookup(finding.details["domain_uuid"])
    target = finding.details["target"]

    def abort() -> None:
        if not dom.isActive() or not dom.blockJobInfo(target, 0):
            return
        dom.blockJobAbort(target, 0)
        deadline = time.monotonic() + BLOCK_JOB_GONE_S
        while dom.isActive() and dom.blockJobInfo(target, 0):
            if time.monotonic() > deadline:
                raise SnaptuiError(f"block job on {target} still present after abort")
            time.sleep(0.05)
    await asyncio.to_thread(abort)


async def _image(finding: Finding, _host: Any, store: ImageStore | None) -> None:
    if store is None:
        raise BadInput("no image store to act through")
    with contextlib.suppress(NotFound):
        await asyncio.to_thread(store.delete, finding.details["image_id"])


Remover = Callable[[Finding, "LibvirtHost | None", "ImageStore | None"], Awaitable[None]]
REMOVERS: dict[Kind, Remover] = {
    Kind.INTERNAL: _internal, Kind.SCRATCH: _scratch, Kind.MANAGED_SAVE: _managed_save,
    Kind.TRANSIENT: _transient, Kind.BLOCKJOB: _blockjob, Kind.IMAGES: _image,
    Kind.RBD: remove_rbd,
}


def _image_size(finding: Finding, store: ImageStore | None) -> int:
    """Glance holds no file here: its own ``size`` of the image is what comes back."""
    if store is None or finding.paths:
        return allocated_total(finding.paths)
    try:
        return store.show(finding.details["image_id"]).size or 0
    except NotFound:
        return 0


async def _measure(finding: Finding, host: LibvirtHost | None, store: ImageStore | None) -> int:
    if finding.kind is Kind.RBD:
        return await measure_rbd(finding, host)
    if finding.kind is Kind.IMAGES:
        return await asyncio.to_thread(_image_size, finding, store)
    return allocated_total(finding.paths)


async def remove(finding: Finding, host: LibvirtHost | None = None,
                 store: ImageStore | None = None, *, dry_run: bool = False) -> RemovalResult:
    """Remove one finding (or, with ``dry_run``, only say what would run); never raises for
    a refusal or a failure: the result carries the reason on one line."""
    if finding.refused:
        return RemovalResult(finding.key, False, finding.action, dry_run=dry_run,
                             reason=f"refused: {finding.refused}")
    if dry_run:
        return RemovalResult(finding.key, True, finding.action, dry_run=True,
                             reason="dry run: nothing changed")
    details = {"kind": str(finding.kind), "domain": finding.domain, "key": finding.key}
    audit.record(f"cleanup:{finding.action}", finding.location, "started", **details)
    result = await _remove_now(finding, host, store)
    audit.record(f"cleanup:{finding.action}", finding.location,
                 "ok" if result.ok else "failed", reclaimed=result.reclaimed,
                 error=result.reason, **details)
    return result


async def _remove_now(finding: Finding, host: LibvirtHost | None,
                      store: ImageStore | None) -> RemovalResult:
    try:
        before = await _measure(finding, host, store)
        with _domain_locked(finding):
            await REMOVERS[finding.kind](finding, host, store)
        after = await _measure(finding, host, store)
    except (Refused, RbdRefused) as err:
        return RemovalResult(finding.key, False, finding.action, reason=f"refused: {err}")
    except libvirt.libvirtError as err:
        return RemovalResult(finding.key, False, finding.action, reason=error_message(err))
    except SnaptuiError as err:
        return RemovalResult(finding.key, False, finding.action, reason=str(err))
    except OSError as err:
        return RemovalResult(finding.key, False, finding.action,
                             reason=f"{err.filename or finding.location}: {err.strerror or err}")
    return RemovalResult(finding.key, True, finding.action, reclaimed=max(0, before - after),
                         before=before, after=after)


async def remove_all(findings: list[Finding], host: LibvirtHost | None = None,
                     store: ImageStore | None = None, *, dry_run: bool = False,
                     on_result: ResultCallback | None = None) -> list[RemovalResult]:
    """Remove findings one after the other (they may share a disk); report each result."""
    results = []
    for finding in findings:
        result = await remove(finding, host, store, dry_run=dry_run)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results
