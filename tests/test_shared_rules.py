"""The CLI and the dashboard apply one rule each for allocated size, ``auto`` mode and the
default destination (snaptui/core/images/factory.py), checked on real domains of the lab.

Before these rules were shared: ``snaptui domains`` counted a CD-ROM's ISO in a domain's
allocated size and the Domains pane did not; and the dashboard (and ``snaptui snapshot``)
sent images to Glance when OS_CLOUD was set even with ``--library DIR``, while
``snaptui images --library DIR`` listed that library.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from pathlib import Path

import pytest
from lab_domains import TEST_PREFIX, LabDomain, domain_xml, make_disk
from test_cli_inventory import snaptui, snaptui_json
from textual.app import App
from textual.widgets import Static
from ui_pilot import wait_for

from snaptui.core.disk.allocation import allocated_size
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.preflight.checks import available_modes, preflight
from snaptui.core.engine.preflight.mode_decision import auto_mode
from snaptui.core.fleet.inventory import key_of
from snaptui.core.images.library import ImageLibrary
from snaptui.ui.app import SnaptuiApp
from snaptui.ui.launch import build_app
from snaptui.ui.screens.snapshot_dialog import SnapshotDialog, resolved_mode

ISO_BYTES = 3 * 1024 * 1024


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.fixture
def domain_with_cdrom(conn, disk_dir):
    """A shut-off domain with one qcow2 disk and a CD-ROM holding a 3 MiB ISO file."""
    name = TEST_PREFIX + uuid.uuid4().hex[:8]
    disk = make_disk(disk_dir / f"{name}-vda.qcow2")
    iso = disk_dir / f"{name}.iso"
    iso.write_bytes(os.urandom(ISO_BYTES))  # really allocated, unlike a sparse file
    cdrom = f"""
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{iso}'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <serial"""
    conn.defineXML(domain_xml(name, [("vda", disk, "qcow2")]).replace("\n    <serial", cdrom, 1))
    lab = LabDomain(conn, name, [("vda", disk, "qcow2")])
    yield lab, disk, iso
    lab.remove()


async def test_cli_and_dashboard_agree_on_allocated_size(domain_with_cdrom, host, tmp_path):
    lab, disk, iso = domain_with_cdrom
    assert allocated(iso) >= ISO_BYTES
    info = host.get_domain(lab.name)
    assert [d.device for d in info.disks] == ["disk", "cdrom"]
    # The rule: only the disks a snapshot takes count; the CD-ROM's ISO does not.
    assert allocated_size(info) == allocated(disk)

    listed = {d["name"]: d for d in snaptui_json("domains")}
    cli_size = listed[lab.name]["allocated_size"]

    app = SnaptuiApp(host=host, store=ImageLibrary(tmp_path / "library"))
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.main.domains_pane
        await wait_for(pilot, lambda: pane.by_uuid(lab.uuid), 20, "the domains list")
        dashboard_size = pane.extras[key_of(pane.by_uuid(lab.uuid))].allocated
    assert cli_size == dashboard_size == allocated(disk)


class DialogHost(App):
    def __init__(self, dialog: SnapshotDialog) -> None:
        super().__init__()
        self.dialog = dialog

    def on_mount(self) -> None:
        self.push_screen(self.dialog)


@pytest.mark.parametrize("state", ["running", "paused", "shut off"])
async def test_dialog_and_preflight_agree_on_auto_mode(make_domain, host, tmp_path, state):
    lab = make_domain(state=state)
    info = host.get_domain(lab.name)
    modes = available_modes(info, host)
    library = tmp_path / "library"
    plan, _ = await preflight(SnapshotRequest(domain=lab.name, name="agree", mode=Mode.AUTO,
                                              destination="library", library_dir=str(library)),
                              host)
    expected = Mode.LIVE if state == "running" else Mode.COLD
    assert plan.mode == expected == auto_mode(info, modes)[0]
    assert resolved_mode(Mode.AUTO, info, modes) == plan.mode

    app = DialogHost(SnapshotDialog(info, modes, "library", str(library)))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        hint = str(app.dialog.query_one("#mode-hint", Static).render())
        warned = app.dialog.query_one("#stop-warning").display
    assert hint.startswith(f"auto will use {plan.mode}")
    # The dialog gives the reason preflight records (for cold: why not live).
    if plan.mode == Mode.COLD:
        assert plan.mode_reason == f"auto chose cold: {hint.split(': ', 1)[1]}"
    # Cold on a running or paused guest stops it: the dialog warns exactly then.
    assert warned == (plan.mode == Mode.COLD and state != "shut off")


def test_library_option_means_the_library_everywhere(make_domain, libvirt_uri, os_cloud,
                                                     tmp_path):
    """OS_CLOUD is set (the lab's env); ``--library DIR`` without ``--os-cloud`` is the library
    for ``snaptui images``, ``snaptui snapshot`` and the dashboard alike."""
    assert os.environ.get("OS_CLOUD") == os_cloud
    library = tmp_path / "library"
    library.mkdir()

    listing = snaptui("images", "--library", str(library))
    assert listing.returncode == 0, listing.stderr
    assert f"library: {library}" in listing.stdout + listing.stderr

    lab = make_domain(state="shut off")
    dry = snaptui("snapshot", lab.name, "--name", "where", "--library", str(library),
                  "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["destination"] == "library"

    app = build_app(argparse.Namespace(demo=False, uri=libvirt_uri, cloud=None,
                                       library=str(library), theme=None))
    try:
        assert app.store.kind == "library"
        assert Path(app.store.location) == library
        assert app.glance_available  # a cloud is configured: the dialog still offers it
    finally:
        app.host.close()

    # An explicit --os-cloud still wins over --library (the library is then for --to library).
    app = build_app(argparse.Namespace(demo=False, uri=libvirt_uri, cloud=os_cloud,
                                       library=str(library), theme=None))
    try:
        assert app.store.kind == "glance"
    finally:
        app.host.close()


async def test_dialog_defaults_to_the_library_and_still_offers_glance(make_domain, host,
                                                                     tmp_path):
    lab = make_domain(state="shut off")
    info = host.get_domain(lab.name)
    dialog = SnapshotDialog(info, available_modes(info, host), "library", str(tmp_path),
                            glance_available=True)
    app = DialogHost(dialog)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        buttons = {b.name: b for b in dialog.query("#destination RadioButton")}
        assert not buttons["glance"].disabled and "no cloud" not in str(buttons["glance"].label)
        assert buttons["library"].value and not buttons["glance"].value
        assert dialog.build_request().destination == "library"
