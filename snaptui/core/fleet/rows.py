"""The rows another host's snaptui answers ``jobs --json`` and ``recover --json`` with, checked
before they are shown or acted on: a host's answer is data, never trusted. A bad row is left out
and counted in one problem line naming the host; the good rows are still listed."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from snaptui.core.engine.journal import JOB_ID_RE
from snaptui.core.engine.states import JobStatus

log = logging.getLogger(__name__)

MAX_TEXT = 4096  # a name, a mode, an error or an outcome longer than this is no row of ours
STATUSES = frozenset(str(s) for s in JobStatus)

RowCheck = Callable[[dict[str, Any]], str | None]


def _text(row: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = row.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        return f"{key} is not a text of at most {MAX_TEXT} characters"
    return None


def _job_id(row: dict[str, Any]) -> str | None:
    job_id = row.get("job_id")
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        return "job_id is not a job id"
    return None


def _number(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{key} is not a number"
    return None


def job_row_problem(row: dict[str, Any]) -> str | None:
    """Why a ``jobs --json`` row cannot be shown, or None when it can."""
    status = row.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        return _job_id(row) or "status is not a job status"
    checks = [_job_id(row), _text(row, "domain"), _text(row, "mode"),
              _text(row, "image_name", optional=True), _text(row, "error", optional=True),
              *(_number(row, key) for key in ("started", "finished", "downtime_s", "pid"))]
    if not isinstance(row.get("steps", []), list):
        checks.append("steps is not a list")
    return next((c for c in checks if c), None)


def recover_row_problem(row: dict[str, Any]) -> str | None:
    """Why a ``recover --json`` row cannot be shown, or None when it can."""
    return _job_id(row) or _text(row, "outcome")


def checked_rows(host_name: str, rows: Iterable[dict[str, Any]], check: RowCheck, *,
                 not_objects: int = 0, problems: list[str] | None = None
                 ) -> list[dict[str, Any]]:
    """The rows ``check`` accepts, each with its ``host``; the others are counted in one line
    appended to ``problems`` (or logged as a warning when there is no list)."""
    good: list[dict[str, Any]] = []
    bad = not_objects
    first = "not a JSON object" if not_objects else ""
    for row in rows:
        why = check(row)
        if why is None:
            good.append({**row, "host": host_name})
        else:
            bad += 1
            first = first or why
    if bad:
        line = (f"{host_name}: {bad} row{'s' if bad != 1 else ''} of its answer "
                f"{'are' if bad != 1 else 'is'} not valid and left out (first: {first})")
        if problems is None:
            log.warning("%s", line)
        else:
            problems.append(line)
    return good
