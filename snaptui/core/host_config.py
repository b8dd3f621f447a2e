"""The host-wide settings core reads from ``config.toml`` (the dashboard's file, see ui/config.py).

Only the ``[jobs]`` table is core's: ``max_concurrent`` (default 2) is how many snapshot jobs
may run on this host at once (core/engine/reservations.py enforces it at preflight).
"""

from __future__ import annotations

from pathlib import Path

from snaptui.core.errors import BadInput
from snaptui.core.settings import config_path, read_toml

MAX_CONCURRENT_KEY = "jobs.max_concurrent"
DEFAULT_MAX_CONCURRENT = 2


def _jobs_table(path: Path) -> dict:
    jobs = read_toml(path).get("jobs", {})
    if not isinstance(jobs, dict):
        raise BadInput(f"config {path}: 'jobs' must be a table ([jobs])")
    for key in jobs:
        if key != "max_concurrent":
            raise BadInput(f"config {path}: unknown key 'jobs.{key}' (known: max_concurrent)")
    return jobs


def max_concurrent_jobs(path: Path | None = None) -> int:
    """``[jobs] max_concurrent`` of config.toml (default 2); a bad value is one BadInput line
    naming the key."""
    path = path or config_path()
    value = _jobs_table(path).get("max_concurrent", DEFAULT_MAX_CONCURRENT)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"config {path}: '{MAX_CONCURRENT_KEY}' must be a whole number >= 1, "
                       f"not {value!r}")
    return value
