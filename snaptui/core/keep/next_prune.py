"""What the next run of each schedule would prune: the one selection ``schedule run`` prunes
with, and that the dashboard marks and simulates before it happens.

A schedule prunes, after its snapshots, the images of its guests on this host (the names it
takes; ``--all``: every persistent guest of the host but the excluded ones) of its own backup
type, with its keep rules, in the store it snapshots into. ``HOST:GUEST`` guests are pruned on
their host, by that host's run of the prune (``schedule_run``), not here. Pure, but for
``read_jobs`` (the journal: which images are proven ours, which a live job writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path

from snaptui.core.keep.prune import PrunePlan, PruneRow, Scope, plan_prune
from snaptui.core.keep.retention import Mark
from snaptui.core.keep.schedules import Schedule
from snaptui.core.models import ImageRecord


def on_host(domain: str, remote_hosts: Collection[str] | None) -> tuple[str | None, str]:
    """(the fleet host of ``HOST:GUEST`` when it is another host's, GUEST); a bare name, or a
    ``HOST:`` naming this host, is this host's guest (None). ``remote_hosts`` None: every
    ``HOST:`` is another host's."""
    host, sep, guest = domain.partition(":")
    if not sep:
        return None, domain
    if remote_hosts is not None and host not in remote_hosts:
        return None, guest
    return host, guest


def local_guests(schedule: Schedule, host_guests: Iterable[str] = (),
                 remote_hosts: Collection[str] | None = None) -> list[str]:
    """The guests of this host a run of ``schedule`` snapshots and prunes: its named guests
    but those of another fleet host (they run there), or with ``--all`` the host's guests
    (``host_guests``: names, as ``schedule_run.guests_of`` lists them) but the excluded."""
    if schedule.all_domains:
        skip = set(schedule.exclude)
        return [g for g in host_guests if g not in skip]
    return [guest for host, guest in (on_host(d, remote_hosts) for d in schedule.domains)
            if host is None]


def remote_guests(schedule: Schedule,
                  remote_hosts: Collection[str] | None = None) -> dict[str, list[str]]:
    """HOST → the guests of ``schedule`` that live on that fleet host (``HOST:GUEST``)."""
    found: dict[str, list[str]] = {}
    if schedule.all_domains:
        return found
    for domain in schedule.domains:
        host, guest = on_host(domain, remote_hosts)
        if host is not None:
            found.setdefault(host, []).append(guest)
    return found


def schedule_scope(schedule: Schedule, guests: Iterable[str]) -> Scope:
    """The images a schedule's prune looks at: its guests' backups of its type."""
    return Scope(domains=frozenset(guests), backup_type=schedule.type)


def prunes_store(schedule: Schedule, kind: str, location: str | None) -> bool:
    """Whether ``schedule`` snapshots into (and so prunes) the store shown: the same kind
    (its ``--to``, else a library when it names one and no cloud), and for a library the same
    directory."""
    chosen = schedule.snapshot.get("destination") or \
        ("library" if schedule.library and not schedule.cloud else None)
    if chosen is not None and chosen != kind:
        return False
    if kind == "library" and schedule.library and location:
        return Path(schedule.library).expanduser().resolve() == Path(location).resolve()
    return True


@dataclass
class NextPrune:
    """Each schedule's plan over the images shown, and which schedule removes which image."""

    plans: dict[str, PrunePlan] = field(default_factory=dict)
    removing: dict[str, str] = field(default_factory=dict)  # image id → schedule name

    def decisions(self, image_id: str) -> list[tuple[str, PrunePlan, PruneRow]]:
        """(schedule, its plan, the image's row) for each schedule whose prune sees it."""
        return [(name, plan, row) for name, plan in self.plans.items()
                for row in plan.rows if row.image.id == image_id]


def plan_next(images: Sequence[ImageRecord], schedules: Iterable[Schedule],
              host_guests: Iterable[str], *, host: str | None = None,
              job_known: Callable[[str], bool] = lambda _j: False,
              busy_ids: frozenset[str] = frozenset(), tz: tzinfo | None = None,
              remote_hosts: Collection[str] | None = None) -> NextPrune:
    """Every schedule with keep rules, planned as its next run would prune ``images``."""
    found = NextPrune()
    guests = list(host_guests)
    for schedule in schedules:
        if not schedule.keep:
            continue
        plan = plan_prune(images, schedule.rules,
                          schedule_scope(schedule, local_guests(schedule, guests,
                                                                remote_hosts)),
                          host=host, job_known=job_known, busy_ids=busy_ids, tz=tz)
        found.plans[schedule.name] = plan
        if schedule.paused:  # its next run prunes nothing: simulated, not marked
            continue
        for row in plan.rows:
            if row.decision.mark == Mark.REMOVE:
                found.removing.setdefault(row.image.id, schedule.name)
    return found


def read_plan(images: Sequence[ImageRecord], schedule: Schedule, host_guests: Iterable[str],
              kind: str, location: str | None,
              remote_hosts: Collection[str] | None = None) -> PrunePlan | str:
    """The simulator: ``schedule``'s next prune over the store shown, every image of its guests
    with keep (which rule, or why) or remove; or why there is none to show."""
    if not schedule.keep:
        return f"schedule {schedule.name} has no keep rule: its runs prune nothing"
    if not prunes_store(schedule, kind, location):
        return (f"schedule {schedule.name} snapshots into another store than the one shown "
                f"({kind} {location or ''}".rstrip() + ")")
    return read_next(images, [schedule], host_guests, kind, location,
                     remote_hosts).plans[schedule.name]


def read_next(images: Sequence[ImageRecord], schedules: Iterable[Schedule],
              host_guests: Iterable[str], kind: str, location: str | None,
              remote_hosts: Collection[str] | None = None) -> NextPrune:
    """``plan_next`` for the schedules that prune this store, with this host's journal (what
    proves an image ours, which images a live job writes). Reads files: call off the UI."""
    mine = [s for s in schedules if s.keep and prunes_store(s, kind, location)]
    if not mine:
        return NextPrune()
    from snaptui.core.cleanup.context import read_jobs

    jobs = read_jobs(time.time())
    return plan_next(images, mine, host_guests, job_known=jobs.journal_ids.__contains__,
                     busy_ids=frozenset(jobs.image_ids), remote_hosts=remote_hosts)
