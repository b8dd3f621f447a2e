"""Every demo guest's snapshot dialog, as a newcomer meets it: the auto hint announces a mode,
and submitting starts a job in that mode (the Nova instance's too, to an image, never
stopped); and the Nova instance's dialog as an SVG."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pytest
from textual.widgets import Button, Checkbox, Static
from ui_pilot import screen_text, settle, wait_for

from snaptui.core.demo.lab import DOMAINS
from snaptui.core.engine.plan import Mode
from snaptui.ui.app import SnaptuiApp
from snaptui.ui.launch import build_app
from snaptui.ui.screens import snapshot_dialog
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.jobs_screen import JobsScreen
from snaptui.ui.screens.snapshot_dialog import SnapshotDialog

SIZE = (120, 40)
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
NOVA = "instance-0000002a"
LAB_BASE = Path(tempfile.gettempdir()) / "snaptui-snapshot-lab"  # as test_ui_snapshots.py's


def demo(tmp_path: Path, speed: float = 0) -> SnaptuiApp:
    args = argparse.Namespace(demo=True, uri=None, cloud=None, library=None, theme=None,
                              demo_speed=speed)
    return build_app(args, demo_base=tmp_path / "demo")


async def open_dialog(pilot, app: SnaptuiApp, domain: str) -> SnapshotDialog:
    await settle(pilot)
    key = next(k for k, d in app.main.domains_pane.domains.items() if d.name == domain)
    app.main.domains_pane.select(key)
    await pilot.press("s")
    await wait_for(pilot, lambda: isinstance(app.screen, SnapshotDialog), 10, "the dialog")
    return app.screen


def hint_of(dialog: SnapshotDialog) -> str:
    return str(dialog.query_one("#mode-hint", Static).render())


@pytest.mark.parametrize("domain", [d.name for d in DOMAINS])
async def test_each_demo_guest_starts_the_mode_its_dialog_announces(tmp_path: Path, domain):
    app = demo(tmp_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            dialog = await open_dialog(pilot, app, domain)
            hint = hint_of(dialog)
            assert hint.startswith("auto will use "), hint
            announced = Mode(hint.removeprefix("auto will use ").split(":")[0])
            assert not dialog.query_one("#submit", Button).disabled
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: not isinstance(app.screen, SnapshotDialog), 10,
                           "the dialog to close or confirm")
            if isinstance(app.screen, ConfirmScreen):  # the mode stops the guest: agreed
                assert announced in (Mode.COLD, Mode.INTERNAL)
                await pilot.press("y")
            await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), 20,
                           "the jobs screen")
            screen = app.screen
            assert isinstance(screen, JobsScreen)
            await wait_for(pilot, lambda: screen.selected is not None
                           and screen.selected.status == "done", 60, "the job done")
            job = screen.selected
            assert job is not None and job.domain == domain
            assert job.mode == announced
            assert job.result.get("image_id"), job.result
            if domain == NOVA:  # what snaptui does for a Nova instance: it never stops it
                assert announced == Mode.BACKUP and "Nova" in hint
                assert not job.result.get("downtime_s")
    finally:
        app.host.close()


async def test_nova_guest_cold_needs_its_downtime_allowed(tmp_path: Path):
    """Cold on the Nova instance: unavailable with Nova's reason until "Allow Nova downtime"
    is ticked; then the stop confirmation names the 12 s guard."""
    app = demo(tmp_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            dialog = await open_dialog(pilot, app, NOVA)
            cold = next(b for b in dialog.query("#mode RadioButton") if b.name == "cold")
            assert cold.disabled and "Nova" in str(cold.label)
            allow = dialog.query_one("#allow-nova", Checkbox)
            assert not allow.value
            allow.focus()
            await pilot.press("space")
            await wait_for(pilot, lambda: not cold.disabled, 5, "cold offered")
            cold.value = True
            await pilot.pause()
            assert "stopped" in str(dialog.query_one("#stop-warning", Static).render())
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10,
                           "the stop confirmation")
            text = screen_text(app)
            assert "Nova downtime guard" in text and "12 s" in text
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is dialog, 5, "back to the dialog")
            assert dialog.build_request().allow_nova_downtime
    finally:
        app.host.close()


def test_nova_guest_dialog_snapshot(snap_compare, monkeypatch):
    """Deterministic as tests/test_ui_snapshots.py's: the lab at a fixed path, a frozen clock."""
    monkeypatch.setattr(snapshot_dialog, "clock", lambda: T0)
    app = build_app(argparse.Namespace(demo=True, uri=None, cloud=None, library=None,
                                       theme=None), demo_base=LAB_BASE)

    async def run_before(pilot) -> None:
        await open_dialog(pilot, app, NOVA)
        await settle(pilot)

    try:
        assert snap_compare(app, run_before=run_before, terminal_size=SIZE)
    finally:
        app.host.close()
