"""What every scanner needs, read once per scan: domains, live jobs, open files, options."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from snaptui.core.cleanup.findings import (
    ALL_KINDS,
    DEFAULT_OLDER_THAN_S,
    Kind,
    ScanProgress,
)
from snaptui.core.errors import BadInput
from snaptui.core.fleet.hosts import refuse_remote_disks
from snaptui.core.models import DomainInfo

if TYPE_CHECKING:
    from snaptui.core.engine.journal import JobRecord
    from snaptui.core.images.store import ImageStore
    from snaptui.core.libvirt.host import LibvirtHost

ProgressCallback = Callable[[ScanProgress], None]


@dataclass
class LiveJobs:
    """Jobs of ours whose process still runs: what they hold must not be touched."""

    job_ids: set[str] = field(default_factory=set)
    domain_uuids: set[str] = field(default_factory=set)
    image_ids: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    # every job in the journal (live or not) by domain uuid: (job id, mode, status, facts)
    by_domain: dict[str, list[tuple[str, str, str, dict]]] = field(default_factory=dict)
    # every job of this host's journal (live or not): what proves an image is ours
    journal_ids: set[str] = field(default_factory=set)
    # when each job of the journal last wrote it (its file's mtime): a managed save newer
    # than its job's last record was not made by that job
    last_write: dict[str, float] = field(default_factory=dict)
    # clones of direct snapshots the journal's jobs named: ``fsid/pool/name`` -> (job id,
    # the cloud the job's image went to)
    rbd_clones: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def note_rbd(self, job: JobRecord) -> None:
        """Remember the clones a job's plan names (live or not: they prove a clone ours)."""
        for disk in job.plan.get("disks", []):
            rbd = disk.get("rbd") if isinstance(disk, dict) else None
            if isinstance(rbd, dict) and rbd.get("clone_name"):
                key = f"{rbd.get('fsid')}/{rbd.get('clone_pool')}/{rbd['clone_name']}"
                cloud = job.plan.get("cloud")
                self.rbd_clones[key] = (job.job_id, str(cloud) if cloud else None)

    def hold(self, job: JobRecord) -> None:
        """Count a live job: its domain, the images and files it made or will make."""
        self.job_ids.add(job.job_id)
        if job.plan.get("domain_uuid"):
            self.domain_uuids.add(str(job.plan["domain_uuid"]))
        for key, value in job.facts.items():
            if key.startswith("image:") and value:
                self.image_ids.add(str(value))
            elif isinstance(value, str) and value.startswith("/"):
                self.paths.add(os.path.realpath(value))
        for disk in job.plan.get("disks", []):
            for key in ("output_path", "delta_path", "backup_path"):
                if disk.get(key):
                    self.paths.add(os.path.realpath(disk[key]))


def read_jobs(now: float) -> LiveJobs:
    """Fold the journal: which jobs are alive and what they made (paths, image ids)."""
    from snaptui.core.engine.jobs import pid_runs_job
    from snaptui.core.engine.journal import iter_jobs
    from snaptui.core.engine.recover import STARTUP_GRACE_S

    live = LiveJobs()
    for job in iter_jobs():
        live.journal_ids.add(job.job_id)
        live.note_rbd(job)
        with contextlib.suppress(OSError):
            live.last_write[job.job_id] = job.path.stat().st_mtime
        uuid = str(job.plan.get("domain_uuid") or "")
        if uuid:
            live.by_domain.setdefault(uuid, []).append(
                (job.job_id, job.mode, job.status, dict(job.facts)))
        if job.terminal:
            continue
        starting = job.pid is None and job.started is not None and \
            now - job.started < STARTUP_GRACE_S
        if not (starting or pid_runs_job(job.pid, job.job_id)):
            continue  # dead: recover will undo it, and its leftovers are ours to clean
        live.hold(job)
    _add_foreign_jobs(live)
    return live


def host_job_processes() -> list[tuple[str, int, Path]]:
    """Snapshot job processes running on this host under any state dir, as this snaptui's
    uid: (job id, pid, journal path). A look-alike of another user is not trusted (its argv
    and environment are its own to choose); other SNAPTUI_STATE_DIRs have journals we never
    list."""
    from snaptui.core.engine.job_processes import environ, job_processes
    from snaptui.core.paths import state_dir

    found = []
    for job in job_processes(ours_only=True):
        state = environ(job.pid).get(b"SNAPTUI_STATE_DIR")
        with contextlib.suppress(UnicodeDecodeError):
            base = Path(state.decode()) if state else state_dir()
            found.append((job.job_id, job.pid, base / "jobs" / f"{job.job_id}.jsonl"))
    return found


def _add_foreign_jobs(live: LiveJobs) -> None:
    """Count job processes of other state dirs as live too (their journal names the domain)."""
    from snaptui.core.engine.journal import fold, read_events

    for job_id, _pid, path in host_job_processes():
        if job_id in live.job_ids:
            continue
        live.job_ids.add(job_id)
        with contextlib.suppress(OSError):
            live.hold(fold(job_id, path, read_events(path)))


def open_files() -> dict[str, set[int]]:
    """Every file some process holds open (real path -> pids), read from /proc/*/fd."""
    held: dict[str, set[int]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("/"):
                        held.setdefault(target, set()).add(int(proc.name))
    return held


@dataclass
class ScanContext:
    """Shared by the scanners of one scan (built by ``ScanContext.build``)."""

    host: LibvirtHost | None
    store: ImageStore | None
    scan_dirs: tuple[Path, ...] = ()
    only: frozenset[Kind] = ALL_KINDS
    older_than_s: float = DEFAULT_OLDER_THAN_S
    # the operator chose the age (--older-than, the dashboard's age key): only then is a
    # restore's pre-restore disk pre-selected
    older_than_given: bool = False
    on_progress: ProgressCallback | None = None
    now: float = field(default_factory=time.time)
    domains: list[DomainInfo] = field(default_factory=list)
    jobs: LiveJobs = field(default_factory=LiveJobs)
    # ``--domain``: names of the only domains whose findings the scan reports (None: all)
    only_domains: frozenset[str] | None = None
    _open: dict[str, set[int]] | None = None

    @classmethod
    async def build(cls, host: LibvirtHost | None, store: ImageStore | None, *,
                    scan_dirs: tuple[Path, ...] = (), only: frozenset[Kind] = ALL_KINDS,
                    older_than_s: float = DEFAULT_OLDER_THAN_S,
                    on_progress: ProgressCallback | None = None,
                    domains: Iterable[str] | None = None,
                    older_than_given: bool = False) -> ScanContext:
        if host is not None:  # its disks must be this host's files
            refuse_remote_disks(host.uri)
        ctx = cls(host=host, store=store, scan_dirs=scan_dirs, only=only,
                  older_than_s=older_than_s, on_progress=on_progress,
                  older_than_given=older_than_given)
        if host is not None:
            ctx.domains = await asyncio.to_thread(host.list_domains)
        if domains is not None:
            ctx.only_domains = ctx.resolve_domains(domains)
        ctx.jobs = await asyncio.to_thread(read_jobs, ctx.now)
        return ctx

    def resolve_domains(self, wanted: Iterable[str]) -> frozenset[str]:
        """``--domain`` values (names, or uuids) -> domain names; BadInput naming the first
        that is no domain of this host."""
        if self.host is None:
            raise BadInput("--domain needs a libvirt connection")
        by_name = {d.name: d.name for d in self.domains}
        by_uuid = {d.uuid: d.name for d in self.domains}
        names = set()
        for value in wanted:
            name = by_name.get(value) or by_uuid.get(value.lower())
            if name is None:
                raise BadInput(f"--domain: no domain {value!r} on {self.uri}")
            names.add(name)
        return frozenset(names)

    def wanted(self, dom: DomainInfo) -> bool:
        """Whether the scan reports this domain's findings (``--domain``)."""
        return self.only_domains is None or dom.name in self.only_domains

    def domain_of_job(self, job_id: str | None) -> str | None:
        """Name of the domain a job of our journal ran on (None when unknown or gone)."""
        if not job_id:
            return None
        for dom in self.domains:
            if any(job[0] == job_id for job in self.jobs.by_domain.get(dom.uuid, ())):
                return dom.name
        return None

    def domain_of_uuid(self, uuid: str | None) -> str | None:
        return next((d.name for d in self.domains if uuid and d.uuid == uuid), None)

    @property
    def uri(self) -> str:
        return self.host.uri if self.host is not None else ""

    def virsh(self, *argv: str) -> tuple[str, ...]:
        """``virsh -c URI ...`` as an argv (for the dry-run commands)."""
        return ("virsh", "-c", self.uri, *argv)

    def progress(self, kind: Kind, done: int, total: int | None, what: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(ScanProgress(kind, done, total, what))

    def holders(self, path: str) -> set[int]:
        """Pids holding ``path`` open (read once per scan, lazily)."""
        if self._open is None:
            self._open = open_files()
        return self._open.get(os.path.realpath(path), set())

    def disk_owners(self) -> dict[str, DomainInfo]:
        """Real path of every domain disk -> its domain."""
        owners = {}
        for dom in self.domains:
            for disk in dom.disks:
                if disk.path:
                    owners[os.path.realpath(disk.path)] = dom
        return owners

    def old_enough(self, age_s: float | None) -> bool:
        return age_s is not None and age_s >= self.older_than_s
