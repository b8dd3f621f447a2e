"""Following a job in the terminal: its journal's events as JSON lines or as a live table of
its steps, and the outcome line. Shared by ``snapshot``, ``jobs --follow`` and the remote
snapshot's view (which renders a host's job the same way)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.text import Text

from snaptui.cli import output
from snaptui.core.engine.jobs import cancel_job, follow
from snaptui.core.engine.journal import JobRecord, load_job
from snaptui.core.engine.recover import recover_job
from snaptui.core.engine.states import JobStatus, StepState, look, progress_text
from snaptui.core.present import duration_text, size_text


def events(job_id: str):
    """Journal events; Ctrl-C cancels the job (with rollback), a second Ctrl-C detaches."""
    cancelled = False
    while True:
        try:
            for event in follow(job_id):
                if event.get("event") == "lost":
                    outcome = recover_job(load_job(job_id))
                    yield {"event": "note", "text": f"job process died; recover: {outcome}"}
                    yield from _terminal_of(job_id)
                    return
                yield event
            return
        except KeyboardInterrupt:
            if cancelled:
                output.note(f"\nsnaptui: detached; job {job_id} goes on")
                return
            cancelled = True
            output.note(f"\nsnaptui: cancelling job {job_id} (rolling back)...")
            try:
                cancel_job(job_id)
            except Exception as err:  # noqa: BLE001 - report, keep following
                output.note(f"snaptui: {err}")


def _terminal_of(job_id: str):
    job = load_job(job_id)
    if job.terminal:
        yield {"event": job.status, **job.result}


def _json_event(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("event") == "cancelled":
        return {**event, "event": "failed", "cancelled": True}
    return event


def follow_json(job_id: str) -> int:
    last = None
    for event in events(job_id):
        if event.get("event") == "job":
            event = {"event": "job", "job_id": job_id, "mode": event["plan"]["mode"],
                     "kind": event["plan"].get("kind") or "snapshot",
                     "domain": event["plan"].get("domain_name"), "format": event.get("format", 1),
                     "steps": event["steps"], "t": event["t"]}
        last = _json_event(event)
        output.json_line(last)
    return 0 if last and last.get("event") == "done" else 1


def render_job(job: JobRecord) -> Group:
    table = output.grid(padding=(0, 1))
    table.add_column(width=2)
    table.add_column(min_width=38)
    table.add_column(width=30)
    table.add_column()
    for step in job.steps:
        glyph = Text(*look(step.state))
        bar: Any = ""
        detail = ""
        if step.state == StepState.RUNNING and step.progress:
            done, total = step.progress.get("done", 0), step.progress.get("total")
            bar = ProgressBar(total=total or 100, completed=done if total else 0, width=28)
            detail = progress_text(step.progress)
        elif step.started and step.finished:
            detail = duration_text(step.finished - step.started)
        elif step.error:
            detail = step.error
        table.add_row(glyph, step.title, bar, detail)
    streamed = " (streamed)" if (job.plan or {}).get("stream") else ""
    header = output.plain(
        f"job {job.job_id}  {job.domain}  mode {job.mode}{streamed}  {job.status}", "bold")
    parts: list[Any] = [header]
    parts += [output.plain(f"  {n}", "dim") for n in job.notes[-3:]]
    parts.append(table)
    return Group(*parts)


def follow_rich(job_id: str) -> int:
    console = output.console()
    last_paint = 0.0
    with output.live_view(console, render_job(load_job(job_id))) as live:
        for event in events(job_id):
            now = time.monotonic()
            if event.get("event") in ("progress",) and now - last_paint < 0.1:
                continue
            last_paint = now
            live.update(render_job(load_job(job_id)))
        job = load_job(job_id)
        live.update(render_job(job))
    return print_outcome(console, job)


def print_outcome(console: Console, job: JobRecord) -> int:
    if job.status != JobStatus.DONE:
        console.print(Text.assemble((f"{job.kind} {job.status}", "bold red"),
                                    output.plain(f": {job.error}")))
        return 1
    res = job.result
    if job.kind == "restore":
        console.print(output.plain(restore_outcome(res), "green"))
        return 0
    down = duration_text(res.get("downtime_s") or 0.0)
    for image in res.get("images", []):
        sizes = image["sizes"]
        h = size_text
        console.print(Text.assemble(
            output.plain(f"image {image['name']!r}", "green"),
            output.plain(
                f" id {image['image_id']} in {res['destination']}: "
                f"source {h(sizes['source_virtual'])} virtual / {h(sizes['source_actual'])} "
                + (f"allocated → output {h(sizes['output_actual'])} allocated, uploaded "
                   if sizes.get("output_actual") is not None else "allocated → streamed ")
                + f"{h(sizes['uploaded'])}; guest downtime {down}"),
        ))
    print_rotation(console, res.get("rotation"))
    return 0


def restore_outcome(res: dict[str, Any]) -> str:
    """A finished restore (or its undo, or a new guest) in one line."""
    down = duration_text(res.get("downtime_s") or 0.0)
    if res.get("action") == "undo":
        return f"restore {res.get('undo_of')} undone on {res.get('domain')}; downtime {down}"
    if res.get("action") == "new":
        return f"new guest {res.get('domain')} defined from image {res.get('name')!r}"
    kept = "; ".join(f"old {d['target']} kept as {d['pre_restore']}"
                     for d in res.get("disks", []) if d.get("pre_restore"))
    return (f"image {res.get('name')!r} restored on {res.get('domain')}"
            + (f"; {kept}" if kept else "") + f"; downtime {down}")


def print_rotation(console: Console, rotation: dict[str, Any] | None) -> None:
    """One line per image rotation deleted or failed to delete, and a summary per disk."""
    if not rotation:
        return
    if rotation.get("error"):
        console.print(output.plain(f"rotation not done: {rotation['error']}", "yellow"))
    for disk in rotation.get("disks", []):
        rows = disk.get("images", [])
        for row in rows:
            if row["action"] in ("deleted", "failed"):
                style = "red" if row["action"] == "failed" else ""
                console.print(output.plain(
                    f"  rotation {row['action']} {row['image_id']} ({row['name']!r}, "
                    f"{row['created_at']}): {row['reason'] or 'beyond the rotation count'}",
                    style))
        kept = sum(1 for r in rows if r["action"] == "keep")
        deleted = sum(1 for r in rows if r["action"] == "deleted")
        failed = sum(1 for r in rows if r["action"] == "failed")
        console.print(output.plain(
            f"rotation {disk['backup_type']} ({disk['disk']}, keep {disk['keep']}): {kept} "
            f"kept, {deleted} deleted" + (f", {failed} failed to delete" if failed else "")))
