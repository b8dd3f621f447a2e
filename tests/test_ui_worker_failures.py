"""A failed worker is told to the operator once, by the app, and the screen stays usable.

The fault is real: SNAPTUI_STATE_DIR (each test's own, from conftest) is made a regular file,
so reading ``<state>/jobs`` fails (snaptui says the state dir "is not a directory"), as it would
if the directory were replaced or its filesystem gone. (Making it unreadable does not work: the
tests run as root.) Replacing the file with a directory repairs it.

Before: the jobs screen and the log screen ran their workers with ``exit_on_error=False`` and
nothing handled a failure: no notification, and the jobs list froze until the screen was
closed and opened again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_ui_jobs import write_finished_job
from textual.widgets import DataTable, Log
from ui_pilot import Notes, screen_text, settle, wait_for

from snaptui.core.images.library import ImageLibrary
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.ui import worker_failures
from snaptui.ui.app import SnaptuiApp
from snaptui.ui.screens.jobs_screen import STALE_MARK, JobsScreen
from snaptui.ui.screens.main_screen import MainScreen
from snaptui.ui.widgets.job_log import JobLogScreen


@pytest.fixture
def app(libvirt_uri, tmp_path):
    host = LibvirtHost(libvirt_uri).connect()
    yield SnaptuiApp(host=host, store=ImageLibrary(tmp_path / "library"))
    host.close()


def break_state_dir() -> Path:
    state = Path(os.environ["SNAPTUI_STATE_DIR"])
    if state.is_dir():
        shutil.rmtree(state)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text("not a directory\n")
    return state


def repair_state_dir(state: Path) -> None:
    state.unlink()
    state.mkdir(mode=0o700)




async def test_jobs_list_failure_is_shown_and_the_next_refresh_works(app):
    state = break_state_dir()
    notes = Notes()
    async with app.run_test(size=(100, 30), message_hook=notes) as pilot:
        await settle(pilot)
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), 5, "the jobs screen")
        screen = app.screen
        title = worker_failures.FAILURE_TITLES["jobs-poll"]
        await wait_for(pilot, lambda: notes.errors(title), 10, "the failure notification")
        note = notes.errors(title)[0]
        assert "is not a directory" in note.message and "\n" not in note.message
        await wait_for(pilot, lambda: STALE_MARK in screen_text(app), 5, "the stale mark")
        assert screen.query_one(DataTable).border_subtitle == STALE_MARK

        repair_state_dir(state)
        job_id = write_finished_job()
        await wait_for(pilot, lambda: job_id in screen.jobs, 15, "the job after the repair")
        await wait_for(pilot, lambda: STALE_MARK not in screen_text(app), 5, "mark cleared")
        assert screen.poll_failures == 0 and app.screen is screen
        # Still usable: the log opens and closes, `j` goes back.
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, JobLogScreen), 5, "the log")
        await pilot.press("escape", "j")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), 5, "main screen")
        # Still running: the failures neither crashed the app nor made it quit (an exit with
        # code 0 would have passed the old "return_code in (None, 0)").
        assert app.is_running and app.return_code is None
    assert app.return_code is None


async def test_job_log_failure_is_shown_in_the_log_and_notified(app):
    job_id = write_finished_job()
    state = Path(os.environ["SNAPTUI_STATE_DIR"])
    notes = Notes()
    async with app.run_test(size=(100, 30), message_hook=notes) as pilot:
        await settle(pilot)
        break_state_dir()
        await app.push_screen(JobLogScreen(job_id))
        title = worker_failures.FAILURE_TITLES["job-log"]
        await wait_for(pilot, lambda: notes.errors(title), 10, "the failure notification")
        log = app.screen.query_one(Log)
        await wait_for(pilot, lambda: any("could not read the log" in line
                                          for line in log.lines), 5, "the line in the log")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), 5, "closed")
    assert state.is_file()


async def test_main_screen_failure_is_notified_once(libvirt_uri, tmp_path, make_domain):
    """A main-screen worker's failure reaches the operator exactly once (the screen used to
    notify by itself; now the app does, and the two must not both)."""
    lab = make_domain(state="shut off")
    dead = LibvirtHost("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    app = SnaptuiApp(host=dead, store=ImageLibrary(tmp_path / "library"))
    notes = Notes()
    async with app.run_test(size=(100, 30), message_hook=notes) as pilot:
        title = worker_failures.FAILURE_TITLES["domains"]
        await wait_for(pilot, lambda: notes.errors(title), 10, "the failure notification")
        await settle(pilot)
        assert len(notes.errors(title)) == 1
        assert "cannot connect" in notes.errors(title)[0].message
        # The screen goes on: a refresh once libvirt answers lists the domains.
        app.host = LibvirtHost(libvirt_uri)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.main.domains_pane.by_uuid(lab.uuid), 10, "domains")
        assert len(notes.errors(title)) == 1
        app.host.close()


def test_every_screen_with_workers_forwards_failures():
    """A class that starts workers and does not forward their failures would swallow them."""
    import importlib
    import inspect
    import pkgutil

    from textual.dom import DOMNode

    import snaptui.ui

    missing = []
    for module_info in pkgutil.iter_modules(snaptui.ui.__path__):
        module = importlib.import_module(f"snaptui.ui.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, DOMNode):
                continue
            if "@work(" in inspect.getsource(cls) and cls is not SnaptuiApp and \
                    not issubclass(cls, worker_failures.ForwardsWorkerFailures):
                missing.append(cls.__qualname__)
    assert missing == []
