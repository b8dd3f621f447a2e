"""What the dashboard says about a guest's keeping: its last good image and its schedules.

Pure over image records and schedule definitions (read by the caller)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from snaptui.core.errors import SnaptuiError
from snaptui.core.keep import schedules as schedule_files
from snaptui.core.keep.schedules import Schedule
from snaptui.core.keep.stale import FAILED_KEY
from snaptui.core.models import ImageRecord
from snaptui.core.present import parse_iso

IMAGE_TYPES = ("snapshot", "backup")
DAY_S = 86400.0


def is_backup(image: ImageRecord) -> bool:
    return image.properties.get("image_type") == "backup"


def last_good(images: Iterable[ImageRecord], instance_uuid: str) -> ImageRecord | None:
    """The guest's newest active snapshot or backup whose boot check did not fail."""
    good = [i for i in images if i.instance_uuid == instance_uuid and i.status == "active"
            and i.properties.get("image_type") in IMAGE_TYPES
            and not i.properties.get(FAILED_KEY)]
    return max(good, key=lambda i: i.created_at or "", default=None)


def age_s(image: ImageRecord, now: float) -> float | None:
    made = parse_iso(image.created_at)
    return None if made is None else max(0.0, now - made.timestamp())


def schedules_of(schedules: Iterable[Schedule], name: str, uuid: str) -> list[Schedule]:
    """The schedules that snapshot this guest (named, or --all without excluding it)."""
    return [s for s in schedules
            if (s.all_domains and name not in s.exclude and uuid not in s.exclude)
            or any(d.rpartition(":")[2] in (name, uuid) for d in s.domains)]


@dataclass(frozen=True)
class GuestKeep:
    last: ImageRecord | None
    age_s: float | None
    schedules: tuple[Schedule, ...]

    @property
    def stale(self) -> bool:
        """No good image, or the last is older than a day."""
        return self.age_s is None or self.age_s > DAY_S


def guest_keep(images: Iterable[ImageRecord], schedules: Iterable[Schedule], name: str,
               uuid: str, now: float) -> GuestKeep:
    last = last_good(images, uuid)
    return GuestKeep(last, age_s(last, now) if last else None,
                     tuple(schedules_of(schedules, name, uuid)))


def read_schedules() -> list[Schedule]:
    """Every schedule that loads (one the operator broke by hand is left out, not fatal)."""
    found = []
    for name in schedule_files.names():
        try:
            found.append(schedule_files.load(name))
        except (SnaptuiError, OSError):
            continue
    return found
