"""A remote job's events as one stream that outlives the SSH connection carrying it.

``RemoteFeed`` reads a ``RemoteCall`` (``snapshot … --json`` or ``jobs --follow``) and, when the
connection is lost after the job got its id, re-attaches with ``jobs --follow`` and skips what
it already saw (the journal is replayed from its start). ``record()`` folds the events into a
JobRecord (its id the host's; the domain named ``HOST:NAME``) for the CLI's live view
and the dashboard's Jobs screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from snaptui.core.engine.journal import JOB_ID_RE, JobRecord, fold
from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.fleet.ssh import SshLost, SshUnreachable

REATTACH_TRIES = 5
REATTACH_PAUSE_S = 2.0


class RemoteFeed:
    """Events of one job on ``host``; ``note`` hears about re-attaching and giving up."""

    def __init__(self, host: HostSpec, *, job_id: str | None = None,
                 note: Callable[[str], object] = lambda text: None,
                 pause_s: float = REATTACH_PAUSE_S) -> None:
        self.host = host
        self.job_id = job_id
        self.events: list[dict[str, Any]] = []
        self.note = note
        self.pause_s = pause_s
        self.gave_up = False

    def follow(self, call: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The call's events; after a lost connection, the rest by re-attaching."""
        from snaptui.core.fleet.remote_jobs import follow_remote_job

        tries = 0
        replayed = 0
        while True:
            try:
                for event in call:
                    tries = 0
                    replayed += 1
                    if replayed <= len(self.events):
                        continue
                    if event.get("event") == "job" and self.job_id is None:
                        job_id = event.get("job_id")  # the host's word: a job id, or nothing
                        if isinstance(job_id, str) and JOB_ID_RE.fullmatch(job_id):
                            self.job_id = job_id
                    self.events.append(event)
                    yield event
                return
            except (SshLost, SshUnreachable) as err:
                if self.job_id is None:
                    raise
                tries += 1
                if tries > REATTACH_TRIES:
                    self.gave_up = True
                    self.note(f"{err}; job {self.name} goes on there (follow it: snaptui jobs "
                              f"--follow {self.name})")
                    return
                self.note(f"{err}; re-attaching to {self.name}...")
                time.sleep(self.pause_s)
                call = follow_remote_job(self.host, self.job_id)
                replayed = 0

    @property
    def name(self) -> str:
        return f"{self.host.name}:{self.job_id or '?'}"

    def record(self) -> JobRecord:
        """The job as the events so far tell it (the remote ``job`` event carries no plan: its
        domain, named with its host, and mode stand in)."""
        events = []
        for event in self.events:
            if event.get("event") == "job" and "plan" not in event:
                event = {**event, "plan": {"domain_name": f"{self.host.name}:"
                                           f"{event.get('domain', '?')}",
                                           "mode": event.get("mode"),
                                           "kind": event.get("kind")}}
            events.append(event)
        return fold(self.job_id or "?", Path("-"), events)
