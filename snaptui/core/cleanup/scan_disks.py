"""Internal snapshots in every domain disk and in qcow2 files under ``--scan`` directories,
and stray deltas there: qcow2 overlays on a domain's disk that no domain uses.

Every disk is read with ``qemu-img info -U`` (read-only, shared): nothing here writes.
"""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from snaptui.core.cleanup.context import ScanContext
from snaptui.core.cleanup.findings import (
    LIKELY_NOVA,
    NOT_OURS,
    NOVA_SNAPSHOT_RE,
    OWN_SNAPSHOT_RE,
    SCRATCH_FILE_RE,
    Finding,
    Kind,
    allocated,
    command,
    file_age_s,
)
from snaptui.core.disk import qemu_img
from snaptui.core.engine.locks import locked_by
from snaptui.core.errors import SnaptuiError
from snaptui.core.models import DomainInfo, ImageFileInfo, InternalSnapshot
from snaptui.core.present import duration_text, iso_age_s

QCOW2_MAGIC = b"QFI\xfb"


def is_qcow2(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == QCOW2_MAGIC
    except OSError:
        return False


def libvirt_internal_snapshots(dom: libvirt.virDomain) -> dict[str, tuple[str, ...]]:
    """Internal snapshots libvirt has metadata for: name -> disk targets it covers."""
    found: dict[str, tuple[str, ...]] = {}
    for snap in dom.listAllSnapshots(0):
        root = ET.fromstring(snap.getXMLDesc(0))
        memory = root.find("memory")
        internal = [d.get("name", "") for d in root.findall("disks/disk")
                    if d.get("snapshot") == "internal"]
        if internal or (memory is not None and memory.get("snapshot") == "internal"):
            found[snap.getName()] = tuple(internal)
    return found


async def _info(path: str) -> ImageFileInfo:
    return await qemu_img.info(path, force_share=True, chain=False)


def _own_job(name: str) -> str | None:
    match = OWN_SNAPSHOT_RE.match(name)
    return match.group("job") if match else None


@dataclass(frozen=True)
class Verdict:
    """How a scan judges one internal snapshot (the Finding fields of the same names)."""

    safe: bool
    reason: str
    label: str = ""
    unowned: bool = False
    unowned_ok: bool = False

    @property
    def fields(self) -> dict[str, Any]:
        return {"safe": self.safe, "reason": self.reason, "label": self.label,
                "unowned": self.unowned, "unowned_ok": self.unowned_ok}


def unowned_words(name: str, managed: bool) -> tuple[str, str]:
    """(label, words for the reason) of a snapshot snaptui did not make."""
    if not managed and NOVA_SNAPSHOT_RE.match(name):
        return LIKELY_NOVA, (f"{LIKELY_NOVA} (32 hex digits, no libvirt metadata, as old "
                             f"Nova's qemu-img snapshots), {NOT_OURS}")
    return NOT_OURS, NOT_OURS


def _judge(ctx: ScanContext, name: str, date: str, refused: str | None,
           managed: bool = False) -> Verdict:
    """How an internal snapshot that removal may touch is judged (safe, reason, owner)."""
    job = _own_job(name)
    age = iso_age_s(date, ctx.now)
    if job is None:
        label, words = unowned_words(name, managed)
        if refused:
            return Verdict(False, f"{refused}; {words}", label, unowned=True)
        if not ctx.old_enough(age):
            return Verdict(False, f"{words}, only {duration_text(age)} old (--older-than)", label,
                           unowned=True)
        return Verdict(False, f"{words} ({duration_text(age)} old): kept unless chosen explicitly "
                       "or with --domain and --include-unowned", label, unowned=True,
                       unowned_ok=True)
    if job in ctx.jobs.job_ids:
        return Verdict(False, f"snaptui job {job} is still running", "snaptui")
    if not ctx.old_enough(age):
        why = f"left by snaptui job {job}, but only {duration_text(age)} old (--older-than)"
    else:
        why = f"left by snaptui job {job}, which is no longer running ({duration_text(age)} old)"
        if refused is None:
            return Verdict(True, why, "snaptui")
    return Verdict(False, f"{refused}; {why}" if refused else why, "snaptui")


def _held(*snaps: InternalSnapshot) -> int | None:
    """Known bytes a snapshot holds: its VM state; the disk clusters it alone references
    are unknown until removal measures them (None when there is no VM state)."""
    return max(s.vm_size for s in snaps) or None


def _snapshot_details(snap: InternalSnapshot, **extra: Any) -> dict[str, Any]:
    return {"name": snap.name, "id": snap.id, "date": snap.date, "vm_state_size": snap.vm_size,
            **extra}


def _in_use_refusal(dom: DomainInfo) -> str | None:
    if dom.state.is_active:
        return (f"disk in use by {dom.state} guest {dom.name}: qemu-img must not modify an "
                "image in use (libvirt does not manage this snapshot)")
    return locked_by(dom.name, dom.uuid)


async def _domain_findings(ctx: ScanContext, dom: DomainInfo) -> AsyncIterator[Finding]:
    assert ctx.host is not None
    vdom = await asyncio.to_thread(ctx.host.lookup, dom.uuid)
    managed = await asyncio.to_thread(libvirt_internal_snapshots, vdom)
    seen_managed: dict[str, list[tuple[str, str, InternalSnapshot]]] = {}
    for disk in dom.disks:
        if not disk.path or not disk.taken_by_snapshot or disk.format not in ("qcow2", None):
            continue
        if not os.path.exists(disk.path) or not is_qcow2(disk.path):
            continue
        image = await _info(disk.path)
        for snap in image.snapshots:
            if snap.name in managed:
                seen_managed.setdefault(snap.name, []).append((disk.target, disk.path, snap))
                continue
            refused = _in_use_refusal(dom)
            verdict = _judge(ctx, snap.name, snap.date, refused)
            yield Finding(
                key=f"internal:{os.path.realpath(disk.path)}#{snap.id}:{snap.name}",
                kind=Kind.INTERNAL,
                location=f"{disk.path} ({dom.name} {disk.target}) snapshot {snap.name!r}",
                size=_held(snap), **verdict.fields, domain=dom.name,
                action="qemu-img snapshot -d",
                commands=(command("qemu-img", "snapshot", "-d", snap.name, disk.path),),
                refused=refused, paths=(disk.path,),
                details=_snapshot_details(snap, path=disk.path, target=disk.target,
                                          domain_uuid=dom.uuid, domain_state=str(dom.state),
                                          managed=False),
            )
    for name, where in seen_managed.items():
        refused = locked_by(dom.name, dom.uuid)
        first = where[0][2]
        verdict = _judge(ctx, name, first.date, refused, managed=True)
        fields = {**verdict.fields,
                  "reason": f"managed by libvirt (deleted through libvirt); {verdict.reason}"}
        targets = ", ".join(t for t, _, _ in where)
        yield Finding(
            key=f"internal:{dom.uuid}@{name}",
            kind=Kind.INTERNAL,
            location=f"{dom.name} ({targets}) libvirt snapshot {name!r}",
            size=_held(*(s for _, _, s in where)), **fields,
            domain=dom.name, action="virsh snapshot-delete",
            commands=(command(*ctx.virsh("snapshot-delete", dom.name, name)),),
            refused=refused, paths=tuple(p for _, p, _ in where),
            details=_snapshot_details(first, targets=[t for t, _, _ in where],
                                      domain_uuid=dom.uuid, domain_state=str(dom.state),
                                      managed=True),
        )


def _walk(directory: Path) -> Iterator[str]:
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if not os.path.islink(path) and os.path.isfile(path):
                yield path


def _file_snapshot(ctx: ScanContext, path: str, snap: InternalSnapshot) -> Finding:
    holders = ctx.holders(path)
    refused = (f"{path} is open by process {', '.join(map(str, sorted(holders)))}: qemu-img "
               "must not modify an image in use") if holders else None
    verdict = _judge(ctx, snap.name, snap.date, refused)
    return Finding(
        key=f"internal:{os.path.realpath(path)}#{snap.id}:{snap.name}",
        kind=Kind.INTERNAL, location=f"{path} snapshot {snap.name!r}", size=_held(snap),
        **verdict.fields, action="qemu-img snapshot -d",
        commands=(command("qemu-img", "snapshot", "-d", snap.name, path),),
        refused=refused, paths=(path,), details=_snapshot_details(snap, path=path, managed=False),
    )


def _stray_delta(ctx: ScanContext, path: str, image: ImageFileInfo,
                 owners: dict[str, DomainInfo], chained: set[str]) -> Finding | None:
    """A qcow2 overlay whose backing file is a domain's disk, used by no domain."""
    if not image.backing_file:
        return None
    backing = os.path.realpath(image.backing_file)
    owner = owners.get(backing)
    real = os.path.realpath(path)
    if owner is None or real in owners or real in chained:
        return None
    holders = ctx.holders(path)
    age = file_age_s(path, ctx.now)
    refused = None
    if holders:
        refused = f"open by process {', '.join(map(str, sorted(holders)))}"
    elif real in ctx.jobs.paths:
        refused = "made by a snaptui job that is still running"
    base = f"overlay on {owner.name}'s disk {image.backing_file}, used by no domain"
    name = os.path.basename(path)
    looks_own = bool(SCRATCH_FILE_RE.match(name)) or name.endswith((".delta", ".delta.qcow2"))
    label = "snaptui" if looks_own else NOT_OURS
    unowned_ok = False
    if refused:
        safe, reason = False, f"{refused}; {base}"
    elif not ctx.old_enough(age):
        safe, reason = False, f"{base}; only {duration_text(age)} old (--older-than)"
    elif not looks_own:
        safe, unowned_ok = False, True
        reason = (f"{base}; not named like a snaptui delta ({duration_text(age)} old): kept unless "
                  "chosen explicitly or with --domain and --include-unowned")
    else:
        safe, reason = True, f"leftover delta: {base} ({duration_text(age)} old)"
    if not looks_own and not unowned_ok:
        reason += "; not named like a snaptui delta"
    return Finding(
        key=f"scratch:{real}", kind=Kind.SCRATCH, location=path, size=allocated(path),
        safe=safe, reason=reason, domain=owner.name, action="delete file", label=label,
        unowned=not looks_own, unowned_ok=unowned_ok,
        commands=(command("rm", "--", path),), refused=refused, paths=(path,),
        details={"path": path, "backing_file": image.backing_file, "delta": True},
    )


async def scan_internal(ctx: ScanContext) -> AsyncIterator[Finding]:
    """Internal snapshots of every domain disk (libvirt-managed ones as one finding each)."""
    domains = [d for d in ctx.domains if ctx.wanted(d) and any(x.path for x in d.disks)]
    for done, dom in enumerate(domains):
        ctx.progress(Kind.INTERNAL, done, len(domains), dom.name)
        try:
            async for finding in _domain_findings(ctx, dom):
                yield finding
        except (SnaptuiError, libvirt.libvirtError):
            continue  # undefined or changed while scanning: nothing of it to clean now
    ctx.progress(Kind.INTERNAL, len(domains), len(domains))


async def scan_directories(ctx: ScanContext) -> AsyncIterator[Finding]:
    """qcow2 files under ``--scan`` dirs: their internal snapshots and stray deltas."""
    owners = ctx.disk_owners()
    chained: set[str] = set()
    wanted = {Kind.INTERNAL, Kind.SCRATCH} & ctx.only
    files = [p for d in ctx.scan_dirs for p in _walk(d) if is_qcow2(p)]
    infos: dict[str, ImageFileInfo] = {}
    for done, path in enumerate(files):
        ctx.progress(Kind.SCRATCH, done, len(files), path)
        try:
            infos[path] = await _info(path)
        except SnaptuiError:
            continue
    # A file that is the backing file of another file here is in use by that chain.
    for image in infos.values():
        if image.backing_file:
            chained.add(os.path.realpath(image.backing_file))
    for path, image in infos.items():
        if os.path.realpath(path) in owners:
            continue  # a domain's own disk: scan_internal covers it
        if Kind.INTERNAL in wanted:
            for snap in image.snapshots:
                yield _file_snapshot(ctx, path, snap)
        if Kind.SCRATCH in wanted:
            delta = _stray_delta(ctx, path, image, owners, chained)
            if delta is not None:
                yield delta
    ctx.progress(Kind.SCRATCH, len(files), len(files))
