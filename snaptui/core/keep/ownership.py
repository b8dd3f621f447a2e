"""Whether an image is proven snaptui's on this host: the rule cleanup, rotation and prune
share (docs/safety.md). Pure: the caller says which job ids its journal holds."""

from __future__ import annotations

from collections.abc import Callable

from snaptui.core.models import ImageRecord

NOT_MADE_BY_SNAPTUI = "not made by snaptui"


def not_ours(image: ImageRecord, *, host: str, job_known: Callable[[str], bool]) -> str | None:
    """Why ``image`` is not proven ours on ``host``, or None when it is: its ``snaptui_job``
    names a job of this host's journal and its ``snaptui_host`` (if set) is this host."""
    job = image.properties.get("snaptui_job")
    if not job:
        return f"{NOT_MADE_BY_SNAPTUI} (no snaptui_job property)"
    made_on = image.properties.get("snaptui_host")
    if made_on and str(made_on) != host:
        return f"made by a job on another host ({str(made_on)[:64]!r})"
    if not job_known(str(job)):
        return f"its snaptui_job {str(job)[:64]!r} is not in this host's journal"
    return None
