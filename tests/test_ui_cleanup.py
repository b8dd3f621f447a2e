"""The dashboard's Cleanup screen: on the real lab (leftovers made like interrupted runs leave
them, found, chosen, confirmed, removed and gone; a running guest's snapshot refused), on the
demo lab (keys, help, palette, keymap), and snapshots at 80x24 and 120x40.

The lab is shared: the scan also lists other people's leftovers, so the real-lab test first
chooses none, then chooses only its own rows by key, and checks that exactly those are chosen
before it deletes anything.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import libvirt
import pytest
from cleanup_fixtures import (
    dead_job,
    internal_snapshot,
    job_id,
    partial_file,
    retrying,
    snapshot_names,
)
from textual.pilot import Pilot
from ui_pilot import demo_app, demo_args, screen_text, settle, wait_for, wait_palette_hit

from snaptui.core.cleanup import Finding, Kind, RemovalResult, ScanProgress
from snaptui.core.errors import NotFound
from snaptui.core.paths import config_dir, scratch_dir
from snaptui.ui.app import SnaptuiApp
from snaptui.ui.launch import build_app
from snaptui.ui.screens.cleanup_screen import CleanupScreen
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.help_screen import HelpScreen

SIZES = [(80, 24), (120, 40)]


async def open_cleanup(pilot: Pilot, key: str = "C") -> CleanupScreen:
    await settle(pilot)
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CleanupScreen), 5, "Cleanup")
    screen = pilot.app.screen
    await scanned(pilot, screen)
    return screen


async def scanned(pilot: Pilot, screen: CleanupScreen, timeout: float = 120) -> None:
    await wait_for(pilot, lambda: not screen.scanning, timeout, "the scan to end")
    await settle(pilot)


async def cursor_to(pilot: Pilot, screen: CleanupScreen, key: str) -> None:
    """Move the cursor to ``key``'s row with the arrow keys."""
    table = screen.table
    steps = table.get_row_index(key) - table.cursor_row
    await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps))
    await pilot.pause()
    assert table.selected_key == key


# -- the real lab ------------------------------------------------------------------------------


@pytest.fixture
def dashboard(libvirt_uri: str, os_cloud: str) -> Iterator[SnaptuiApp]:
    """``snaptui -c URI --os-cloud CLOUD`` built by the real factory."""
    app = build_app(demo_args(demo=False, uri=libvirt_uri, cloud=os_cloud))
    yield app
    app.host.close()


def running(lab) -> bool:
    return lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


async def test_cleanup_on_the_lab(make_domain, store, own_images, dashboard) -> None:
    real = os.path.realpath
    # An internal-mode job that died: its snapshot on a shut-off guest's disk (safe) ...
    off = make_domain(state="shut off")
    snap_off = f"snaptui-{job_id()}"
    internal_snapshot(off.disk_path(), snap_off)
    # ... and on a disk whose guest was started again since (refused: qemu-img must not touch it).
    busy = make_domain(state="shut off")
    snap_busy = f"snaptui-{job_id()}"
    internal_snapshot(busy.disk_path(), snap_busy)
    busy.set_state("running")
    # A partial output a killed convert left in the scratch dir (this test's own state dir).
    partial = partial_file(scratch_dir() / f"{job_id()}-vda.qcow2.partial")
    # An upload that a dead job of this host's journal never finished.
    uploader = dead_job(str(uuid.uuid4()), "snaptui-test-ui-cleanup-uploader")
    queued = retrying(store.create, "snaptui-test-ui-cleanup-queued", "qcow2", "bare",
                      {"snaptui_job": uploader})
    own_images.append(queued.id)
    mine = {"off": f"internal:{real(off.disk_path())}#1:{snap_off}",
            "partial": f"scratch:{real(partial)}",
            "queued": f"images:glance:{queued.id}"}
    refused_key = f"internal:{real(busy.disk_path())}#1:{snap_busy}"
    try:
        async with dashboard.run_test(size=(80, 24)) as pilot:
            screen = await open_cleanup(pilot)
            assert screen.older_than_s == 24 * 3600
            # Made seconds ago: only `o` to "any age" pre-selects them (24 h -> 1 h -> any).
            for _ in range(2):
                await pilot.press("o")
                await scanned(pilot, screen)
            assert screen.older_than_s == 0
            assert "any age" in screen_text(dashboard)
            found = screen.selection.findings
            assert set(mine.values()) | {refused_key} <= set(found), screen_text(dashboard)
            for key in mine.values():
                assert found[key].safe and key in screen.selection.chosen, found[key].reason
            assert found[refused_key].refused and refused_key not in screen.selection.chosen

            # The refused one: its reason under the table; space cannot choose it.
            await cursor_to(pilot, screen, refused_key)
            await pilot.press("space")
            await pilot.pause()
            assert refused_key not in screen.selection.chosen
            text = screen_text(dashboard)
            assert "disk in use by running guest" in text and "refused" in text

            # Shared lab: choose none, then exactly our three, by their rows.
            await pilot.press("a")
            await pilot.pause()
            assert screen.selection.chosen == set()
            assert screen.check_action("delete", ()) is None
            for key in mine.values():
                await cursor_to(pilot, screen, key)
                await pilot.press("space")
            await pilot.pause()
            assert screen.selection.chosen == set(mine.values())
            partial_size = found[mine["partial"]].size
            assert partial_size and partial_size > 0

            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(dashboard.screen, ConfirmScreen), 5,
                           "the confirmation")
            text = screen_text(dashboard)
            assert "Remove 3 leftovers?" in text and "reclaimable" in text
            assert partial.name[-30:] in text and "internal" in text and "images" in text
            await pilot.press("enter")
            await wait_for(pilot, lambda: dashboard.screen is screen, 5, "back from the modal")
            await wait_for(pilot, lambda: not screen.removing, 120, "the removals")
            await settle(pilot)

            results = screen.selection.results
            assert set(results) == set(mine.values())
            for key in mine.values():
                assert results[key].ok, results[key].reason
            assert results[mine["partial"]].reclaimed == partial_size
            text = screen_text(dashboard)
            assert "3 removed, 0 refused, 0 failed" in text and "reclaimed (measured)" in text
            assert "✔" in text
            await cursor_to(pilot, screen, mine["partial"])
            assert "reclaimed (measured" in screen_text(dashboard)

            # Gone from the host and the cloud; the refused snapshot and its guest untouched.
            assert snap_off not in snapshot_names(off.disk_path())
            assert not partial.exists()
            with pytest.raises(NotFound):
                store.show(queued.id)
            assert snap_busy in snapshot_names(busy.disk_path())
            assert running(busy)

            # A rescan no longer lists them; escape goes back to the main screen.
            await pilot.press("r")
            await scanned(pilot, screen)
            assert not set(mine.values()) & set(screen.selection.findings)
            assert refused_key in screen.selection.findings
            await pilot.press("escape")
            await pilot.pause()
            assert dashboard.screen is dashboard.main
    finally:
        partial.unlink(missing_ok=True)
    assert running(busy)


async def test_domain_key_chooses_all_of_one_domains_findings(make_domain, dashboard) -> None:
    """`g` on a finding chooses every finding of its domain that may go: snaptui's own and an
    operator's / old Nova's snapshots alike; another domain's stay unchosen and on disk."""
    real = os.path.realpath
    web = make_domain(state="shut off")
    names = (f"snaptui-{job_id()}", uuid.uuid4().hex, "runbook-before-seed")
    for name in names:
        internal_snapshot(web.disk_path(), name)
    mine = {name: f"internal:{real(web.disk_path())}#{n}:{name}"
            for n, name in enumerate(names, 1)}
    other = make_domain(state="shut off")
    internal_snapshot(other.disk_path(), "runbook-before-seed")
    other_key = f"internal:{real(other.disk_path())}#1:runbook-before-seed"
    async with dashboard.run_test(size=(80, 24)) as pilot:
        screen = await open_cleanup(pilot)
        assert " g Domain " in screen_text(dashboard).splitlines()[-1]
        for _ in range(2):  # to "any age": made seconds ago
            await pilot.press("o")
            await scanned(pilot, screen)
        chosen = screen.selection.chosen
        assert mine[names[0]] in chosen and not {mine[names[1]], mine[names[2]]} & chosen
        await pilot.press("a")  # shared lab: choose none first
        await pilot.pause()
        assert screen.selection.chosen == set()

        await cursor_to(pilot, screen, mine[names[1]])
        assert "likely Nova leftover" in screen_text(dashboard)
        await pilot.press("g")
        await pilot.pause()
        assert screen.selection.chosen == set(mine.values())
        await pilot.press("g")  # again: none of them
        await pilot.pause()
        assert screen.selection.chosen == set()
        await cursor_to(pilot, screen, "group:internal")
        await pilot.press("g")  # a group row names no domain: nothing chosen
        await pilot.pause()
        assert screen.selection.chosen == set()
        await cursor_to(pilot, screen, mine[names[2]])
        await pilot.press("g")
        await pilot.pause()
        assert screen.selection.chosen == set(mine.values())
        assert other_key in screen.selection.findings

        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(dashboard.screen, ConfirmScreen), 5,
                       "the confirmation")
        assert "Remove 3 leftovers?" in screen_text(dashboard)
        await pilot.press("enter")
        await wait_for(pilot, lambda: dashboard.screen is screen, 5, "back from the modal")
        await wait_for(pilot, lambda: not screen.removing, 120, "the removals")
        results = screen.selection.results
        assert set(results) == set(mine.values())
        assert all(r.ok for r in results.values()), [r.reason for r in results.values()]
        assert snapshot_names(web.disk_path()) == []
        assert snapshot_names(other.disk_path()) == ["runbook-before-seed"]

        # `?` lists the screen's keys, the domain key among them.
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(dashboard.screen, HelpScreen)
        rows = {row[1]: row for row in dashboard.screen.rows}
        assert rows["cleanup.domain"][0] == "g" and "domain" in rows["cleanup.domain"][2]
        await pilot.press("escape")
        await pilot.pause()
        assert dashboard.screen is screen


# -- the demo lab: keys, help, palette, keymap ---------------------------------------------------


async def test_keys_on_the_demo_lab(tmp_path: Path) -> None:
    app = demo_app(tmp_path / "demo")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_cleanup(pilot)
        found = screen.selection.findings
        refused = [k for k, f in found.items() if f.refused]
        saved = next(k for k, f in found.items() if f.kind is Kind.MANAGED_SAVE)
        assert len(refused) == 2 and not found[saved].safe and not found[saved].refused
        assert screen.selection.chosen == set()  # nothing safe: nothing pre-chosen
        assert screen.check_action("delete", ()) is None
        # Not safe but not refused: chosen only explicitly, and space un-chooses it again.
        await cursor_to(pilot, screen, saved)
        await pilot.press("space")
        await pilot.pause()
        assert screen.selection.chosen == {saved}
        assert screen.check_action("delete", ()) is True
        await pilot.press("space")
        await pilot.pause()
        assert screen.selection.chosen == set()
        # Space on a group row chooses the safe ones of the group: none here.
        await cursor_to(pilot, screen, "group:managed-save")
        await pilot.press("space")
        await pilot.pause()
        assert screen.selection.chosen == set()
        # Enter with a choice asks first; "Keep" removes nothing.
        await cursor_to(pilot, screen, saved)
        await pilot.press("space", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "confirm")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and screen.selection.results == {}
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main
        # The help lists the key; the palette opens the screen too.
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        rows = {row[1]: row for row in app.screen.rows}
        assert rows["cleanup"][0] == "C" and "leftovers" in rows["cleanup"][2]
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"clean up left")
        await wait_palette_hit(pilot, "leftovers")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CleanupScreen), 5, "palette")
        await scanned(pilot, app.screen)
    app.host.close()


async def test_cleanup_key_remaps(tmp_path: Path) -> None:
    config_dir().mkdir(parents=True, exist_ok=True)
    (config_dir() / "config.toml").write_text('[keymap]\ncleanup = "f7"\n')
    app = demo_app(tmp_path / "demo")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("C")  # no longer bound
        await pilot.pause()
        assert app.screen is app.main
        screen = await open_cleanup(pilot, "f7")
        assert screen.selection.findings
    app.host.close()


# -- snapshots ---------------------------------------------------------------------------------

LAB_BASE = Path(tempfile.gettempdir()) / "snaptui-cleanup-snapshot-lab"


def make_demo_app() -> SnaptuiApp:
    return demo_app(LAB_BASE)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_demo_lab_snapshot(snap_compare, size) -> None:
    """The real scan of the demo lab: refused snapshots of a paused guest, a managed save."""
    async def run_before(pilot: Pilot) -> None:
        screen = await open_cleanup(pilot)
        await cursor_to(pilot, screen, next(k for k, f in screen.selection.findings.items()
                                            if f.refused))

    assert snap_compare(make_demo_app(), terminal_size=size, run_before=run_before)


def fixed_findings() -> list[Finding]:
    """One of most kinds, with fixed paths, sizes and reasons (no clock, no host)."""
    def finding(key: str, kind: Kind, location: str, size: int | None, safe: bool,
                reason: str, refused: str | None = None, action: str = "delete file",
                command: str = "", domain: str | None = None, **details: object) -> Finding:
        return Finding(key=key, kind=kind, location=location, size=size, safe=safe,
                       reason=reason, commands=(command,) if command else (), action=action,
                       refused=refused, domain=domain, details=details)

    disk = "/var/lib/libvirt/images"
    return [
        finding(f"internal:{disk}/web01.qcow2#1:snaptui-20260101-000000-abc123",
                Kind.INTERNAL, f"{disk}/web01.qcow2 (web01 vda) snapshot "
                "'snaptui-20260101-000000-abc123'", None, True,
                "left by snaptui job 20260101-000000-abc123, which is no longer running (2 d old)",
                action="qemu-img snapshot -d",
                command=f"qemu-img snapshot -d snaptui-20260101-000000-abc123 {disk}/web01.qcow2",
                domain="web01", name="snaptui-20260101-000000-abc123", target="vda"),
        finding(f"internal:{disk}/db01.qcow2#2:snaptui-20260101-010000-def456",
                Kind.INTERNAL, f"{disk}/db01.qcow2 (db01 vda) snapshot "
                "'snaptui-20260101-010000-def456'", None, False,
                "disk in use by running guest db01: qemu-img must not modify an image in use",
                refused="disk in use by running guest db01", action="qemu-img snapshot -d",
                domain="db01", name="snaptui-20260101-010000-def456", target="vda"),
        finding("scratch:/var/lib/snaptui/scratch/20260101-000000-abc123-vda.qcow2.partial",
                Kind.SCRATCH, "/var/lib/snaptui/scratch/20260101-000000-abc123-vda.qcow2.partial",
                3 << 20, True, "partial output of snaptui job 20260101-000000-abc123, which "
                "is no longer running (2 d old)", command="rm -- /var/lib/snaptui/scratch/..."),
        finding("scratch:/srv/vm/user-overlay.qcow2", Kind.SCRATCH,
                "/srv/vm/user-overlay.qcow2", 2 << 20, False,
                "overlay on web01's disk, used by no domain; not named like a snaptui delta: "
                "kept unless chosen"),
        finding("managed-save:0001", Kind.MANAGED_SAVE, "/var/lib/libvirt/qemu/save/web01.save",
                130 << 20, True, "saved 2 d ago and never restarted; saved by snaptui job "
                "20260101-000000-abc123 (failed)", action="virsh managedsave-remove"),
        finding("images:glance:0e2b", Kind.IMAGES, "glance image 0e2b (web01-20260101)",
                None, True, "queued for 2 d: an upload that never finished",
                action="delete image"),
    ]


def fixed_results(finding: Finding) -> RemovalResult:
    if finding.kind is Kind.MANAGED_SAVE:
        return RemovalResult(finding.key, False, finding.action,
                             reason="refused: web01 is locked by a snapshot job (pid 4242)")
    if finding.kind is Kind.IMAGES:
        return RemovalResult(finding.key, False, finding.action,
                             reason="Glance: 503 Service Unavailable")
    size = finding.size or 1 << 20
    return RemovalResult(finding.key, True, finding.action, reclaimed=size, before=size,
                         after=0)


async def fixed_scan(host, store, *, on_progress=None, problems=None,
                     **_: object) -> AsyncIterator[Finding]:
    findings = fixed_findings()
    for done, finding in enumerate(findings):
        if on_progress is not None:
            on_progress(ScanProgress(finding.kind, done, len(findings)))
        yield finding


async def fixed_remove(finding: Finding, host, store) -> RemovalResult:
    return fixed_results(finding)


async def push_fixed(pilot: Pilot) -> CleanupScreen:
    await settle(pilot)
    screen = CleanupScreen(scanner=fixed_scan, remover=fixed_remove)
    await pilot.app.push_screen(screen)
    await scanned(pilot, screen)
    return screen


async def test_fixed_findings_choose_and_remove(tmp_path: Path) -> None:
    """Outcomes of every sort on their rows and in the summary (scan and removal given)."""
    app = demo_app(tmp_path / "demo")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await push_fixed(pilot)
        chosen = {f.key for f in fixed_findings() if f.safe}
        assert screen.selection.chosen == chosen
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "confirm")
        assert "Remove 4 leftovers?" in screen_text(app)
        await wait_for(pilot, lambda: "133 MiB + 2 of unknown size" in screen_text(app), 5,
                       "the sizes in the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: len(screen.selection.results) == 4, 10, "results")
        await wait_for(pilot, lambda: not screen.removing, 5, "the end")
        assert screen.selection.outcomes() == {"removed": 2, "refused": 1, "failed": 1}
        text = screen_text(app)
        assert "2 removed, 1 refused, 1 failed" in text and "✘ refused" in text
        assert "✘ failed" in text and "✔ 3.0 MiB" in text
        # Removed rows cannot be chosen again; `a` chooses the safe ones left (tried, not gone).
        await pilot.press("a")
        await pilot.pause()
        assert screen.selection.chosen == {"managed-save:0001", "images:glance:0e2b"}
    app.host.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fixed_findings_snapshot(snap_compare, size) -> None:
    """The checklist with every status, the cursor on a not-safe row."""
    async def run_before(pilot: Pilot) -> None:
        screen = await push_fixed(pilot)
        await cursor_to(pilot, screen, "scratch:/srv/vm/user-overlay.qcow2")

    assert snap_compare(make_demo_app(), terminal_size=size, run_before=run_before)


def test_confirmation_snapshot(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await push_fixed(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: "133 MiB + 2 of unknown size" in screen_text(pilot.app),
                       5, "the confirmation drawn")

    assert snap_compare(make_demo_app(), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_results_snapshot(snap_compare, size) -> None:
    """After removal: removed with measured space, refused and failed with their reasons."""
    async def run_before(pilot: Pilot) -> None:
        screen = await push_fixed(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), 5, "modal")
        await pilot.press("y")
        await wait_for(pilot, lambda: not screen.removing and screen.selection.results, 10,
                       "results")
        await cursor_to(pilot, screen, "managed-save:0001")
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(make_demo_app(), terminal_size=size, run_before=run_before)
