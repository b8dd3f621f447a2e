"""Find and remove what interrupted snapshot runs leave behind.

The API the CLI and the dashboard share::

    report = await scan(host, store, scan_dirs=[...], only={Kind.SCRATCH}, older_than_s=3600,
                        domains=["web01"],                # only these domains' findings
                        on_progress=callback)             # or: async for f in iter_findings(...)
    chosen = [f for f in report.findings if preselected(f, unowned_of={"web01"})]
    result = await remove(finding, host, store)           # RemovalResult, reclaimed measured

Scanners never change anything; ``remove`` checks again before it acts and refuses (with the
reason) what has become unsafe since.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from snaptui.core.cleanup.context import ProgressCallback, ScanContext
from snaptui.core.cleanup.findings import (
    ALL_KINDS,
    DEFAULT_OLDER_THAN_S,
    Finding,
    Kind,
    RemovalResult,
    ScanProgress,
    ScanReport,
    parse_kinds,
)
from snaptui.core.cleanup.remove import remove, remove_all
from snaptui.core.cleanup.scan_disks import scan_directories, scan_internal
from snaptui.core.cleanup.scan_host import scan_host
from snaptui.core.cleanup.scan_images import scan_images
from snaptui.core.cleanup.scan_rbd import scan_rbd
from snaptui.core.cleanup.scan_restore import scan_pre_restore
from snaptui.core.cleanup.scan_scratch import scan_scratch
from snaptui.core.cleanup.selection import preselected
from snaptui.core.errors import BadInput, SnaptuiError

if TYPE_CHECKING:
    from snaptui.core.images.store import ImageStore
    from snaptui.core.libvirt.host import LibvirtHost

__all__ = [
    "ALL_KINDS", "DEFAULT_OLDER_THAN_S", "Finding", "Kind", "ProgressCallback", "RemovalResult",
    "ScanProgress",
    "ScanReport", "iter_findings", "parse_kinds", "preselected", "remove",
    "remove_all", "scan",
]

Scanner = Callable[[ScanContext], AsyncIterator[Finding]]


def _scanners(ctx: ScanContext) -> list[tuple[str, Scanner]]:
    only = ctx.only
    chosen: list[tuple[str, Scanner]] = []
    if ctx.host is not None and Kind.INTERNAL in only:
        chosen.append(("internal snapshots", scan_internal))
    if Kind.SCRATCH in only:
        chosen.append(("scratch files", scan_scratch))
    if ctx.host is not None and Kind.SCRATCH in only:
        chosen.append(("pre-restore disks", scan_pre_restore))
    if ctx.scan_dirs and only & {Kind.INTERNAL, Kind.SCRATCH}:
        chosen.append(("--scan directories", scan_directories))
    if ctx.host is not None and only & {Kind.MANAGED_SAVE, Kind.TRANSIENT, Kind.BLOCKJOB}:
        chosen.append(("managed saves, transient domains, block jobs", scan_host))
    if ctx.store is not None and Kind.IMAGES in only:
        chosen.append(("images", scan_images))
    if ctx.host is not None and Kind.RBD in only:
        chosen.append(("RBD snapshots and clones", scan_rbd))
    return chosen


async def iter_findings(
    host: LibvirtHost | None,
    store: ImageStore | None,
    *,
    scan_dirs: Iterable[str | Path] = (),
    only: Iterable[Kind] = ALL_KINDS,
    older_than_s: float = DEFAULT_OLDER_THAN_S,
    on_progress: ProgressCallback | None = None,
    problems: list[str] | None = None,
    domains: Iterable[str] = (),
    older_than_given: bool = False,
) -> AsyncIterator[Finding]:
    """Yield findings as each scanner finds them; a scanner that fails adds one line to
    ``problems`` (when given; else its error is raised) and the others go on. ``domains``
    (names or uuids; BadInput for one the host does not have) keeps only their findings."""
    dirs = tuple(Path(d).absolute() for d in scan_dirs)
    for directory in dirs:
        if not directory.is_dir():
            raise BadInput(f"--scan: {directory} is not a directory")
    ctx = await ScanContext.build(host, store, scan_dirs=dirs, only=frozenset(only),
                                  older_than_s=older_than_s, on_progress=on_progress,
                                  domains=tuple(domains) or None,
                                  older_than_given=older_than_given)
    seen: set[str] = set()
    for label, scanner in _scanners(ctx):
        try:
            async for finding in scanner(ctx):
                if ctx.only_domains is not None and finding.domain not in ctx.only_domains:
                    continue
                if finding.kind in ctx.only and finding.key not in seen:
                    seen.add(finding.key)
                    yield finding
        except SnaptuiError as err:
            if problems is None:
                raise
            problems.append(f"{label}: {err}")


async def scan(
    host: LibvirtHost | None,
    store: ImageStore | None,
    *,
    scan_dirs: Iterable[str | Path] = (),
    only: Iterable[Kind] = ALL_KINDS,
    older_than_s: float = DEFAULT_OLDER_THAN_S,
    on_progress: ProgressCallback | None = None,
    domains: Iterable[str] = (),
    older_than_given: bool = False,
) -> ScanReport:
    """Run every chosen scanner; the report lists findings and scanners that failed."""
    report = ScanReport()
    async for finding in iter_findings(host, store, scan_dirs=scan_dirs, only=only,
                                       older_than_s=older_than_s, on_progress=on_progress,
                                       problems=report.problems, domains=domains,
                                       older_than_given=older_than_given):
        report.findings.append(finding)
    return report

