"""Failed workers reach the operator in one place: the app's ``Worker.StateChanged`` handler.

Textual posts ``Worker.StateChanged`` to the node that started the worker (a screen, here) and
does not bubble it, so a failure in a screen without a handler vanished: the jobs list froze
silently. Every class that runs workers mixes in ``ForwardsWorkerFailures``, which hands each
failure on to the app; the app notifies with the title ``FAILURE_TITLES`` gives the worker's
group (harlequin's pattern: one map from worker to message). A screen may also react to its
own workers' failures (say what could not be shown, retry) but never stops the message.
"""

from __future__ import annotations

import logging

from textual.worker import Worker, WorkerState

from snaptui.core.errors import SnaptuiError

log = logging.getLogger(__name__)

# Worker group -> what the operator is told failed.
FAILURE_TITLES: dict[str, str] = {
    "domains": "Could not list the domains",
    "domain-row": "Could not read a domain",
    "images": "Could not list the images",
    "detail": "Could not read the disks",
    "snapshot": "Could not open the snapshot dialog",
    "launch": "Could not start the snapshot",
    "follow": "Stopped following the job",
    "jobs-poll": "Could not refresh the jobs list",
    "jobs-cancel": "Could not cancel the job",
    "job-log": "Could not read the job's log",
    "cleanup-scan": "The scan for leftovers failed",
    "cleanup-remove": "Removing leftovers failed",
    "schedules": "Could not read the schedules",
    "prune-plan": "Could not plan the schedules' next prune",
    "schedules-run": "Could not start the schedule's run",
    "schedules-pause": "Could not pause or resume the schedule",
}


def failure_title(worker: Worker) -> str:
    """The notification's title for a failed worker."""
    return FAILURE_TITLES.get(worker.group) or f"{worker.description or worker.name} failed"


def failure_text(error: BaseException | None) -> str:
    """One line saying why: a SnaptuiError's own message, else the exception's type and first
    line (the traceback goes to the log, never to the screen)."""
    if isinstance(error, SnaptuiError):
        return str(error)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def is_failure(event: Worker.StateChanged) -> bool:
    return event.state == WorkerState.ERROR


class ForwardsWorkerFailures:
    """Mixin for a Screen or Widget that runs workers: its failed workers go to the app.

    A handler named ``_on_worker_state_changed`` runs besides the class's own
    ``on_worker_state_changed`` (Textual calls each class's handler in the MRO).
    """

    def _on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if is_failure(event):
            self.app.post_message(Worker.StateChanged(event.worker, event.state))  # type: ignore[attr-defined]


def report_failure(app, event: Worker.StateChanged) -> None:  # app: textual App
    """Notify the operator of a failed worker (and log its traceback)."""
    worker, error = event.worker, event.worker.error
    if not isinstance(error, SnaptuiError):
        log.error("worker %s (%s) failed", worker.name, worker.group, exc_info=error)
    # markup=False: "[Errno 20]" in an OSError's text is not a style tag
    app.notify(failure_text(error), title=failure_title(worker), severity="error", timeout=8,
               markup=False)
