"""What a running step sees: the plan, the facts recorded so far, progress and cancellation."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from snaptui.core.engine.facts import FactKey
from snaptui.core.engine.journal import JournalWriter
from snaptui.core.engine.plan import Plan

if TYPE_CHECKING:
    from snaptui.core.images.store import ImageStore
    from snaptui.core.libvirt.host import LibvirtHost

log = logging.getLogger(__name__)

# Functions (domain, current step name) -> domain object that a test installs in a job process
# to inject faults libvirt cannot be made to produce (tests/fault_seam/); empty in production.
DOMAIN_WRAPPERS: list[Callable[[Any, Callable[[], str | None]], Any]] = []
# The same for the Ceph cluster connection of an RBD step (engine/steps/rbd.py).
CLUSTER_WRAPPERS: list[Callable[[Any, Callable[[], str | None]], Any]] = []

PROGRESS_INTERVAL_S = 0.2  # at most 5 journal lines a second per step, at least 2 while it moves


class JobCancelled(Exception):
    """The operator cancelled the job; the runner rolls back."""


@dataclass
class JobContext:
    """Shared by every step and undo of one job; undo works from ``plan`` and ``facts`` alone."""

    plan: Plan
    journal: JournalWriter
    host_factory: Callable[[], LibvirtHost]
    store_factory: Callable[[], ImageStore]
    facts: dict[str, Any] = field(default_factory=dict)
    cancel_flag: threading.Event = field(default_factory=threading.Event)
    current_step: str | None = None
    mute_progress: bool = False  # the demo's pacing reports progress in the step's stead
    cancel_reason: str | None = None  # set with request_cancel(reason): not the operator's
    undoing: bool = False  # in rollback: a journal write that fails never stops an undo
    # How long an undo waits for a restarting libvirtd (None: the runner's default); recover,
    # which runs at every command's start, waits briefly and tries again at the next.
    undo_retry_s: float | None = None
    # Undos whose failure is already in the audit log (step -> error), as recover finds them:
    # a retry that fails the same way again is not audited twice.
    audited_undo_failures: dict[str, str] = field(default_factory=dict)
    _host: LibvirtHost | None = None
    _store: ImageStore | None = None
    _last_progress: float = 0.0
    _loop: asyncio.AbstractEventLoop | None = None
    _cancel_event: asyncio.Event | None = None
    _store_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> LibvirtHost:
        if self._host is None:
            self._host = self.host_factory()
        return self._host

    @property
    def store(self) -> ImageStore:
        with self._store_lock:  # opened by the warm-up thread and a step at the same time
            if self._store is None:
                self._store = self.store_factory()
            return self._store

    def reconnect_host(self) -> None:
        """Reopen the libvirt connection (after libvirtd restarted); errors surface later."""
        try:
            self.host.reconnect()
        except Exception:  # noqa: BLE001 - libvirtd still down: the next attempt says why
            pass

    def domain(self):
        """The libvirt domain object of this job (looked up by uuid), through any wrapper a
        test installed (``DOMAIN_WRAPPERS``)."""
        dom = self.host.lookup(self.plan.domain_uuid)
        for wrap in DOMAIN_WRAPPERS:
            dom = wrap(dom, lambda: self.current_step)
        return dom

    @property
    def cancel_event(self) -> asyncio.Event:
        if self._cancel_event is None:
            self._cancel_event = asyncio.Event()
            if self.cancel_flag.is_set():
                self._cancel_event.set()
        return self._cancel_event

    def request_cancel(self, reason: str | None = None) -> None:
        """Thread-safe: ask the job to stop and roll back (``reason``: why, when not the
        operator's doing, e.g. a downtime limit)."""
        if reason and self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancel_flag.set()
        if self._loop is not None and self._cancel_event is not None:
            self._loop.call_soon_threadsafe(self._cancel_event.set)

    def check_cancel(self) -> None:
        if self.cancel_flag.is_set():
            raise JobCancelled("cancelled by the operator")

    def record(self, key: FactKey, value: Any) -> None:
        """Remember a fact (a path made, an image id, a time) durably before acting on it."""
        self.facts[key] = value
        self._journal("fact", key=key, value=value)

    def forget(self, key: FactKey) -> None:
        """A made thing is gone again (deleted by its step); undo need not look for it."""
        self.facts.pop(key, None)
        self._journal("fact", key=key, value=None)

    def note(self, text: str) -> None:
        self._journal("note", text=text, step=self.current_step)

    def _journal(self, event: str, **fields: Any) -> None:
        """Journal an event: a step fails when it cannot (nothing is done unrecorded); an
        undo goes on (what it did is found again by ``recover``, undos being idempotent)."""
        if self.undoing:
            self.journal.try_append(event, **fields)
        else:
            self.journal.append(event, **fields)

    def progress(self, done: float, total: float | None, unit: str = "%", **extra: Any) -> None:
        """Report progress of the current step; throttled, the final value always written."""
        if self.mute_progress:
            return
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        try:
            self.journal.append("progress", sync=False, step=self.current_step, done=done,
                                total=total, unit=unit, **extra)
        except OSError:  # a full disk: progress is dropped, the step's end is what counts
            pass
