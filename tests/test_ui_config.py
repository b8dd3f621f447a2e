"""Pressing `t` saves the theme into config.toml without losing what the operator wrote there.

Before, the file was rewritten from scratch (theme and keymap only): every comment went.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from ui_pilot import Notes, demo_app, settle, wait_for

from snaptui.core.errors import BadInput
from snaptui.core.paths import config_dir
from snaptui.core.settings import Settings, load_settings
from snaptui.ui.app import SnaptuiApp

OPERATOR_CONFIG = """\
# snaptui settings for the night shift (ask Ana before changing)
theme = "snaptui-dark"  # the hc16 one is for the wall screen

[keymap]  # binding id -> key(s)
# capital S: harder to hit by mistake
snapshot = "S"
jobs = "j,f2"  # f2 as on the old console
"""


def write_config(text: str) -> Path:
    config_dir().mkdir(parents=True, exist_ok=True)
    path = config_dir() / "config.toml"
    path.write_text(text)
    return path


async def test_theme_key_keeps_the_operators_comments(tmp_path):
    path = write_config(OPERATOR_CONFIG)
    app = demo_app(tmp_path / "demo")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.theme == "snaptui-dark"
        await pilot.press("t")
        await wait_for(pilot, lambda: app.theme != "snaptui-dark", 5, "the next theme")
        chosen = app.theme
        await pilot.pause()
    saved = path.read_text()
    assert saved == OPERATOR_CONFIG.replace('"snaptui-dark"', f'"{chosen}"')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    config = load_settings(path, SnaptuiApp.binding_ids())
    assert config.theme == chosen and config.keymap == {"snapshot": "S", "jobs": "j,f2"}


async def test_theme_key_adds_the_theme_to_a_config_without_one(tmp_path):
    text = "# only keys here\n[keymap]\nsnapshot = \"S\"  # mine\n"
    path = write_config(text)
    app = demo_app(tmp_path / "demo")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await wait_for(pilot, lambda: app.theme != "snaptui-dark", 5, "the next theme")
        await pilot.pause()
    saved = path.read_text()
    assert "# only keys here" in saved and 'snapshot = "S"  # mine' in saved
    assert load_settings(path, SnaptuiApp.binding_ids()).theme == app.theme


async def test_a_config_broken_while_running_is_not_overwritten(tmp_path):
    path = write_config(OPERATOR_CONFIG)
    app = demo_app(tmp_path / "demo")
    notes = Notes()
    async with app.run_test(size=(100, 30), message_hook=notes) as pilot:
        await settle(pilot)
        broken = OPERATOR_CONFIG + "theme = [unclosed\n"  # edited by hand meanwhile
        path.write_text(broken)
        await pilot.press("t")
        await wait_for(pilot, lambda: any("cannot save config" in n.message
                                          for n in notes.posted), 5, "the warning")
        assert app.screen is app.main
    assert path.read_text() == broken


def test_save_keeps_a_keymap_edited_into_a_non_table(tmp_path):
    path = tmp_path / "config.toml"
    text = 'keymap = "S"  # not a table any more\n'
    path.write_text(text)
    with pytest.raises(BadInput, match="'keymap' must be a table"):
        Settings(theme="snaptui-light", keymap={"snapshot": "S"}, path=path).save_dashboard()
    assert path.read_text() == text
