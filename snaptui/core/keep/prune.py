"""Prune: apply retention rules (``retention``) to the images of each guest, in Glance or the
library, and delete what no rule keeps.

Groups as Proxmox prunes a backup group: one guest (``instance_uuid``), one backup type (none
for plain snapshots), one disk (``snaptui_disk``; the root disk for images without one). Only
images proven snaptui's on this host are candidates (``ownership``); another host's images are
that host's to prune (``HOST:`` in a fleet), images a live job is writing are never
candidates, and images not active are cleanup's business. Those are shown, kept, and not
counted, as protected images are.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from snaptui.core import audit
from snaptui.core.cleanup.context import read_jobs
from snaptui.core.errors import NotFound, SnaptuiError
from snaptui.core.images.store import ImageStore
from snaptui.core.keep.ownership import not_ours
from snaptui.core.keep.retention import Candidate, Decision, KeepRules, Mark, decide
from snaptui.core.models import ImageRecord
from snaptui.core.present import parse_iso

IMAGE_TYPES = ("snapshot", "backup")


@dataclass(frozen=True)
class Scope:
    """Which images prune looks at: ``domains`` (names or uuids; empty: all) and one backup
    type (None: every type, each its own group, plain snapshots one more)."""

    domains: frozenset[str] = frozenset()
    uuids: frozenset[str] = frozenset()  # the uuids the domain names resolved to
    backup_type: str | None = None

    def wants(self, image: ImageRecord) -> bool:
        props = image.properties
        if props.get("image_type") not in IMAGE_TYPES or not image.instance_uuid:
            return False
        if self.backup_type is not None and (props.get("image_type") != "backup"
                                             or str(props.get("backup_type")) != self.backup_type):
            return False
        if not self.domains and not self.uuids:
            return True
        return (image.instance_uuid in self.uuids or image.instance_uuid in self.domains
                or str(props.get("snaptui_domain") or "") in self.domains)


@dataclass
class PruneRow:
    """One image in the simulator's table."""

    image: ImageRecord
    group: tuple[str, str, str]  # (guest, backup type or "", disk)
    decision: Decision
    result: str = ""  # after a real prune: deleted | failed: WHY

    def to_json(self) -> dict[str, Any]:
        return {"image_id": self.image.id, "name": self.image.name,
                "created_at": self.image.created_at, "guest": self.group[0],
                "instance_uuid": self.image.instance_uuid, "backup_type": self.group[1] or None,
                "disk": self.group[2], "mark": str(self.decision.mark),
                "keep": self.decision.keep, "rule": self.decision.rule,
                "reason": self.decision.reason, "decision": self.decision.text(),
                "snaptui_host": self.image.properties.get("snaptui_host"),
                **({"result": self.result} if self.result else {})}


@dataclass
class PrunePlan:
    rules: KeepRules
    rows: list[PruneRow] = field(default_factory=list)

    @property
    def removals(self) -> list[PruneRow]:
        return [r for r in self.rows if r.decision.mark == Mark.REMOVE]


def group_of(image: ImageRecord) -> tuple[str, str, str]:
    props = image.properties
    guest = str(props.get("snaptui_domain") or image.instance_uuid or "?")
    kind = str(props.get("backup_type") or "") if props.get("image_type") == "backup" else ""
    return guest, kind, str(props.get("snaptui_disk") or "")


def _key(image: ImageRecord) -> tuple[str, str, str]:
    """The group an image is pruned in: by instance uuid, not by the name it carries."""
    _, kind, disk = group_of(image)
    return str(image.instance_uuid), kind, disk


def plan_prune(images: Iterable[ImageRecord], rules: KeepRules, scope: Scope, *,
               host: str | None = None, job_known: Callable[[str], bool] = lambda _j: False,
               busy_ids: frozenset[str] = frozenset(), tz: tzinfo | None = None) -> PrunePlan:
    """Every image in scope, grouped, with keep (which rule, or why) or remove."""
    host = host or socket.gethostname()
    groups: dict[tuple[str, str, str], list[ImageRecord]] = {}
    for image in images:
        if scope.wants(image):
            groups.setdefault(_key(image), []).append(image)
    plan = PrunePlan(rules)
    for key in sorted(groups, key=lambda k: (group_of(groups[k][0]), k)):
        members = groups[key]
        by_id = {i.id: i for i in members}
        candidates = []
        for image in members:
            when = parse_iso(image.created_at) or datetime.fromtimestamp(0).astimezone()
            left = not_ours(image, host=host, job_known=job_known)
            if left is None and image.status != "active":
                left = f"{image.status}, not active (snaptui cleanup's business)"
            candidates.append(Candidate(image.id, when, protected=image.protected,
                                        busy=image.id in busy_ids, left=left))
        for decision in decide(candidates, rules, tz):
            image = by_id[decision.id]
            plan.rows.append(PruneRow(image, group_of(image), decision))
    return plan


def plan_for_store(store: ImageStore, rules: KeepRules, scope: Scope,
                   tz: tzinfo | None = None) -> PrunePlan:
    """``plan_prune`` over the store's images, with this host's journal and live jobs."""
    jobs = read_jobs(time.time())
    return plan_prune(store.iter_images(), rules, scope, job_known=jobs.journal_ids.__contains__,
                      busy_ids=frozenset(jobs.image_ids), tz=tz)


def apply(store: ImageStore, plan: PrunePlan,
          on_row: Callable[[PruneRow], None] | None = None) -> PrunePlan:
    """Delete every image the plan removes; a failed delete is recorded in its row and the
    prune goes on. Each delete is audited."""
    for row in plan.removals:
        image = row.image
        error = None
        try:
            store.delete(image.id)
            row.result = "deleted"
        except NotFound:
            row.result = "deleted (already gone)"
        except (SnaptuiError, OSError) as err:
            error = " ".join(str(err).split()) or type(err).__name__
            row.result = f"failed: {error}"
        audit.record("prune", image.id, "failed" if error else "ok", image=image.id,
                     image_name=image.name, domain=row.group[0],
                     domain_uuid=image.instance_uuid, backup_type=row.group[1] or None,
                     disk=row.group[2], rules=plan.rules.text(), error=error)
        if on_row is not None:
            on_row(row)
    return plan
