"""How much of the host's storage a domain's disks take: their files' allocated blocks."""

from __future__ import annotations

import os

from snaptui.core.models import DomainInfo


def allocated_size(info: DomainInfo) -> int | None:
    """Bytes the host has allocated to the domain's snapshot disks (their top files' st_blocks;
    no qemu-img), or None when none of them could be measured.

    CD-ROMs (and other non-``disk`` devices) are left out: a snapshot never takes them, and an
    install ISO is often shared by many guests, so counting it made one guest look as large as
    every guest that has the ISO attached. A read-only ``disk`` still counts: it is snapshotted.
    """
    total, measured = 0, False
    for disk in info.snapshot_disks:
        if not disk.path or disk.source_type == "network":
            continue  # a network disk's name (pool/image) is no path on this host
        try:
            total += os.stat(disk.path).st_blocks * 512
        except OSError:
            continue  # missing, or a path on another host: unknown, not zero
        measured = True
    return total if measured else None
