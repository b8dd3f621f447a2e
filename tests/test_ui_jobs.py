"""The jobs screen on the real lab: a cold snapshot followed to the end, a cancel with rollback,
a job started from the CLI side, the job log, and snapshots of a finished job."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import libvirt
import pytest
from fault_tools import MID_STEP_BWLIMIT
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable
from ui_pilot import Notes, screen_text, wait_for

from snaptui.core.engine.jobs import follow, get_job, launch, prepare
from snaptui.core.engine.journal import jobs_dir
from snaptui.core.engine.plan import Mode, Plan, SnapshotRequest
from snaptui.core.engine.workflows import build_steps
from snaptui.core.images.library import ImageLibrary
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.paths import scratch_dir
from snaptui.ui.job_launcher import start_snapshot
from snaptui.ui.messages import JobFinished
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.jobs_screen import JobsPolled, JobsScreen
from snaptui.ui.widgets.job_log import JobLogScreen

T0 = 1767225600.0  # 2026-01-01T00:00:00Z


class JobsHost(App):
    """A bare app that pushes the jobs screen and records JobFinished messages."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[str] = []

    def on_job_finished(self, message: JobFinished) -> None:
        self.finished.append(message.job_id)


def job_status(screen: JobsScreen, job_id: str) -> str | None:
    job = screen.jobs.get(job_id)
    return job.status if job else None


def scratch_files() -> list[Path]:
    return [p for p in scratch_dir().iterdir() if p.is_file()]


def running(lab) -> bool:
    return lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


async def test_cold_snapshot_followed_to_done(make_domain, host, tmp_path):
    lab = make_domain(state="running")
    library = ImageLibrary(tmp_path / "library")
    request = SnapshotRequest(domain=lab.name, name="ui cold test", mode=Mode.COLD,
                              destination="library", library_dir=library.location)
    app = JobsHost()
    async with app.run_test(size=(120, 40)) as pilot:
        job_id = await start_snapshot(request, host, library)
        screen = JobsScreen(job_id)
        await app.push_screen(screen)
        await wait_for(pilot, lambda: job_status(screen, job_id) == "done", 60, "the job done")
        await wait_for(pilot, lambda: screen.selected_id == job_id, 5, "the job selected")
        await wait_for(pilot, lambda: job_id in app.finished, 5, "JobFinished posted")
        await wait_for(pilot, lambda: "Size comparison" in screen_text(app), 5, "the summary")
        text = screen_text(app)
        steps = get_job(job_id).steps
        assert [s.state for s in steps] == ["done"] * len(steps)
        for step in steps:
            assert f"✔ {step.title}" in text
        assert "✔ done" in text and "Size comparison" in text
        assert "source disk virtual" in text and "64.0 MiB" in text
        assert "guest downtime" in text and "guest downtime —" not in text
        assert "auto chose" not in text and "cold mode as requested" in text
        # The log is one key away.
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, JobLogScreen), 5, "the log")
        await wait_for(pilot, lambda: "step_finished [convert:vda]" in screen_text(app), 5,
                       "the convert step in the log")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, 5, "the jobs screen again")
    assert running(lab)
    assert [i.name for i in library.iter_images()] == ["ui cold test"]
    assert scratch_files() == []


async def test_cancel_rolls_back(make_domain, host, tmp_path):
    lab = make_domain(state="running", size="1G", seed="512M")
    library = ImageLibrary(tmp_path / "library")
    request = SnapshotRequest(domain=lab.name, name="ui cancel test", mode=Mode.COLD,
                              destination="library", library_dir=library.location,
                              bwlimit=MID_STEP_BWLIMIT)  # still converting when cancelled
    app = JobsHost()
    async with app.run_test(size=(80, 24)) as pilot:
        job_id = await start_snapshot(request, host, library)
        screen = JobsScreen(job_id)
        await app.push_screen(screen)

        def converting() -> bool:
            job = screen.jobs.get(job_id)
            return job is not None and job.step("save").state == "done"

        await wait_for(pilot, converting, 60, "the guest saved")
        assert not running(lab)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "confirmation")
        confirm_text = screen_text(app)
        assert "↩ Save guest state (managedSave)" in confirm_text
        await pilot.press("enter")
        await wait_for(pilot, lambda: job_status(screen, job_id) == "cancelled", 60, "cancelled")
        await wait_for(pilot, lambda: "↩" in screen_text(app), 5, "the undone steps drawn")
        text = screen_text(app)
        assert "cancelled" in text and "↩" in text
    job = get_job(job_id)
    assert job.status == "cancelled"
    states = {s.name: s.state for s in job.steps}
    assert states["save"] == "undone"
    # Every started step with an undo is undone; only the restart (no undo) may stay done.
    undoable = {s.name for s in build_steps(Plan.from_json(job.plan)) if s.undo is not None}
    for name, state in states.items():
        allowed = ("undone", "pending") if name in undoable else ("done", "pending", "failed")
        assert state in allowed, states
    assert job_id in app.finished
    assert running(lab)
    assert scratch_files() == []
    assert list(library.iter_images()) == []


async def test_job_started_from_cli_shows_up(make_domain, tmp_path):
    lab = make_domain(state="shut off")
    request = SnapshotRequest(domain=lab.name, name="from the cli", mode=Mode.AUTO,
                              destination="library", library_dir=str(tmp_path / "library"))
    app = JobsHost()
    notes = Notes()
    async with app.run_test(size=(80, 24), message_hook=notes) as pilot:
        screen = JobsScreen()
        await app.push_screen(screen)
        # The first poll always reports: once it is handled the list is what the disk holds.
        await wait_for(pilot, lambda: notes.seen(JobsPolled), 10, "the first poll")
        await pilot.pause()
        assert screen.jobs == {} and not screen.lost
        # The engine directly, as `snaptui snapshot` does: a detached job process.
        plan, steps = await prepare(request)
        job_id = await asyncio.to_thread(launch, plan, request, steps)
        await wait_for(pilot, lambda: job_id in screen.jobs, 10, "the CLI job listed")
        await wait_for(pilot, lambda: job_status(screen, job_id) == "done", 60, "done")
        await wait_for(pilot, lambda: "auto chose cold" in screen_text(app), 5, "the summary")
        assert screen.selected_id == job_id
        assert lab.name[:13] in screen_text(app)
        assert "auto chose cold" in screen_text(app)
    list(follow(job_id, timeout_s=5))


# -- snapshots of a finished job, from a journal with fixed timestamps ---------------------------


def write_finished_job(job_id: str = "20260101-000000-abc123", domain: str = "web01",
                       started: float = T0) -> str:
    """A journal like a real cold job's, with fixed times, written where the engine puts them."""
    steps = [("save", "Save guest state (managedSave)"), ("convert:vda", "Convert vda to qcow2"),
             ("restart", "Restart guest (restore managed save)"),
             ("create:vda", "Create image record for vda"),
             ("upload:vda", "Upload vda to the library")]
    plan = {"job_id": job_id, "domain_name": domain, "mode": "cold", "destination": "library",
            "original_state": "running"}
    request = {"domain": domain, "name": f"{domain}-20260101T000000Z", "mode": "auto",
               "destination": "library"}
    events = [
        {"t": started, "event": "job", "job_id": job_id, "plan": plan, "request": request,
         "steps": [{"name": n, "title": t, "command": ""} for n, t in steps]},
        {"t": started, "event": "note",
         "text": "auto chose cold: the Test driver cannot do live snapshots"},
        {"t": started + 0.1, "event": "pid", "pid": 4242},
    ]
    t = started + 0.2
    for name, _ in steps:
        events.append({"t": t, "event": "step_started", "step": name})
        t += 1.5
        events.append({"t": t, "event": "step_finished", "step": name, "seconds": 1.5})
        t += 0.1
    sizes = {"source_virtual": 64 << 20, "source_actual": 17 << 20,
             "source_apparent": (17 << 20) + 196608, "output_actual": 16 << 20,
             "output_apparent": 16 << 20, "uploaded": 16 << 20}
    events.append({"t": t, "event": "done", "image_id": "0e2b", "name": request["name"],
                   "checksum": "c0ffee", "sizes": sizes, "mode": "cold",
                   "destination": "library", "downtime_s": 4.8,
                   "images": [{"target": "vda", "image_id": "0e2b", "name": request["name"],
                               "sizes": sizes}]})
    path = jobs_dir() / f"{job_id}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    os.utime(path, (t, t))
    return job_id


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class SnapshotHost(JobsHost):
    def __init__(self, job_id: str | None) -> None:
        super().__init__()
        self.job_id = job_id

    def on_mount(self) -> None:
        self.push_screen(JobsScreen(self.job_id))


async def _until_listed(pilot: Pilot) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, JobsScreen)
                   and len(pilot.app.screen.jobs) == 2
                   and pilot.app.screen.selected_id is not None, 10, "jobs listed")
    await wait_for(pilot, lambda: "db-server-01" in screen_text(pilot.app), 5, "both rows drawn")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_jobs_screen_snapshot(snap_compare, utc, size):
    write_finished_job("20251231-230000-ffffff", "db-server-01", T0 - 3600)
    job_id = write_finished_job()
    assert snap_compare(SnapshotHost(job_id), terminal_size=size, run_before=_until_listed)


def write_running_job(job_id: str, pid: int | None = None) -> None:
    """A job in the middle of its upload (progress with rate and ETA), optionally with a pid."""
    now = time.time()
    events = [
        {"t": now - 10, "event": "job", "job_id": job_id,
         "plan": {"domain_name": "web01", "mode": "cold", "destination": "glance"},
         "request": {"name": "img"},
         "steps": [{"name": "save", "title": "Save guest state (managedSave)"},
                   {"name": "upload:vda", "title": "Upload vda"},
                   {"name": "restart", "title": "Restart guest"}]},
        {"t": now - 9, "event": "step_started", "step": "save"},
        {"t": now - 8, "event": "fact", "key": "guest_stopped_at", "value": now - 8.5},
        {"t": now - 8, "event": "step_finished", "step": "save"},
        {"t": now - 7, "event": "step_started", "step": "upload:vda"},
        {"t": now - 1, "event": "progress", "step": "upload:vda", "done": 300 << 20,
         "total": 1 << 30, "unit": "bytes", "rate": 100 << 20, "eta_s": 7.4},
    ]
    if pid is not None:
        events.insert(1, {"t": now - 10, "event": "pid", "pid": pid})
    path = jobs_dir() / f"{job_id}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")


async def test_running_step_progress_and_lost_job():
    """Progress of the running step is humanized; a job whose process is gone shows as lost."""
    write_running_job("20260101-000000-aaaaaa")
    app = JobsHost()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = JobsScreen("20260101-000000-aaaaaa")
        await app.push_screen(screen)
        await wait_for(pilot, lambda: screen.selected_id is not None, 5, "the job")
        await wait_for(pilot, lambda: "7.4 s" in screen_text(app), 5, "the progress")
        assert screen.query_one("#job-progress-row").display
        text = screen_text(app)
        assert "300 MiB / 1.0 GiB" in text and "100 MiB/s" in text
        assert "ETA" in text and "7.4 s" in text and "29%" in text  # wrapped at 80 columns
        # the guest stopped 8.5 s before the journal was written; the counter ticks on since
        downtime = re.search(r"guest downtime (\d+\.\d) s", text)
        assert downtime and 8.0 <= float(downtime.group(1)) < 60, text
        assert app.screen.check_action("cancel_job", ()) is True
        # pid 1 is alive but is not this job's process: the job is lost.
        write_running_job("20260101-000000-aaaaaa", pid=1)
        await wait_for(pilot, lambda: "lost" in screen_text(app), 5, "lost shown")
        assert "its process is gone" in screen_text(app)


async def test_demo_lab_job_runs_inline(tmp_path):
    """On libvirt's test:/// driver (the demo), start_snapshot runs the job in this process."""
    from snaptui.core.demo.lab import build_demo_lab

    lab = build_demo_lab(tmp_path / "demo")
    library = ImageLibrary(lab.library_dir)
    before = {i.id for i in library.iter_images()}
    app = JobsHost()
    with LibvirtHost(lab.uri).connect() as demo:
        assert demo.is_test_driver
        request = SnapshotRequest(domain="web-frontend", name="demo inline", mode=Mode.AUTO,
                                  destination="library", library_dir=library.location)
        async with app.run_test(size=(80, 24)) as pilot:
            job_id = await start_snapshot(request, demo, library)
            screen = JobsScreen(job_id)
            await app.push_screen(screen)
            await wait_for(pilot, lambda: job_status(screen, job_id) == "done", 60, "done")
            await wait_for(pilot, lambda: "auto chose cold" in screen_text(app), 5,
                           "the summary")
            assert get_job(job_id).pid == os.getpid()
            assert demo.get_domain("web-frontend").state == "running"
    added = [i for i in library.iter_images() if i.id not in before]
    assert [i.name for i in added] == ["demo inline"]


def test_the_apps_store_is_used_only_for_its_own_destination(tmp_path):
    """start_snapshot hands preflight the app's open store only when the request goes there."""
    from snaptui.ui.job_launcher import _store_for

    library = ImageLibrary(tmp_path / "library")
    same = SnapshotRequest(domain="d", name="n", destination="library",
                           library_dir=str(tmp_path / "library"))
    assert _store_for(same, library) is library
    assert _store_for(SnapshotRequest(domain="d", name="n"), library) is library
    other_dir = SnapshotRequest(domain="d", name="n", destination="library",
                                library_dir=str(tmp_path / "elsewhere"))
    assert _store_for(other_dir, library) is None
    to_glance = SnapshotRequest(domain="d", name="n", destination="glance")
    assert _store_for(to_glance, library) is None


def test_a_wait_with_a_deadline_shows_seconds():
    """The verify step reports the seconds it waited for the booting image, of its timeout."""
    from snaptui.ui.screens.jobs_screen import progress_text

    assert progress_text({"done": 7.4, "total": 120.0, "unit": "s"}) == "7 s of 120 s"
    assert progress_text({"done": 3, "total": None, "unit": "s"}) == "3 s"


class DemoJobsHost(SnapshotHost):
    demo = True


def as_finished_restore(job_id: str) -> str:
    """Make the journal written by write_finished_job a finished in-place restore's."""
    path = jobs_dir() / f"{job_id}.jsonl"
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    events[0]["plan"].update(kind="restore", action="restore", mode="restore")
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return job_id


@pytest.mark.parametrize("demo", [False, True], ids=["host", "demo"])
async def test_undo_is_offered_on_a_finished_restore_only(demo):
    snapshot = write_finished_job("20260101-000000-aaaaa1", started=T0 - 60)
    restore = as_finished_restore(write_finished_job("20260101-000001-aaaaa2"))
    app = DemoJobsHost(restore) if demo else SnapshotHost(restore)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, JobsScreen)
                       and len(pilot.app.screen.jobs) == 2
                       and pilot.app.screen.selected_id == restore, 10, "jobs listed")
        screen = pilot.app.screen
        assert screen.check_action("undo_restore", ()) is (None if demo else True)
        if demo:  # greyed: the key does nothing (tests/test_restore_ui.py presses it on a host)
            await pilot.press("u")
            await pilot.pause()
            assert pilot.app.screen is screen
        screen.query_one(DataTable).move_cursor(row=screen.query_one(DataTable)
                                                .get_row_index(snapshot))
        await pilot.pause()
        assert screen.selected_id == snapshot
        assert screen.check_action("undo_restore", ()) is None
