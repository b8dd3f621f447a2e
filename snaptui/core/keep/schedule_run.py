"""``snaptui schedule run NAME``: what the timer's service runs, and what an operator runs by
hand. Each guest is snapshotted by snaptui's own ``snapshot`` command (so a ``HOST:DOMAIN``
runs on its host, as every snapshot does), at most ``[jobs] max_concurrent`` at once; then the
schedule's retention rules prune its backups. One summary line per guest goes to stdout (the
journal, under systemd) and to the audit log; the run's result is kept for ``schedule list``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from snaptui.core import audit
from snaptui.core.keep import schedules
from snaptui.core.keep.next_prune import local_guests, on_host, remote_guests
from snaptui.core.keep.schedule_stages import (
    PruneOutcome,
    VerifyOutcome,
    destination,
    fleet_hosts,
    run_stages,
)
from snaptui.core.keep.schedules import Schedule
from snaptui.core.settings import max_concurrent_jobs

SNAPSHOT_TIMEOUT_S = 24 * 3600.0


def snaptui_command() -> list[str]:
    """How this snaptui is started again: this interpreter with ``-m snaptui``."""
    return [sys.executable, "-m", "snaptui"]


def _common(schedule: Schedule) -> list[str]:
    argv = []
    if schedule.uri:
        argv += ["-c", schedule.uri]
    if schedule.cloud:
        argv += ["--os-cloud", schedule.cloud]
    if schedule.library:
        argv += ["--library", schedule.library]
    return argv


def snapshot_argv(schedule: Schedule, domain: str, stamp: str) -> list[str]:
    """The ``snaptui snapshot`` a run starts for one guest."""
    guest = domain.rpartition(":")[2]
    argv = ["snapshot", domain, "--name", f"{guest}-{schedule.type}-{stamp}",
            "--backup-type", schedule.type, "--json", *_common(schedule)]
    flags = {"mode": "--mode", "destination": "--to", "out_format": "--format",
             "priority": "--priority", "quiesce": "--quiesce"}
    for key, flag in flags.items():
        if schedule.snapshot.get(key):
            argv += [flag, schedule.snapshot[key]]
    if schedule.snapshot.get("stream") == "off":
        argv.append("--no-stream")
    if schedule.verify:
        argv.append("--verify")
        if schedule.verify_timeout is not None:
            argv += ["--verify-timeout", repr(float(schedule.verify_timeout))]
    return argv


@dataclass
class GuestResult:
    domain: str
    ok: bool
    image_id: str | None = None
    job_id: str | None = None
    seconds: float = 0.0
    error: str | None = None

    def line(self, name: str) -> str:
        if self.ok:
            return (f"schedule {name}: {self.domain}: ok, image {self.image_id} "
                    f"(job {self.job_id}, {self.seconds:.1f} s)")
        return f"schedule {name}: {self.domain}: failed: {self.error}"


@dataclass
class RunResult:
    schedule: str
    started: str
    finished: str = ""
    guests: list[GuestResult] = field(default_factory=list)
    pruned: int = 0
    prune_failed: int = 0
    prune_error: str | None = None
    prunes: list[dict[str, Any]] = field(default_factory=list)  # one per host
    verify_failed: int = 0  # stale images whose boot check failed (each marked)
    verify_error: str | None = None
    verified: list[dict[str, Any]] = field(default_factory=list)  # one per host
    paused: bool = False

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.guests) and not self.prune_failed \
            and self.prune_error is None and not self.verify_failed \
            and self.verify_error is None

    @property
    def result(self) -> str:
        if self.paused:
            return "paused"
        failed = sum(not g.ok for g in self.guests)
        if failed:
            return f"{failed} of {len(self.guests)} failed"
        if self.prune_failed or self.prune_error:
            return "prune failed"
        if self.verify_failed:
            return f"{self.verify_failed} stale image(s) failed verify"
        return "verify failed" if self.verify_error else "ok"

    def add_stages(self, prunes: list[PruneOutcome], verifies: list[VerifyOutcome]) -> None:
        self.prunes = [asdict(p) for p in prunes]
        self.pruned = sum(p.removed for p in prunes)
        self.prune_failed = sum(p.failed for p in prunes)
        errors = [f"{p.host}: {p.error}" for p in prunes if p.error]
        self.prune_error = "; ".join(errors) or None
        self.verified = [v.to_json() for v in verifies]
        self.verify_failed = sum(v.count("failed") for v in verifies)
        errors = [f"{v.host}: {v.error}" for v in verifies if v.error]
        self.verify_error = "; ".join(errors) or None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "result": self.result}


def guests_of(schedule: Schedule) -> list[str]:
    """The guests a run takes: the named ones, or every persistent domain of the host but
    the excluded ones (and snaptui's own throwaway verify domains)."""
    if not schedule.all_domains:
        return list(schedule.domains)
    from snaptui.core.libvirt.host import LibvirtHost
    from snaptui.core.verify.boot import VERIFY_PREFIX

    with LibvirtHost(schedule.uri) as host:
        found = host.list_domains()
    skip = set(schedule.exclude)
    return [d.name for d in found if d.persistent and d.name not in skip
            and d.uuid not in skip and not d.name.startswith(VERIFY_PREFIX)]


@dataclass(frozen=True)
class Hosts:
    """The fleet as a run sees it: its SSH hosts' names, and this host's name when there
    are several hosts (a guest of this host is then named ``HOST:GUEST`` to ``snapshot``)."""

    remote: frozenset[str] = frozenset()
    here: str | None = None

    @classmethod
    def of(cls, schedule: Schedule) -> Hosts:
        hosts = fleet_hosts(schedule.uri)
        here = next((h.name for h in hosts if not h.remote), None) if len(hosts) > 1 else None
        return cls(frozenset(h.name for h in hosts if h.remote), here)

    def argument(self, domain: str) -> str:
        """How ``snapshot`` is told the guest: as given, or ``HERE:GUEST`` in a fleet."""
        host, guest = on_host(domain, self.remote)
        return f"{self.here}:{guest}" if host is None and self.here else domain


def _snapshot(schedule: Schedule, domain: str, stamp: str, login: str | None = None,
              hosts: Hosts = Hosts()) -> GuestResult:
    """One guest's ``snaptui snapshot`` (a forwarded Glance login on its stdin, for a guest
    of this host; another host's snapshot logs in as it routes)."""
    t0 = time.monotonic()
    argv = [*snaptui_command(), *snapshot_argv(schedule, hosts.argument(domain), stamp)]
    if on_host(domain, hosts.remote)[0] is not None or destination(schedule, login) != "glance":
        login = None
    if login:  # Glance on the forwarded login (the host may have no cloud of its own)
        argv += [*([] if schedule.snapshot.get("destination") else ["--to", "glance"]),
                 "--auth-stdin"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False,  # noqa: S603
                              input=(json.dumps(login) + "\n") if login else "",
                              timeout=SNAPSHOT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        return GuestResult(domain, False, error=str(err))
    seconds = time.monotonic() - t0
    last: dict[str, Any] = {}
    job_id = None
    for text in proc.stdout.splitlines():
        try:
            event = json.loads(text)
        except ValueError:
            continue
        if isinstance(event, dict):
            last = event
            job_id = job_id or event.get("job_id")
    if proc.returncode == 0 and last.get("event") == "done":
        return GuestResult(domain, True, last.get("image_id"), job_id, seconds)
    why = last.get("error") or (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return GuestResult(domain, False, job_id=job_id, seconds=seconds,
                       error=" ".join(str(why).split()))


def run(schedule: Schedule, say: Callable[[str], None],
        login: str | None = None) -> RunResult:
    """Snapshot every guest, then each host's prune and stale verify; ``say`` gets each
    summary line; ``login``: a Keystone login forwarded to this run (``--auth-stdin``).
    BadInput when a run of the schedule is going on already."""
    from snaptui.core.keep.schedule_control import run_lock

    with run_lock(schedule.name):
        return _run(schedule, say, login)


def _run(schedule: Schedule, say: Callable[[str], None], login: str | None) -> RunResult:
    now = datetime.now(UTC)
    result = RunResult(schedule.name, now.isoformat(timespec="seconds"))
    if schedule.paused:
        result.paused = True
        say(f"schedule {schedule.name}: paused; nothing run (snaptui schedule resume "
            f"{schedule.name})")
        return _finish(schedule, result)
    stamp = now.strftime("%Y%m%d-%H%M")
    guests = guests_of(schedule)
    hosts = Hosts.of(schedule)
    with ThreadPoolExecutor(max_workers=max(1, max_concurrent_jobs())) as pool:
        for guest in pool.map(lambda d: _snapshot(schedule, d, stamp, login, hosts), guests):
            result.guests.append(guest)
            say(guest.line(schedule.name))
            audit.record("schedule-run", guest.domain, "ok" if guest.ok else "failed",
                         schedule=schedule.name, image=guest.image_id, job_id=guest.job_id,
                         error=guest.error)
    taken = [g.domain for g in result.guests]
    result.add_stages(*run_stages(schedule, local_guests(schedule, taken, hosts.remote),
                                  remote_guests(schedule, hosts.remote), login,
                                  snaptui_command(), _common(schedule), say))
    return _finish(schedule, result)


def _finish(schedule: Schedule, result: RunResult) -> RunResult:
    result.finished = datetime.now(UTC).isoformat(timespec="seconds")
    schedules.record_run(schedule.name, result.to_json())
    return result
