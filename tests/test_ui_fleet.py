"""The dashboard over several hosts (issue 16): the Host column, filter and sort across hosts, a
down host beside working ones, each host's own events, rows keyed HOST:UUID.

The hosts are real connections: the demo lab (test driver over real files), libvirt's
``test:///default`` (named "sim" in config.toml, as an operator names hosts), the lab's
libvirtd, and a URI where nothing listens (port 1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import libvirt
import pytest
from fleet_tools import HOST as SSH_HOST
from fleet_tools import Fleet as SshLab
from fleet_tools import lab_ssh_env
from libvirt_proxy import LibvirtProxy
from ui_pilot import Notes, demo_app, screen_text, settle, wait_for, wait_palette_hit

from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.fleet.inventory import Fleet, domain_key, key_of
from snaptui.core.images.library import ImageLibrary
from snaptui.core.libvirt.events import DomainEventWatcher
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.paths import config_dir
from snaptui.ui.app import SnaptuiApp
from snaptui.ui.launch import uri_list
from snaptui.ui.screens.jobs_screen import JobsScreen
from snaptui.ui.screens.snapshot_dialog import SnapshotDialog

SIM_URI = "test:///default"  # libvirt's built-in test host: one domain, "test"
SIM_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
DOWN_URI = "qemu+tcp://127.0.0.1:1/system"  # nothing listens on port 1
SIZE = (120, 40)


def name_sim_host() -> None:
    """config.toml names test:///default "sim" (``-c`` URIs keep their [[hosts]] name)."""
    path = config_dir() / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[[hosts]]\nname = "sim"\nuri = "{SIM_URI}"\n')


def fleet_demo_app(tmp_path: Path, *uris: str) -> SnaptuiApp:
    """``snaptui --demo -c URI…``: the demo lab as host "demo", plus ``uris``."""
    name_sim_host()
    return demo_app(tmp_path / "demo", uri=list(uris) or None, demo_speed=0)


def names_in_order(app: SnaptuiApp) -> list[tuple[str, str]]:
    """(host, name as shown) of each row, top to bottom."""
    table = app.main.domains_pane.table
    return [(app.main.domains_pane.domains[k].host, table.cell_text(k, "name"))
            for k in table.ordered_keys]


@pytest.fixture
def sim_conn():
    """A connection of our own to test:///default (its state is shared in this process);
    whatever a test does to "test" is undone."""
    conn = libvirt.open(SIM_URI)
    yield conn
    dom = conn.lookupByName("test")
    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
    conn.close()


async def test_host_column_only_with_several_hosts(tmp_path: Path) -> None:
    one = fleet_demo_app(tmp_path)
    async with one.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "host" not in one.main.domains_pane.table.shown_columns
        assert one.sub_title == "demo lab · libvirt test driver"
    two = fleet_demo_app(tmp_path, SIM_URI)
    async with two.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = two.main.domains_pane.table
        assert table.shown_columns[:2] == ["host", "name"]
        assert table.cell_text(domain_key("sim", SIM_UUID), "host") == "sim"
        assert two.sub_title == "demo lab · libvirt test driver · 2 hosts"
        assert two.main.domains_pane.border_subtitle == "8"
        # The cursor starts on the top row, whichever host answered first (sim's one domain
        # usually comes in before the demo's seven, and used to keep the cursor).
        assert table.cursor_row == 0 and two.main.detail.showing == (
            "domain", key_of(two.main.domains_pane.selected))
        assert two.main.domains_pane.selected.name == "api-gateway"


def test_c_is_one_uri_or_several() -> None:
    """``-c`` is a str today and a list once it is repeatable (cli/common.py)."""
    def ns(uri):
        return argparse.Namespace(uri=uri)

    assert uri_list(ns(None)) == [] and uri_list(ns([])) == []
    assert uri_list(ns("qemu:///system")) == ["qemu:///system"]
    assert uri_list(ns(["qemu:///system", SIM_URI])) == ["qemu:///system", SIM_URI]


async def test_sort_and_filter_across_hosts(tmp_path: Path) -> None:
    app = fleet_demo_app(tmp_path, SIM_URI)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        rows = names_in_order(app)
        # One list in name order: sim's "test" sits between the demo's domains.
        assert [name for _, name in rows] == sorted(name for _, name in rows)
        assert rows[-2:] == [("sim", "test"), ("demo", "web-frontend")]
        await pilot.press("slash", *"sim")
        await settle(pilot)
        assert names_in_order(app) == [("sim", "test")]
        assert app.main.domains_pane.border_subtitle == "1/8 match 'sim'"
        await pilot.press("escape", "slash", *"demo")
        await settle(pilot)
        assert {host for host, _ in names_in_order(app)} == {"demo"}
        assert len(names_in_order(app)) == 7


async def test_palette_jumps_to_a_domain_named_with_its_host(tmp_path: Path) -> None:
    app = fleet_demo_app(tmp_path, SIM_URI)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"jump to domain sim:test")
        await wait_palette_hit(pilot, "sim:test")
        await pilot.press("enter")
        await settle(pilot)
        assert key_of(app.main.domains_pane.selected) == domain_key("sim", SIM_UUID)
        assert app.main.detail.border_title == "Detail — sim:test"


async def test_a_down_host_is_shown_and_the_others_list(tmp_path: Path) -> None:
    app = fleet_demo_app(tmp_path, SIM_URI, DOWN_URI)
    notes = Notes()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await wait_for(pilot, lambda: app.main.domains_pane.down, 15, "the down host")
        await settle(pilot)
        pane = app.main.domains_pane
        assert set(pane.down) == {"127.0.0.1-1"}
        reason = pane.down["127.0.0.1-1"]
        assert "Connection refused" in reason and "\n" not in reason
        assert pane.down_lines.display
        text = screen_text(app)
        assert "✖ 127.0.0.1-1 down: unable to connect to server at" in text
        assert {h for h, _ in names_in_order(app)} == {"demo", "sim"}
        assert pane.border_subtitle == "8 · 1 down"
        errors = notes.errors()
        assert len(errors) == 1 and errors[0].message.startswith("127.0.0.1-1: cannot connect")
        await pilot.press("r")  # still down: no second notification
        await settle(pilot)
        assert len(notes.errors()) == 1
        assert pane.down and domain_key("sim", SIM_UUID) in pane.domains


async def test_events_from_the_second_host_update_its_row(tmp_path: Path, sim_conn) -> None:
    """The "sim" host's own watcher sees "test" paused: its row follows; the demo's do not
    move (the demo's test driver has no events: it has no watcher)."""
    app = fleet_demo_app(tmp_path, SIM_URI)
    key = domain_key("sim", SIM_UUID)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await wait_for(pilot, lambda: app.watching("sim"), 10, "the sim host's watcher")
        assert not app.watching("demo")
        table = app.main.domains_pane.table
        assert table.cell_text(key, "state") == "▶ running"
        await asyncio.to_thread(sim_conn.lookupByName("test").suspend)
        await wait_for(pilot, lambda: table.cell_text(key, "state") == "‖ paused", 10,
                       "the paused row")
        await asyncio.to_thread(sim_conn.lookupByName("test").resume)
        await wait_for(pilot, lambda: table.cell_text(key, "state") == "▶ running", 10,
                       "the running row")


async def test_real_lab_as_second_host_follows_its_events(tmp_path: Path, make_domain,
                                                          libvirt_uri: str) -> None:
    """The lab's libvirtd as host "lab" beside the demo: suspending a lab domain turns its
    row paused through the lab host's watcher."""
    lab = make_domain(state="running")
    app = fleet_demo_app(tmp_path, libvirt_uri)
    key = domain_key("local", lab.uuid)  # qemu:///system has no host name: "local"
    async with app.run_test(size=SIZE) as pilot:
        table = app.main.domains_pane.table
        await wait_for(pilot, lambda: key in table.rows, 15, "the lab's domain")
        await wait_for(pilot, lambda: app.watching("local"), 10, "the lab host's watcher")
        assert table.cell_text(key, "host") == "local"
        assert table.cell_text(key, "state") == "▶ running"
        await asyncio.to_thread(lab.dom.suspend)
        await wait_for(pilot, lambda: table.cell_text(key, "state") == "‖ paused", 10,
                       "the paused row")


async def test_one_libvirtd_under_two_uris_gives_two_rows(make_domain, libvirt_uri: str,
                                                          tmp_path: Path) -> None:
    """The same uuid on two hosts: two rows, each selectable, the detail says which host."""
    lab = make_domain(state="shut off")
    fleet = Fleet([HostSpec("hv-a", libvirt_uri), HostSpec("hv-b", "qemu+unix:///system")])
    app = SnaptuiApp(fleet=fleet, store=ImageLibrary(tmp_path / "library"))
    try:
        async with app.run_test(size=SIZE) as pilot:
            pane = app.main.domains_pane
            keys = [domain_key("hv-a", lab.uuid), domain_key("hv-b", lab.uuid)]
            await wait_for(pilot, lambda: all(k in pane.table.rows for k in keys), 15, "rows")
            assert pane.select(keys[1])
            await settle(pilot)
            assert app.main.detail.showing == ("domain", keys[1])
            assert app.main.detail.border_title == f"Detail — hv-b:{lab.name}"
            assert "on host hv-b" in app.main.detail.text
            assert app.sub_title == "2 hosts · library"
    finally:
        fleet.close()


async def test_a_remote_hosts_domain_is_snapshotted_there(make_domain, libvirt_uri: str,
                                                          store, own_images, tmp_path: Path,
                                                          lab_env) -> None:
    """A qemu+ssh host's domain (lab2: the lab's sshd): `s` opens the dialog from that host's
    connection; the job runs through snaptui on lab2 (its journal there, not here) with the
    dashboard's Glance login forwarded over SSH; the Jobs screen shows it as lab2:JOB to done,
    and the image is in Glance."""
    lab = make_domain(state="shut off")
    ssh = SshLab(ssh_uri=lab_ssh_env()["SNAPTUI_LAB_SSH_URI"], remote_home=tmp_path / "home",
                 remote_state=tmp_path / "remote-state", config=tmp_path / "unused.toml")
    ssh.remote_home.mkdir(mode=0o700)
    remote = HostSpec(SSH_HOST, ssh.ssh_uri, tuple(ssh.remote_command()))
    fleet = Fleet.of([(HostSpec("near", libvirt_uri), LibvirtHost(libvirt_uri)),
                      (remote, LibvirtHost(ssh.ssh_uri))])
    app = SnaptuiApp(fleet=fleet, store=store)
    try:
        async with app.run_test(size=SIZE) as pilot:
            pane = app.main.domains_pane
            key = domain_key(SSH_HOST, lab.uuid)
            await wait_for(pilot, lambda: key in pane.table.rows, 30, "the remote row")
            assert pane.select(key)
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, SnapshotDialog), 30,
                           "the dialog for lab2's domain")
            assert app.screen.uri == ssh.ssh_uri
            await pilot.press("escape")
            await settle(pilot)
            name = f"ui-remote-{lab.name[-8:]}"
            app.main._snapshot_chosen(SSH_HOST, SnapshotRequest(
                domain=lab.name, name=name, mode=Mode.COLD, destination="glance"))
            await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), 10, "Jobs")
            jobs = app.screen
            assert isinstance(jobs, JobsScreen)
            await wait_for(pilot, lambda: any(k.startswith(f"{SSH_HOST}:") and j.terminal
                                              for k, j in jobs.jobs.items()), 240,
                           "the remote job's end")
            [(row, job)] = [(k, j) for k, j in jobs.jobs.items() if k.startswith(SSH_HOST)]
            assert job.status == "done", job.error
            assert jobs.selected_id == row and job.domain == f"{SSH_HOST}:{lab.name}"
            remote_id = row.partition(":")[2]
            assert (ssh.remote_state / "jobs" / f"{remote_id}.jsonl").exists()
            assert not (Path(os.environ["SNAPTUI_STATE_DIR"]) / "jobs" /
                        f"{remote_id}.jsonl").exists()
            image_id = job.facts.get("image:vda")
            own_images.append(image_id)
            assert store.show(image_id).name == name
    finally:
        fleet.close()


def test_domains_json_carries_the_host_only_in_a_fleet(tmp_path: Path) -> None:
    fleet = Fleet([HostSpec("sim", SIM_URI)])
    try:
        (listing,) = fleet.list_all()
        info = listing.domains[0]
    finally:
        fleet.close()
    assert info.to_json()["host"] == "sim" and key_of(info) == domain_key("sim", SIM_UUID)
    assert "host" not in LibvirtHost(SIM_URI).get_domain("test").to_json()


async def test_a_host_that_comes_back_is_listed_again(tmp_path: Path) -> None:
    """Down at start (its test-driver file is missing); once the file exists, `r` lists it:
    its row appears, its down line goes, and its events are watched from then on."""
    node = tmp_path / "late.xml"
    app = fleet_demo_app(tmp_path, SIM_URI, f"test://{node}")
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main.domains_pane
        await wait_for(pilot, lambda: "local" in pane.down, 15, "the down host")
        assert not app.watching("local")
        node.write_text("<node><domain type='test'><name>late-vm</name>"
                        "<uuid>11111111-2222-3333-4444-555555555555</uuid><memory>65536</memory>"
                        "<os><type>hvm</type></os></domain></node>")
        await pilot.press("r")
        key = domain_key("local", "11111111-2222-3333-4444-555555555555")
        await wait_for(pilot, lambda: key in pane.table.rows, 15, "the host's domain")
        await wait_for(pilot, lambda: app.watching("local"), 10, "its watcher")
        assert not pane.down and not pane.down_lines.display
        assert pane.border_subtitle == "9"


@pytest.fixture
def proxy(tmp_path: Path):
    relay = LibvirtProxy(tmp_path / "hv2.sock")
    relay.start()
    yield relay
    relay.stop()


async def test_a_host_that_dies_shows_down_at_once_and_comes_back(
        proxy: LibvirtProxy, make_domain, tmp_path: Path) -> None:
    """hv2 (the lab's libvirtd through a relay) goes away mid-run: its watcher's disconnect
    lists it again, so it shows down without waiting for `r`, and hv1 keeps listing; the relay
    back, `r` lists hv2 again."""
    lab = make_domain(state="shut off")
    fleet = Fleet([HostSpec("hv1", SIM_URI), HostSpec("hv2", proxy.uri)])
    app = SnaptuiApp(fleet=fleet, store=ImageLibrary(tmp_path / "library"),
                     watcher_factory=lambda spec, cb: DomainEventWatcher(spec.uri, cb))
    key, sim_key = domain_key("hv2", lab.uuid), domain_key("hv1", SIM_UUID)
    try:
        async with app.run_test(size=SIZE) as pilot:
            pane = app.main.domains_pane
            await wait_for(pilot, lambda: key in pane.table.rows, 15, "hv2's domain")
            await wait_for(pilot, lambda: app.watching("hv2"), 10, "hv2's watcher")
            await asyncio.to_thread(proxy.stop)
            await wait_for(pilot, lambda: "hv2" in pane.down, 15, "hv2 down")
            assert key not in pane.table.rows and sim_key in pane.table.rows
            # libvirt's reason alone: refused, or reset when the relay closed mid-handshake
            reason = pane.down["hv2"]
            assert "cannot connect" not in reason and "\n" not in reason
            assert any(word in reason for word in ("not running", "reset", "refused")), reason
            await wait_for(pilot, lambda: "✖ hv2 down:" in screen_text(app), 10,
                           "the down line painted")  # pane.down is set before the repaint
            await asyncio.to_thread(proxy.start)
            await pilot.press("r")
            await wait_for(pilot, lambda: key in pane.table.rows, 15, "hv2's domain again")
            assert not pane.down and not pane.down_lines.display
    finally:
        fleet.close()
