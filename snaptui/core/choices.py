"""Rules the CLI and the dashboard must apply the same way: what ``auto`` mode becomes, how much
a domain has allocated, and where images go when no destination is named (preflight and the
snapshot dialog, ``snaptui domains`` and the Domains pane, ``snaptui images`` and the
dashboard's launcher all ask here).
"""

from __future__ import annotations

import os

from snaptui.core.errors import BadInput
from snaptui.core.models import DiskInfo, DomainInfo, DomainState, Mode

DESTINATIONS = ("glance", "library")


def snapshot_disks(info: DomainInfo) -> list[DiskInfo]:
    """The disks a snapshot can take: ``device='disk'`` (not CD-ROMs, floppies or LUNs)."""
    return list(info.snapshot_disks)


def auto_mode(info: DomainInfo, reasons: dict[Mode, str | None]) -> tuple[Mode, str]:
    """What ``auto`` becomes on ``info`` and why: live when the guest runs and live copy can
    work (``reasons[Mode.LIVE]`` is None); on a running Nova instance, else backup (Nova must
    never see it stop); else cold. ``reasons`` is what
    ``preflight.available_modes`` says of each mode."""
    live_blocked = reasons.get(Mode.LIVE)
    if live_blocked is None and info.state == DomainState.RUNNING:
        if info.nova is not None:
            return Mode.LIVE, ("it is a Nova instance, so the guest must not stop, and it runs "
                               "on file-backed disks")
        return Mode.LIVE, "the guest runs on file-backed disks (never paused)"
    if info.nova is not None and info.state in (DomainState.RUNNING, DomainState.PAUSED) \
            and reasons.get(Mode.BACKUP) is None:
        return Mode.BACKUP, (f"it is a Nova instance, so the guest must not stop "
                             f"(live: {live_blocked or info.state})")
    return Mode.COLD, live_blocked or f"{info.name} is {info.state}"


def allocated_size(info: DomainInfo) -> int | None:
    """Bytes the host has allocated to the domain's snapshot disks (their top files' st_blocks;
    no qemu-img), or None when none of them could be measured.

    CD-ROMs (and other non-``disk`` devices) are left out: a snapshot never takes them, and an
    install ISO is often shared by many guests, so counting it made one guest look as large as
    every guest that has the ISO attached. A read-only ``disk`` still counts: it is snapshotted.
    """
    total, measured = 0, False
    for disk in snapshot_disks(info):
        if not disk.path or disk.source_type == "network":
            continue  # a network disk's name (pool/image) is no path on this host
        try:
            total += os.stat(disk.path).st_blocks * 512
        except OSError:
            continue  # missing, or a path on another host: unknown, not zero
        measured = True
    return total if measured else None


def resolve_destination(destination: str | None, cloud: str | None,
                        library: str | os.PathLike[str] | None = None) -> str:
    """'glance' or 'library': ``destination`` when named; else the library when a library
    directory was given on the command line and no cloud was (the explicit option beats an
    OS_CLOUD in the environment); else glance when a cloud is configured, else the library.
    """
    if destination in DESTINATIONS:
        return destination
    if destination is not None:
        raise BadInput(f"unknown destination {destination!r} (glance or library)")
    if library and not cloud:
        return "library"
    from snaptui.core.cloud_config import cloud_configured  # openstacksdk: only when needed

    return "glance" if cloud_configured(cloud) else "library"
