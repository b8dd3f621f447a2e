"""The dashboard's Schedules screen (S): every schedule with its next and last run; run one now
(a real ``snaptui schedule run``, detached, of a disk-only lab domain into a library), pause
and resume it; the key in the palette and the screen's help; one SVG snapshot."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

from textual.pilot import Pilot
from ui_pilot import demo_app, screen_text, settle, wait_for, wait_palette_hit

from snaptui.core.images.library import ImageLibrary
from snaptui.core.keep import schedules
from snaptui.core.keep.schedules import Schedule
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.help_screen import HelpScreen
from snaptui.ui.screens.schedules_screen import SchedulesScreen

LAB_BASE = Path(tempfile.gettempdir()) / "snaptui-snapshot-lab"


async def open_schedules(pilot: Pilot) -> SchedulesScreen:
    await settle(pilot)
    await pilot.press("S")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SchedulesScreen), 5, "Schedules")
    screen = pilot.app.screen
    assert isinstance(screen, SchedulesScreen)
    await wait_for(pilot, lambda: screen.loaded, 30, "the schedules to be read")
    await pilot.pause()
    return screen


def paused_on_disk(name: str) -> bool:
    return tomllib.loads((schedules.schedules_dir() / f"{name}.toml").read_text())["paused"]


async def test_run_now_pause_and_resume(make_domain, libvirt_uri: str, tmp_path: Path) -> None:
    lab = make_domain(state="shut off", size="16M", seed="1M")
    lib = tmp_path / "lib"
    schedules.save(Schedule(name="i26b-night", on="*-*-* 02:00", domains=[lab.name],
                            snapshot={"destination": "library"}, library=str(lib),
                            uri=libvirt_uri, keep={"last": 2}))
    schedules.save(Schedule(name="i26b-weekly", on="Sun 03:00", all_domains=True,
                            exclude=["db1"], paused=True))
    app = demo_app(tmp_path / "demo")
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_schedules(pilot)
        assert list(screen.rows) == ["i26b-night", "i26b-weekly"]
        night = screen.rows["i26b-night"]
        assert night.next and night.last_run is None and night.keep == "keep-last 2"
        text = screen_text(app)
        assert "i26b-night" in text and lab.name in text and "*-*-* 02:00" in text
        assert "paused" in text and "--all" in text and "never" in text

        await pilot.press("p")  # the cursor is on i26b-night
        await wait_for(pilot, lambda: screen.rows["i26b-night"].paused, 15, "paused")
        assert paused_on_disk("i26b-night") and screen.rows["i26b-night"].next is None
        await pilot.press("p")
        await wait_for(pilot, lambda: not screen.rows["i26b-night"].paused, 15, "resumed")
        assert not paused_on_disk("i26b-night")

        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the question")
        assert "Run schedule i26b-night now?" in screen_text(app)
        assert "not the demo's" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.rows["i26b-night"].last_result is not None, 90,
                       "the run to finish")
        assert screen.rows["i26b-night"].last_result == "ok"
        assert not screen.rows["i26b-night"].running
        [image] = ImageLibrary(lib).iter_images()
        assert image.properties["backup_type"] == "i26b-night"
        assert " ok" in screen_text(app)
        log = Path(schedules.runs_dir() / "i26b-night.log").read_text()
        assert f"schedule i26b-night: {lab.name}: ok, image {image.id}" in log

        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main, 5, "the dashboard")


async def test_palette_and_help(tmp_path: Path) -> None:
    app = demo_app(tmp_path / "demo")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"Schedules")
        await wait_palette_hit(pilot, "Schedules")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SchedulesScreen), 5, "Schedules")
        screen = app.screen
        assert isinstance(screen, SchedulesScreen)
        await wait_for(pilot, lambda: screen.loaded, 30, "the schedules to be read")
        assert "No schedule in" in screen_text(app)
        await pilot.press("n")  # nothing to run: said, nothing started
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help")
        await pilot.pause(0.2)
        assert "schedules.run" in screen_text(app)


def test_schedules_screen_snapshot(snap_compare) -> None:
    """Deterministic: no next run (a calendar already past, a paused schedule), no last run."""
    schedules.save(Schedule(name="i26b-once", on="2001-01-01 02:00", domains=["web-01", "db-01"],
                            keep={"daily": 7, "weekly": 4}))
    schedules.save(Schedule(name="i26b-weekly", on="Sun 03:00", all_domains=True,
                            paused=True))

    async def run_before(pilot: Pilot) -> None:
        await open_schedules(pilot)

    assert snap_compare(demo_app(LAB_BASE), terminal_size=(100, 20), run_before=run_before)
