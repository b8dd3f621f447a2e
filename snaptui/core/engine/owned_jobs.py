"""Which block and backup jobs on a guest are this job's own, read from libvirt's live XML.

An undo may run days later (recover at a command's start), when the operator's own migration,
blockcommit or backup runs on the guest: it aborts a job only when the job's destination is
the plan's file (the delta, the backup target), and otherwise leaves it and says so.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable

import libvirt


def block_job_destination(domain_xml: str, target: str) -> str | None:
    """Destination file of the block job on disk ``target`` (its ``<mirror>``), or None."""
    root = ET.fromstring(domain_xml)
    for disk in root.findall("devices/disk"):
        node = disk.find("target")
        if node is None or node.get("dev") != target:
            continue
        mirror = disk.find("mirror")
        if mirror is None:
            return None
        source = mirror.find("source")
        return mirror.get("file") or (source.get("file") if source is not None else None)
    return None


def backup_files(backup_xml: str) -> set[str]:
    """Every file a backup job writes: push targets and pull-mode scratch files."""
    root = ET.fromstring(backup_xml)
    found = set()
    for disk in root.findall("disks/disk"):
        for tag in ("target", "scratch"):
            node = disk.find(tag)
            if node is not None and node.get("file"):
                found.add(str(node.get("file")))
    return found


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def foreign_block_job(dom: libvirt.virDomain, target: str, ours: str | None) -> str | None:
    """Why the block job on ``target`` is not ours to abort (None: it is, or there is none)."""
    if not dom.blockJobInfo(target, 0):
        return None
    dest = block_job_destination(dom.XMLDesc(0), target)
    if ours is not None and dest is not None and _same(dest, ours):
        return None
    return (f"the block job on {target} copies to {dest or 'an unknown destination'}, not "
            f"snaptui's {ours or 'file'}: left running")


def foreign_domain_job(dom: libvirt.virDomain, ours: Iterable[str]) -> str | None:
    """Why the domain's job is not ours to abort: not a backup (a migration, a save), or a
    backup writing other files than the plan's. None when it is ours or there is none."""
    if dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    try:
        files = backup_files(dom.backupGetXMLDesc(0))
    except libvirt.libvirtError:
        return "the guest runs a domain job that is not a backup: left running"
    mine = list(ours)
    if files and mine and all(any(_same(f, m) for m in mine) for f in files):
        return None
    shown = ", ".join(sorted(files)) or "no file"
    return f"the guest's backup job writes {shown}, not snaptui's files: left running"
