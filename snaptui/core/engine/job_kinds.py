"""Which workflow a journaled job runs, read from its plan's ``kind``.

A snapshot is the engine's own workflow. Other kinds (a restore) live in packages above the
engine and register here when imported; the job process and ``recover`` import them by the
module named in ``PROVIDERS``, so a journal of any kind is rebuilt and undone the same way.
A plan without ``kind`` is a snapshot's (every journal written before kinds existed).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from snaptui.core.engine.plan import PlanDataError

if TYPE_CHECKING:
    from snaptui.core.engine.context import JobContext
    from snaptui.core.engine.plan import Plan
    from snaptui.core.engine.runner import Step

SNAPSHOT = "snapshot"
# Kinds defined above the engine: the module that registers each (imported on first need).
PROVIDERS = {"restore": "snaptui.core.restore.workflow"}


@dataclass(frozen=True)
class JobKind:
    """How to rebuild a job of this kind from its journal: its plan, steps and summary."""

    name: str
    load_plan: Callable[[Any, str | None], Plan]  # (plan JSON, job id) -> plan
    build_steps: Callable[[Plan], list[Step]]
    summarize: Callable[[JobContext], dict[str, Any]]


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> None:
    _KINDS[kind.name] = kind


def _snapshot_kind() -> JobKind:
    from snaptui.core.engine.execute import summarize
    from snaptui.core.engine.plan import Plan
    from snaptui.core.engine.workflows import build_steps

    return JobKind(SNAPSHOT, lambda data, job_id: Plan.from_json(data, job_id=job_id),
                   build_steps, summarize)


def kind_named(name: str) -> JobKind:
    """The kind ``name``; PlanDataError for one this snaptui does not know."""
    if name == SNAPSHOT:
        return _snapshot_kind()
    if name not in _KINDS and name in PROVIDERS:
        importlib.import_module(PROVIDERS[name])
    if name not in _KINDS:
        raise PlanDataError(f"unknown job kind {name!r} (written by a newer snaptui?)")
    return _KINDS[name]


def kind_of_json(data: Any) -> JobKind:
    """The kind of a journal header's plan."""
    name = data.get("kind") if isinstance(data, dict) else None
    return kind_named(str(name or SNAPSHOT))


def kind_of(plan: Any) -> JobKind:
    """The kind of a plan object (a snapshot Plan has no ``kind``)."""
    return kind_named(str(getattr(plan, "kind", None) or SNAPSHOT))


def load_plan(data: Any, job_id: str | None = None) -> Plan:
    """The plan of a journal header, of whatever kind."""
    return kind_of_json(data).load_plan(data, job_id)


def rebuild_steps(data: Any, job_id: str | None = None) -> list[Step]:
    """The steps of a journal header's plan, as its job runs and undoes them."""
    kind = kind_of_json(data)
    return kind.build_steps(kind.load_plan(data, job_id))
