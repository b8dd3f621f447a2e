"""Re-verification: boot every image whose last proof (``snaptui_verified_at``) is older than
an age, or missing, oldest proof first, within a time budget; each pass marks the image
verified again, each failure marks it ``snaptui_verify_failed`` (listed by the dashboard).

A budget is never overrun: the next image is started only while the time left is at least
one boot check's timeout (its worst case).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from snaptui.core.keep.prune import IMAGE_TYPES
from snaptui.core.models import ImageRecord
from snaptui.core.present import parse_iso

BOOTABLE = ("raw", "qcow2")
FAILED_KEY, FAILED_AT_KEY = "snaptui_verify_failed", "snaptui_verify_failed_at"


def verified_at(image: ImageRecord) -> datetime | None:
    return parse_iso(str(image.properties.get("snaptui_verified_at") or "")) or None


def stale_images(images: Iterable[ImageRecord], older_than_s: float, now: float,
                 domains: frozenset[str] = frozenset()) -> list[ImageRecord]:
    """Active raw/qcow2 snapshots and backups never verified or verified longer ago than
    ``older_than_s``: the never-verified first (oldest image first), then the oldest proof."""
    chosen = []
    for image in images:
        props = image.properties
        if image.status != "active" or image.disk_format not in BOOTABLE \
                or props.get("image_type") not in IMAGE_TYPES:
            continue
        if domains and str(props.get("snaptui_domain") or "") not in domains \
                and (image.instance_uuid or "") not in domains:
            continue
        when = verified_at(image)
        if when is None or now - when.timestamp() >= older_than_s:
            chosen.append(image)

    def order(image: ImageRecord) -> tuple[int, str]:
        when = verified_at(image)
        return (0, image.created_at or "") if when is None else (1, when.isoformat())
    return sorted(chosen, key=order)


@dataclass
class StaleResult:
    image_id: str
    name: str
    outcome: str  # verified | failed | skipped
    detail: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def failed_properties(reason: str) -> dict[str, str]:
    return {FAILED_KEY: " ".join(reason.split())[:255],
            FAILED_AT_KEY: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


async def reverify(images: list[ImageRecord], *, budget_s: float | None, timeout_s: float,
                   check: Callable[[ImageRecord], Awaitable[str | None]],
                   said: Callable[[StaleResult], None]) -> list[StaleResult]:
    """``check`` each image in turn (None: verified, else why it failed) while the budget
    allows one more (the caller checked the first fits); the rest are ``skipped``."""
    start = time.monotonic()
    results: list[StaleResult] = []
    for image in images:
        left = None if budget_s is None else budget_s - (time.monotonic() - start)
        if results and left is not None and left < timeout_s:  # the first always fits
            result = StaleResult(image.id, image.name, "skipped", "the --budget is spent")
        else:
            t0 = time.monotonic()
            why = await check(image)
            result = StaleResult(image.id, image.name, "failed" if why else "verified",
                                 why or "", round(time.monotonic() - t0, 1))
        results.append(result)
        said(result)
    return results
