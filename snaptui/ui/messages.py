"""Textual messages the dashboard's workers and screens exchange (thread-safe to post)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class DomainsChanged(Message):
    """The set of domains (or their states) changed; refresh the Domains pane."""


@dataclass
class DomainEvent(Message):
    """A libvirt lifecycle or connection event from the DomainEventWatcher thread."""

    event: Any  # snaptui.core.libvirt.events.DomainEvent
    host: str = ""  # the fleet host whose watcher saw it


@dataclass
class JobFinished(Message):
    """A snapshot job reached a terminal state (done, failed, cancelled)."""

    job_id: str


@dataclass
class JobProgress(Message):
    """A job's journal changed (step started/finished or progress); superseded by the next one."""

    job_id: str

    def can_replace(self, message: Message) -> bool:
        """A newer progress message for the same job replaces an older queued one."""
        return isinstance(message, JobProgress) and message.job_id == self.job_id


@dataclass
class RemoteJobUpdated(Message, bubble=False):
    """A job on a fleet host (run by snaptui there over SSH) told more of its story. It does
    not bubble: the app forwards it to an open Jobs screen, which would send it back."""

    host: str  # the fleet host's name
    record: Any  # snaptui.core.engine.journal.JobRecord, folded from its JSON events
    note: str | None = None  # a line for the operator (re-attaching, gave up)

    @property
    def key(self) -> str:
        """The job's name in the dashboard: ``HOST:JOB_ID``."""
        return f"{self.host}:{self.record.job_id}"
