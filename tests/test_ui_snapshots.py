"""Snapshot tests (pytest-textual-snapshot) of the main screen and its detail on the demo lab.

Deterministic: the demo lab has fixed uuids, image ids and creation dates and lives at a fixed
path (paths show on screen); no clock is shown; the user's config is blocked by the autouse
fixture in conftest.py. Regenerate with ``pytest tests/test_ui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from ui_pilot import demo_app, settle

LAB_BASE = Path(tempfile.gettempdir()) / "snaptui-snapshot-lab"
SIZES = [(80, 24), (120, 40)]


def make_app():
    return demo_app(LAB_BASE)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, size) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_domain_detail_with_backing_chain(snap_compare, size) -> None:
    async def select_db(pilot) -> None:
        await settle(pilot)
        await pilot.press("down")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=select_db)


def test_nova_instance_detail(snap_compare) -> None:
    """A Nova instance: its disk under instances/UUID over a raw base in instances/_base."""
    async def select_nova(pilot) -> None:
        await settle(pilot)
        await pilot.press("down", "down", "down", "down")  # listed as nova:k8s-worker-3
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=select_nova)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_image_detail_and_only_this_domain(snap_compare, size) -> None:
    async def only_api(pilot) -> None:
        await settle(pilot)
        await pilot.press("o", "tab")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=only_api)


def test_help_screen(snap_compare) -> None:
    async def help_(pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=help_)


def test_high_contrast_theme(snap_compare) -> None:
    async def hc(pilot) -> None:
        await settle(pilot)
        pilot.app.theme = "snaptui-hc16"
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=hc)
