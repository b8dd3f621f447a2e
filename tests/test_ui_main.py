"""Pilot tests of the dashboard's main screen: on the demo lab, and one on the real lab."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from textual import events
from textual.color import Color
from ui_pilot import demo_args, screen_text, settle, wait_for, wait_palette_hit

from snaptui.core.disk import qemu_img
from snaptui.core.engine.jobs import prepare, run_inline
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.errors import BadInput
from snaptui.core.fleet.inventory import key_of
from snaptui.core.images.library import ImageLibrary
from snaptui.core.libvirt.events import DomainEventWatcher
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.paths import config_dir
from snaptui.core.settings import load_settings
from snaptui.ui.app import SnaptuiApp
from snaptui.ui.launch import build_app
from snaptui.ui.screens import main_screen
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.help_screen import HelpScreen
from snaptui.ui.screens.jobs_screen import JobsScreen
from snaptui.ui.screens.snapshot_dialog import SnapshotDialog
from snaptui.ui.themes import load_themes, shipped_theme_dir

SIZE = (80, 24)


def fast_demo_args() -> argparse.Namespace:
    return demo_args(demo_speed=0)  # as fast as it goes (test_ui_demo.py watches a paced one)


@pytest.fixture
def demo_app(tmp_path: Path) -> SnaptuiApp:
    return build_app(fast_demo_args(), demo_base=tmp_path / "demo")


def state_cell(app: SnaptuiApp, uuid: str) -> str:
    pane = app.main.domains_pane
    return pane.table.cell_text(key_of(pane.by_uuid(uuid)), "state")


def detail_text(app: SnaptuiApp) -> str:
    return app.main.detail.text


async def test_both_panes_populated_with_banner(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = demo_app.main
        assert main.domains_pane.table.row_count == 7
        assert main.images_pane.table.row_count == 3
        assert main.query_one("#demo-banner").display
        assert main.images_pane.border_title.startswith("Images — library")
        api = next(d for d in main.domains_pane.domains.values() if d.name == "api-gateway")
        assert state_cell(demo_app, api.uuid) == "▶ running"
        # Snaps and Last snap are hidden at 80 columns; their cells still hold the values.
        assert main.domains_pane.table.shown_columns == ["name", "state", "alloc"]
        assert main.domains_pane.table.cell_text(key_of(api), "snaps") == "1"
        assert main.domains_pane.table.cell_text(key_of(api), "last") == "2025-05-12"


async def test_selecting_a_domain_fills_the_detail(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "api-gateway" in detail_text(demo_app) and "vdb" in detail_text(demo_app)
        await pilot.press("down")  # db-primary: an overlay on a base image
        await settle(pilot)
        text = detail_text(demo_app)
        assert "db-primary" in text and "backing" in text and "debian-12-base.qcow2" in text
        assert "virtual 60.0 GiB" in text
        for _ in range(4):  # staging-ci: leftover internal snapshots
            await pilot.press("down")
        await settle(pilot)
        text = detail_text(demo_app)
        assert "2 internal snapshot(s)" in text and "before-upgrade" in text
        await pilot.press("tab")  # to the Images pane: the detail follows the image
        await settle(pilot)
        image = demo_app.main.images_pane.selected
        assert image is not None
        assert demo_app.main.detail.showing == ("image", image.id)
        first = detail_text(demo_app).splitlines()[0].split()
        kind = ["snapshot", "image"] if image.is_snapshot else ["image"]
        assert first == [image.name, *kind, image.id], first


async def test_detail_follows_the_cursor_and_reads_disks_once_it_rests(
        demo_app: SnaptuiApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Moving on: the name and state follow at once; qemu-img runs only for the domain the
    cursor rests on (after the debounce), for all its disks at once, and paints their info."""
    monkeypatch.setattr(main_screen, "DETAIL_DEBOUNCE_S", 0.5)  # wide: a slow box stays green
    read: list[str] = []
    real_info = qemu_img.info

    async def counted_info(path, **kwargs):
        read.append(str(path))
        return await real_info(path, **kwargs)

    monkeypatch.setattr(qemu_img, "info", counted_info)
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = demo_app.main
        read.clear()
        await pilot.press("down", "down", "down", "down", "down")  # on to staging-ci
        await pilot.pause()
        rested = main.domains_pane.selected
        assert rested.name == "staging-ci"
        assert main.detail.showing == ("domain", key_of(rested))
        assert rested.name in detail_text(demo_app) and "reading…" in detail_text(demo_app)
        assert read == []  # nothing read while the cursor moved
        await settle(pilot)
        disks = [d for d in rested.snapshot_disks if d.path]
        assert sorted(read) == sorted(d.path for d in disks)
        text = detail_text(demo_app)
        assert "reading…" not in text
        assert text.count("virtual ") >= len(disks)
        assert "2 internal snapshot(s)" in text and "before-upgrade" in text
        detail = main.detail  # taller than the pane at 80x24: the mouse wheel scrolls it
        assert detail.max_scroll_y > 0 and detail.render_line(0).text.startswith("staging-ci")
        await pilot._post_mouse_events([events.MouseScrollDown], detail, offset=(4, 3))
        await pilot.pause()
        assert detail.scroll_offset.y > 0
        assert not detail.render_line(0).text.startswith("staging-ci")
        await pilot.press("up")  # the header follows at once, the disks after the debounce
        await pilot.pause()
        assert main.detail.showing == ("domain", key_of(main.domains_pane.selected))
        assert "reading…" in detail_text(demo_app)
        await settle(pilot)
        assert "reading…" not in detail_text(demo_app)


async def test_reloading_the_shown_domain_keeps_its_disks_until_reread(
        demo_app: SnaptuiApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """A libvirt event for the shown domain reloads it without flashing "reading…"."""
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = demo_app.main
        info = main.domains_pane.selected
        assert "virtual " in detail_text(demo_app)
        real_info = qemu_img.info
        asked: list[str] = []
        release = asyncio.Event()

        async def held_info(path, **kwargs):
            asked.append(path)
            await release.wait()  # the reread is in flight until the test lets it go
            return await real_info(path, **kwargs)

        monkeypatch.setattr(qemu_img, "info", held_info)
        main._apply_domain(info)
        await wait_for(pilot, lambda: asked, 5, "the reload to reread the disks")
        await pilot.pause()
        assert "virtual " in detail_text(demo_app) and "reading…" not in detail_text(demo_app)
        release.set()
        await settle(pilot)
        assert "virtual " in detail_text(demo_app) and "reading…" not in detail_text(demo_app)


async def test_filter_the_focused_pane(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = demo_app.main
        await pilot.press("slash", "d", "b")
        await pilot.pause()
        assert main.domains_pane.filter_input.display
        assert main.domains_pane.table.row_count == 1
        await pilot.press("escape")
        await pilot.pause()
        assert main.domains_pane.table.row_count == 7
        assert not main.domains_pane.filter_input.display
        await pilot.press("tab", "slash", *"debian", "enter")
        await pilot.pause()
        assert main.images_pane.table.row_count == 1
        assert main.domains_pane.table.row_count == 7
        assert demo_app.focused is main.images_pane.table


async def test_only_this_domains_images(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        images = demo_app.main.images_pane
        await pilot.press("o")  # api-gateway is selected
        await pilot.pause()
        assert images.table.row_count == 1
        assert "only api-gateway" in images.border_title
        await pilot.press("down")  # db-primary: its own snapshot image
        await settle(pilot)
        assert [images.images[k].name for k in images.table.ordered_keys] == [
            "db-primary-pre-migration"]
        await pilot.press("down")  # legacy-raw has none
        await settle(pilot)
        assert images.table.row_count == 0
        await pilot.press("o")
        await pilot.pause()
        assert images.table.row_count == 3


async def test_a_nova_instance_is_shown_with_its_base_image(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = demo_app.main
        nova = next(d for d in main.domains_pane.domains.values() if d.nova is not None)
        assert main.domains_pane.table.cell_text(key_of(nova), "name") == "nova:k8s-worker-3"
        main.domains_pane.select(key_of(nova))
        await settle(pilot)
        await pilot.press("o")  # only its images: none made yet, and the image it booted from
        await settle(pilot)
        images = main.images_pane
        assert list(images.table.ordered_keys) == [nova.base_image_ref]
        assert "Nova instance k8s-worker-3" in main.detail.text
        images.select(str(nova.base_image_ref))
        await settle(pilot)
        assert "debian-12" in main.detail.text


async def test_theme_cycles_and_is_remembered(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert demo_app.theme == "snaptui-dark"
        assert {"snaptui-dark", "snaptui-light", "snaptui-hc16"} <= set(
            demo_app.available_themes)
        await pilot.press("t")
        await pilot.pause()
        assert demo_app.theme == "snaptui-hc16"
        await pilot.press("t")
        await pilot.pause()
        assert demo_app.theme == "snaptui-light"
    assert load_settings(config_dir() / "config.toml").theme == "snaptui-light"


async def test_every_cycled_theme_renders(demo_app: SnaptuiApp) -> None:
    """`t` reaches every theme of the cycle in order, and each one repaints the screen and
    the table in its own colours (the CSS variables and computed styles, not the name)."""
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        cycle = demo_app.theme_cycle()
        assert demo_app.theme == cycle[0]
        looks = {}
        for name in [*cycle[1:], cycle[0]]:
            await pilot.press("t")
            await pilot.pause()
            assert demo_app.theme == name and demo_app.screen is demo_app.main
            theme = demo_app.available_themes[name]
            primary = demo_app.get_css_variables()["primary"]
            assert Color.parse(primary) == Color.parse(theme.primary), name
            if theme.background:
                background = Color.parse(theme.background).rgb
                assert demo_app.screen.styles.background.rgb == background, name
            table = demo_app.main.domains_pane.table
            looks[name] = (demo_app.screen.styles.background, table.styles.background,
                           primary.lower())
        assert len(set(looks.values())) == len(cycle), looks  # no theme looks like another


def test_a_bad_theme_file_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nprimary = "#123456"\nbackground = "not-a-colour"\n')
    with pytest.raises(BadInput, match="'background' = 'not-a-colour' is not a colour"):
        load_themes([tmp_path])
    bad.write_text('name = "x"\nprimary = "#123456"\nbackgrund = "#000000"\n')
    with pytest.raises(BadInput, match="unknown key 'backgrund'"):
        load_themes([tmp_path])


def test_theme_option_and_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="unknown theme 'nope'; choose one of: .*snaptui-hc16"):
        build_app(demo_args(theme="nope"), demo_base=tmp_path / "demo")
    config_dir().mkdir(parents=True, exist_ok=True)
    (config_dir() / "config.toml").write_text('[keymap]\nsnapshoot = "S"\n')
    with pytest.raises(BadInput, match="unknown binding id 'keymap.snapshoot'"):
        build_app(fast_demo_args(), demo_base=tmp_path / "demo")
    (config_dir() / "config.toml").write_text('colour = "red"\n')
    with pytest.raises(BadInput, match="unknown key 'colour'"):
        build_app(fast_demo_args(), demo_base=tmp_path / "demo")


async def test_keymap_remaps_and_help_lists_it(tmp_path: Path) -> None:
    config_dir().mkdir(parents=True, exist_ok=True)
    (config_dir() / "config.toml").write_text('[keymap]\nonly_domain = "f6"\n')
    app = build_app(fast_demo_args(), demo_base=tmp_path / "demo")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o")  # no longer bound
        await pilot.pause()
        assert app.main.images_pane.only_domain is None
        await pilot.press("f6")
        await pilot.pause()
        assert app.main.images_pane.only_domain is not None
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        rows = {row[1]: row for row in app.screen.rows}
        assert rows["only_domain"][0] == "f6"
        assert rows["snapshot"][0] == "s"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main


async def test_palette_jumps_to_a_domain(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"jump to domain web-f")
        await wait_palette_hit(pilot, "web-frontend")
        await pilot.press("enter")
        await settle(pilot)
        assert demo_app.main.domains_pane.selected.name == "web-frontend"
        assert "web-frontend" in detail_text(demo_app)


async def test_finished_job_refreshes_images_and_domains(demo_app: SnaptuiApp) -> None:
    """A cold snapshot on the demo: the new image and the domain's snapshot count appear."""
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        host, store = demo_app.host, demo_app.store
        request = SnapshotRequest(domain="web-frontend", name="web-frontend-ui-test",
                                  mode=Mode.COLD, destination="library")
        plan, steps = await prepare(request, host=host, store=store)
        job_id = run_inline(plan, request, steps, host=host, store=store)
        demo_app.main.follow_job(job_id)
        await wait_for(pilot, lambda: demo_app.main.images_pane.table.row_count >= 4, 30,
                       "the new image listed")
        assert demo_app.main.images_pane.table.row_count == 4
        web = next(d for d in demo_app.main.domains_pane.domains.values()
                   if d.name == "web-frontend")
        assert demo_app.main.domains_pane.table.cell_text(key_of(web), "snaps") == "1"
        assert state_cell(demo_app, web.uuid) == "▶ running"


async def test_real_lab_domain_state_follows_libvirt_events(make_domain, libvirt_uri: str,
                                                            tmp_path: Path) -> None:
    """Real libvirtd: a running domain appears running; suspending it turns the row paused."""
    lab = make_domain(state="running")
    host = LibvirtHost(libvirt_uri).connect()
    app = SnaptuiApp(host=host, store=ImageLibrary(tmp_path / "library"),
                     watcher_factory=lambda spec, cb: DomainEventWatcher(spec.uri, cb),
                     themes=load_themes([shipped_theme_dir()]))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert state_cell(app, lab.uuid) == "▶ running"
            assert "Images — library" in app.main.images_pane.border_title
            await asyncio.to_thread(lab.dom.suspend)
            await wait_for(pilot, lambda: state_cell(app, lab.uuid) == "‖ paused", 10,
                           "the row paused")
            await asyncio.to_thread(lab.dom.resume)
            await wait_for(pilot, lambda: state_cell(app, lab.uuid) == "▶ running", 10,
                           "the row running again")
    finally:
        host.close()


async def test_snapshot_from_the_dashboard_on_the_demo(demo_app: SnaptuiApp) -> None:
    """s → dialog → confirm → jobs screen; the finished job's image shows in the Images pane."""
    async with demo_app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        web = next(d for d in demo_app.main.domains_pane.domains.values()
                   if d.name == "web-frontend")
        demo_app.main.domains_pane.select(key_of(web))
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(demo_app.screen, SnapshotDialog)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(demo_app.screen, ConfirmScreen), 10,
                       "the confirmation")
        await pilot.press("y")  # the guest will be stopped: confirm
        await wait_for(pilot, lambda: len(demo_app.main.images_pane.images) >= 4, 30,
                       "the new image")
        assert len(demo_app.main.images_pane.images) == 4
        assert isinstance(demo_app.screen, JobsScreen)
        snaps = demo_app.main.domains_pane.table
        await wait_for(pilot, lambda: snaps.cell_text(key_of(web), "snaps") == "1", 30,
                       "the domain's snapshot count")
        new = [i for i in demo_app.main.images_pane.images.values() if "web-frontend" in i.name]
        assert len(new) == 1 and new[0].status == "active", new
        assert snaps.cell_text(key_of(web), "snaps") == "1", new[0].properties


def footer_keys(screen) -> dict[str, bool]:
    """action → enabled, as the footer shows it now."""
    from textual.widgets._footer import FooterKey

    return {key.action: not key.has_class("-disabled") for key in screen.query(FooterKey)}


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_tables_fit_their_panes(tmp_path: Path, size) -> None:
    """No table is wider than its pane: lower-priority columns drop out at narrow widths."""
    app = build_app(fast_demo_args(), demo_base=tmp_path / "demo")
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for pane in (app.main.domains_pane, app.main.images_pane):
            table = pane.table
            assert table.virtual_size.width <= table.size.width, (pane.id, table.shown_columns)
            assert not table.show_horizontal_scrollbar
        wide = size[0] >= 120
        assert app.main.domains_pane.table.shown_columns == (
            ["name", "state", "alloc", "snaps", "last"] if wide else ["name", "state", "alloc"])
        assert app.main.images_pane.table.shown_columns == (
            ["name", "status", "size", "created"] if wide else ["name", "status", "size"])


async def test_columns_follow_a_resize_rows_and_cursor_stay(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        domains, images = demo_app.main.domains_pane.table, demo_app.main.images_pane.table
        assert "disks" in domains.shown_columns and "snap" in images.shown_columns
        await pilot.press("down", "down")
        selected = domains.selected_key
        order = images.ordered_keys
        rows_before = [domains.get_row_index(k) for k in domains.rows]
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert domains.shown_columns == ["name", "state", "alloc"]
        assert domains.selected_key == selected
        assert [domains.get_row_index(k) for k in domains.rows] == rows_before
        assert images.ordered_keys == order
        # Newest first survives the Created column being hidden.
        created = [images.cell_text(k, "created") for k in
                   sorted(images.rows, key=images.get_row_index)]
        assert created == sorted(created, reverse=True)
        assert domains.cell_text(selected, "name") in screen_text(demo_app)
        await pilot.resize_terminal(120, 40)
        await settle(pilot)
        assert "last" in domains.shown_columns and domains.selected_key == selected
        assert "Last snap" in screen_text(demo_app)


async def test_footer_greys_out_what_needs_a_domain(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = demo_app.main
        assert footer_keys(main)["snapshot"] and footer_keys(main)["only_domain"]
        await pilot.press("slash", *"no-such-domain", "enter")  # filter kept, table focused
        await pilot.pause()
        assert main.domains_pane.table.row_count == 0
        assert demo_app.focused is main.domains_pane.table
        assert main.check_action("snapshot", ()) is None
        assert main.check_action("only_domain", ()) is None
        await pilot.pause()
        keys = footer_keys(main)
        assert not keys["snapshot"] and not keys["only_domain"] and keys["jobs"]
        await pilot.press("escape")
        await pilot.pause()
        assert footer_keys(main)["snapshot"]


async def test_footer_keys_are_not_rebuilt_while_they_look_the_same(
        demo_app: SnaptuiApp) -> None:
    """Cursor moves and focus changes publish bindings_updated; the footer keeps its widgets
    (a recompose is a full layout) until what it shows changes."""
    from textual.widgets._footer import FooterKey

    async with demo_app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = demo_app.main
        before = list(main.query(FooterKey))
        await pilot.press("down", "down", "tab", "down", "tab", "up")
        await settle(pilot)
        assert list(main.query(FooterKey)) == before
        await pilot.press("slash", *"no-such-domain", "enter")  # nothing to snapshot: greyed
        await settle(pilot)
        assert list(main.query(FooterKey)) != before and not footer_keys(main)["snapshot"]


async def test_detail_text_can_be_selected_with_the_mouse(demo_app: SnaptuiApp) -> None:
    async with demo_app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        detail = demo_app.main.detail
        await pilot.mouse_down(detail, offset=(2, 2))  # from "vda" on the second line
        await pilot.hover(detail, offset=(30, 3))
        await pilot.mouse_up(detail, offset=(30, 3))
        await pilot.pause()
        selected = demo_app.screen.get_selected_text()
        assert selected.startswith("vda ") and "api-gateway-vda.qcow2\n  qcow2" in selected
