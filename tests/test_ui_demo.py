"""The demo as a newcomer runs it: a paced snapshot unfolds on the jobs screen step by step with
progress, and a cancel shows the rollback running."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static
from ui_pilot import demo_app, screen_text, settle, wait_for

from snaptui.ui.app import SnaptuiApp
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.jobs_screen import JobsScreen
from snaptui.ui.screens.snapshot_dialog import SnapshotDialog

SIZE = (120, 40)


def paced_demo(tmp_path: Path, speed: float) -> SnaptuiApp:
    return demo_app(tmp_path / "demo", demo_speed=speed)


async def start_from_the_dashboard(pilot, app: SnaptuiApp, domain: str) -> JobsScreen:
    """Select ``domain``, s, the dialog's default (cold), confirm the stop: the jobs screen."""
    await settle(pilot)
    key = next(k for k, d in app.main.domains_pane.domains.items() if d.name == domain)
    app.main.domains_pane.select(key)
    await pilot.press("s")
    await wait_for(pilot, lambda: isinstance(app.screen, SnapshotDialog), 10, "the dialog")
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10,
                   "the confirmation")
    await pilot.press("y")  # the guest will be stopped: confirm
    await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), 20, "the jobs screen")
    return app.screen


def selected_status(screen: JobsScreen) -> str | None:
    job = screen.selected
    return job.status if job else None


async def test_a_paced_demo_job_shows_progress_before_it_completes(tmp_path: Path) -> None:
    app = paced_demo(tmp_path, speed=4)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await start_from_the_dashboard(pilot, app, "web-frontend")
            progress = screen.query_one("#job-progress-text", Static)
            seen: list[str] = []
            steps_seen: set[str] = set()

            def watch() -> None:
                text = str(progress.content) if progress.display else ""
                if text and (not seen or seen[-1] != text):
                    seen.append(text)
                job = screen.selected
                if job is not None and job.current_step is not None:
                    steps_seen.add(job.current_step.name)

            await wait_for(pilot, lambda: selected_status(screen) == "done", 60,
                           "the job done", each=watch)
            assert len(seen) >= 3, seen
            assert any(t.endswith("%") for t in seen), seen  # convert: percent
            assert any("/s" in t and "ETA" in t for t in seen), seen  # copy: rate and ETA
            assert {"save", "convert:vda", "upload:vda"} <= steps_seen
            text = screen_text(app)
            assert "guest downtime" in text and "guest downtime —" not in text
            # One set of sizes: the pace note's, in the size comparison too, marked demo.
            job = screen.selected
            assert job is not None
            assert any("as if the guest held vda 2.5 GiB" in n for n in job.notes), job.notes
            await wait_for(pilot, lambda: "demo sizes: as if vda held 2.5 GiB"
                           in screen_text(app), 5, "the demo's size comparison")
            uploaded = job.result["images"][0]["sizes"]["uploaded"]
            assert uploaded == int(2.5 * 1024 ** 3), job.result
    finally:
        app.host.close()


async def test_cancel_a_paced_demo_job_shows_the_rollback(tmp_path: Path) -> None:
    app = paced_demo(tmp_path, speed=2)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await start_from_the_dashboard(pilot, app, "api-gateway")

            def converting() -> bool:
                job = screen.selected
                return job is not None and job.step("convert:vda").state == "running"

            await wait_for(pilot, converting, 30, "the convert running")
            await pilot.press("c")
            await wait_for(pilot, lambda: "↩ Save guest state (managedSave)" in screen_text(app),
                           5, "the confirmation listing the undo")
            await pilot.press("enter")
            undoing: list[str] = []

            def watch() -> None:
                job = screen.selected
                if job is not None:
                    undoing.extend(s.name for s in job.steps if s.state == "undoing"
                                   and s.name not in undoing)

            await wait_for(pilot, lambda: selected_status(screen) == "cancelled", 60,
                           "the job cancelled", each=watch)
            assert "save" in undoing, undoing  # the guest's restore seen running
            job = screen.selected
            assert job is not None
            assert {s.name: s.state for s in job.steps}["save"] == "undone"
            await wait_for(pilot, lambda: "cancelled" in screen_text(app)
                           and "↩" in screen_text(app), 5, "the cancelled job drawn")
    finally:
        app.host.close()
