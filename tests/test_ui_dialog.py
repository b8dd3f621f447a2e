"""The snapshot dialog in a tiny host app: defaults, validation, modes, confirmation, keys."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from textual.app import App
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, Static
from ui_pilot import screen_text

from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.preflight.checks import available_modes
from snaptui.core.engine.preflight.mode_decision import ModeFacts
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DiskInfo, DomainInfo, DomainState, NovaMetadata
from snaptui.ui.screens import snapshot_dialog
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.snapshot_dialog import SnapshotDialog

SIZES = [(80, 24), (120, 40)]
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
UNAVAILABLE = "the Test driver cannot do live snapshots"
NO_RESULT = object()


def domain(state: DomainState = DomainState.RUNNING, ndisks: int = 2) -> DomainInfo:
    disks = tuple(DiskInfo(f"vd{chr(97 + i)}", f"/srv/disks/d{i}.qcow2", "qcow2", "virtio")
                  for i in range(ndisks))
    return DomainInfo("web01", "0f5e3c1a-4d8b-4c6e-9a3f-2b1c0d9e8f7a", state, 1, 131072, True,
                      disks)


def modes(live: bool = False) -> dict[Mode, str | None]:
    return {Mode.AUTO: None, Mode.COLD: None, Mode.INTERNAL: None,
            Mode.LIVE: None if live else UNAVAILABLE,
            Mode.BACKUP: "the Test driver cannot do backup snapshots"}


class DialogHost(App):
    """Pushes one SnapshotDialog and keeps what it dismisses with."""

    def __init__(self, dialog: SnapshotDialog) -> None:
        super().__init__()
        self.dialog = dialog
        self.result: object = NO_RESULT

    def on_mount(self) -> None:
        self.push_screen(self.dialog, self._done)

    def _done(self, result: SnapshotRequest | None) -> None:
        self.result = result


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch):
    monkeypatch.setattr(snapshot_dialog, "clock", lambda: T0)


def make(dom: DomainInfo | None = None, live: bool = False, destination: str = "library",
         library: str | None = "/srv/library") -> DialogHost:
    return DialogHost(SnapshotDialog(dom or domain(), modes(live), destination, library))


@pytest.mark.parametrize("size", SIZES)
async def test_defaults(size):
    app = make()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        dialog = app.dialog
        assert app.screen is dialog
        assert dialog.query_one("#name", Input).value == "web01-20260101T000000Z"
        request = dialog.build_request()
        assert request == SnapshotRequest(
            domain="web01", name="web01-20260101T000000Z", mode=Mode.AUTO, disk="vda",
            all_disks=False, out_format="qcow2", compress=False, destination="library",
            library_dir="/srv/library")
        # No cloud: glance is offered but disabled; the dialog fits the terminal.
        glance = dialog.query_one("#destination RadioButton", RadioButton)
        assert glance.disabled and "no cloud" in str(glance.label)
        box = dialog.query_one("#dialog").region
        assert box.right <= size[0] and box.bottom <= size[1]
        assert dialog.query_one("#buttons").region.bottom <= size[1]


@pytest.mark.parametrize("size", SIZES)
async def test_unavailable_modes_disabled_with_reason(size):
    app = make()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        buttons = {b.name: b for b in app.dialog.query("#mode RadioButton").results(RadioButton)}
        assert buttons["live"].disabled and UNAVAILABLE in str(buttons["live"].label)
        assert buttons["backup"].disabled
        assert not buttons["cold"].disabled and not buttons["auto"].disabled
        # Arrows skip disabled modes: auto -> cold -> internal -> (live, backup skipped) -> auto
        for expected in ("cold", "internal", "auto"):
            await pilot.press("down")
            assert app.dialog.mode == Mode(expected)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("bad", ["", "   ", "two\nlines", "x" * 300],
                         ids=["empty", "blank", "newline", "300-chars"])
async def test_bad_name_shows_error_and_stays(size, bad):
    app = make(domain(DomainState.SHUTOFF))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        name = app.dialog.query_one("#name", Input)
        name.value = bad
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is app.dialog and app.result is NO_RESULT
        error = str(app.dialog.query_one("#name-error", Static).render())
        assert error, "an inline error is shown"
        assert name.has_focus and name.has_class("-invalid")
        name.value = "fine name"
        await pilot.pause()
        assert str(app.dialog.query_one("#name-error", Static).render()) == ""


async def test_escape_returns_none():
    app = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.result is None


@pytest.mark.parametrize("size", SIZES)
async def test_enter_returns_request_without_stopping(size):
    """Auto resolves to live on a running guest: no stop, no confirmation."""
    app = make(live=True)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        assert not app.dialog.query_one("#stop-warning").display
        # Disk: all disks; format: raw (compress then disabled); a name of one's own.
        await pilot.press("tab", "down", "down", "tab", "down", "tab")
        assert app.focused is app.dialog.query_one("#name", Input)
        name = app.dialog.query_one("#name", Input)
        name.value = ""
        await pilot.press(*"nightly 'web' ü")
        await pilot.press("enter")
        await pilot.pause()
        assert app.result == SnapshotRequest(
            domain="web01", name="nightly 'web' ü", mode=Mode.AUTO, disk=None, all_disks=True,
            out_format="raw", compress=False, destination="library", library_dir="/srv/library")


async def test_compress_only_with_qcow2():
    app = make(domain(DomainState.SHUTOFF), destination="glance")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("tab", "tab", "tab", "space", "enter")  # compress on, submit
        await pilot.pause()
        assert isinstance(app.result, SnapshotRequest)
        assert app.result.compress and app.result.out_format == "qcow2"
        assert app.result.destination == "glance" and app.result.library_dir is None


@pytest.mark.parametrize("size", SIZES)
async def test_cold_on_running_guest_needs_confirmation(size, make_domain, libvirt_uri):
    """On the real lab: a running domain, its real available modes, cold chosen."""
    lab = make_domain(state="running")
    with LibvirtHost(libvirt_uri).connect() as host:
        info = host.get_domain(lab.name)
        real_modes = available_modes(info, host)
    app = DialogHost(SnapshotDialog(info, real_modes, "library", None))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("down")  # cold
        assert app.dialog.mode == Mode.COLD
        warning = str(app.dialog.query_one("#stop-warning", Static).render())
        assert snapshot_dialog.STOP_WARNING in warning
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.result is NO_RESULT
        await pilot.press("escape")  # back to the dialog, nothing returned
        await pilot.pause()
        assert app.screen is app.dialog and app.result is NO_RESULT
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("enter")  # "Stop guest and snapshot" has focus
        await pilot.pause()
        assert isinstance(app.result, SnapshotRequest)
        assert app.result.mode == Mode.COLD and app.result.domain == lab.name
        assert app.result.destination == "library" and app.result.disk == "vda"


async def test_auto_resolving_to_cold_warns():
    app = make()  # live unavailable on a running guest: auto means cold
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "auto will use cold" in str(app.dialog.query_one("#mode-hint", Static).render())
        assert app.dialog.query_one("#stop-warning").display
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_dialog_snapshot(snap_compare, size):
    assert time.time() > T0
    assert snap_compare(make(), terminal_size=size)


async def test_confirm_after_enter_in_the_name_field():
    """Enter in the name field, then the stop confirmation: the dialog dismisses with the
    request (the confirmation's callback runs in the dialog's own message pump)."""
    app = make()  # auto means cold on this running guest
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        name = app.dialog.query_one("#name", Input)
        name.focus()
        name.value = ""
        await pilot.press(*"typed name", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.result, SnapshotRequest) and app.result.name == "typed name"


async def test_quiesce_and_verify_boot_reach_the_request():
    app = make(domain(DomainState.SHUTOFF))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.dialog.build_request().quiesce == "auto"
        assert not app.dialog.build_request().verify
        app.dialog.query_one("#verify").value = True
        buttons = {b.name: b for b in app.dialog.query("#quiesce RadioButton").results(RadioButton)}
        buttons["require"].value = True
        await pilot.pause()
        request = app.dialog.build_request()
        assert request.verify and request.quiesce == "require"
        assert app.dialog.query_one("#buttons").region.bottom <= 24


@pytest.mark.parametrize("blocked", [None, "libnbd's Python binding is not installed"])
async def test_auto_hint_says_when_the_guest_will_stream(blocked):
    """A running guest, backup and live available, Glance chosen: auto streams when the host
    can (the worker's stream_blocked is None) unless verify boot or compression needs the copy
    path; a host that cannot stream keeps the live hint."""
    all_modes = {m: None for m in Mode}
    app = DialogHost(SnapshotDialog(domain(), all_modes, "glance", None, stream_blocked=blocked))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()

        def hint() -> str:
            return str(app.dialog.query_one("#mode-hint", Static).render())

        if blocked:
            assert hint().startswith("auto will use live")
            return
        assert hint().startswith("auto will stream")
        app.dialog.query_one("#verify", Checkbox).value = True
        await pilot.pause()
        assert hint().startswith("auto will use live")
        app.dialog.query_one("#verify", Checkbox).value = False
        await pilot.pause()
        assert hint().startswith("auto will stream")


async def test_host_load_reaches_the_request_and_a_bad_rate_stays():
    """The collapsed "Host load" section: priority (default low) and a bandwidth cap. A bad
    rate is one line under the section, which opens with the field focused; nothing is
    returned until it is fixed."""
    app = make(domain(DomainState.SHUTOFF))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        dialog = app.dialog
        request = dialog.build_request()
        assert (request.priority, request.bwlimit) == ("low", None)
        buttons = {b.name: b for b in dialog.query("#priority RadioButton").results(RadioButton)}
        buttons["idle"].value = True
        dialog.query_one("#bwlimit", Input).value = "fast"
        await pilot.pause()
        dialog.query_one("#name", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog and app.result is NO_RESULT
        hint = dialog.query_one("#bwlimit-hint", Label)
        assert str(hint.render()).strip().startswith("Bandwidth: 'fast' is not a rate")
        bwlimit = dialog.query_one("#bwlimit", Input)
        assert bwlimit.has_focus and not dialog.query_one("#load").collapsed
        assert bwlimit.region.bottom <= 24 and hint.region.bottom <= 24
        assert dialog.query_one("#submit").region.bottom <= 24  # the buttons stay on screen
        bwlimit.value = ""
        await pilot.press(*"50M", "enter")
        await pilot.pause()
        assert isinstance(app.result, SnapshotRequest)
        assert (app.result.priority, app.result.bwlimit) == ("idle", 50 << 20)


def nova_domain() -> DomainInfo:
    nova = NovaMetadata("http://openstack.org/xmlns/libvirt/nova/1.1", name="k8s-worker-3",
                        owner_project="platform", flavor="m1.medium")
    return replace(domain(ndisks=1), name="instance-0000002a", nova=nova)


async def test_no_mode_possible_disables_snapshot_until_nova_downtime_is_allowed():
    """A running Nova instance on a host that can do neither live nor backup: preflight would
    refuse every mode, so the dialog says so in one line (and what would make one possible)
    and Snapshot is disabled; allowing Nova downtime makes auto cold, under the 12 s guard,
    which the stop confirmation names."""
    app = DialogHost(SnapshotDialog(nova_domain(), modes(), "library", "/srv/library"))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        dialog = app.dialog
        hint = str(dialog.query_one("#mode-hint", Static).render())
        assert hint.startswith("No mode can run") and "Allowing Nova downtime" in hint
        assert "auto will use" not in hint
        assert dialog.query_one("#submit", Button).disabled
        assert all(b.disabled for b in dialog.query("#mode RadioButton").results(RadioButton))
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is dialog and app.result is NO_RESULT  # nothing is asked
        allow = dialog.query_one("#allow-nova", Checkbox)
        allow.focus()
        await pilot.press("space")  # keyboard: the choice is reachable and toggles
        await pilot.pause()
        assert allow.value and not dialog.query_one("#submit", Button).disabled
        hint = str(dialog.query_one("#mode-hint", Static).render())
        assert hint.startswith("auto will use cold")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Nova downtime guard" in screen_text(app) and "12 s" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
    assert isinstance(app.result, SnapshotRequest)
    assert app.result.allow_nova_downtime and app.result.mode == Mode.AUTO


async def test_the_hint_follows_preflight_as_the_disk_changes():
    """Facts from the host, reasons per chosen disk: internal needs qcow2 on the disks taken,
    so choosing the raw disk takes internal away and back (mode_decision.mode_reasons)."""
    disks = (DiskInfo("vda", "/srv/disks/a.qcow2", "qcow2", "virtio"),
             DiskInfo("vdb", "/srv/disks/b.img", "raw", "virtio"))
    info = replace(domain(DomainState.SHUTOFF), disks=disks)
    facts = ModeFacts(driver="TEST", block_copy=False, backup=False)
    app = DialogHost(SnapshotDialog(info, facts, "library", "/srv/library"))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        dialog = app.dialog

        def internal() -> RadioButton:
            return next(b for b in dialog.query("#mode RadioButton").results(RadioButton)
                        if b.name == "internal")

        assert not internal().disabled
        vdb = next(b for b in dialog.query("#disk RadioButton").results(RadioButton)
                   if b.name == "vdb")
        vdb.value = True
        await pilot.pause()
        assert internal().disabled and "qcow2" in str(internal().label)
        assert str(dialog.query_one("#mode-hint", Static).render()).startswith(
            "auto will use cold")
