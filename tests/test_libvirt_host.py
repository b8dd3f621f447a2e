"""The libvirt adapter against the real libvirtd: listing, states, lookups, errors, events."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from pathlib import Path

import libvirt
import pytest
from fault_tools import ensure_libvirtd, stop_libvirtd

from snaptui.core.errors import HypervisorError, NotFound
from snaptui.core.libvirt.domain_xml import parse_domain_xml
from snaptui.core.libvirt.events import DomainEvent, DomainEventWatcher, event_names
from snaptui.core.libvirt.host import LibvirtHost, default_uri
from snaptui.core.models import DiskInfo, DomainState, NetworkSource

LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")


# -- default_uri -------------------------------------------------------------------------------
def test_default_uri_prefers_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu:///session")
    assert default_uri("test:///default") == "test:///default"


def test_default_uri_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    assert default_uri() == "test:///default"
    assert default_uri("") == "test:///default"


@pytest.mark.parametrize(("euid", "expected"), [(0, "qemu:///system"), (1000, "qemu:///session")])
def test_default_uri_by_user(monkeypatch: pytest.MonkeyPatch, euid: int, expected: str) -> None:
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    assert default_uri() == expected


# -- listing and lookups -----------------------------------------------------------------------
@pytest.mark.parametrize(("state", "expected", "saved"), [
    ("running", DomainState.RUNNING, False),
    ("paused", DomainState.PAUSED, False),
    ("shut off", DomainState.SHUTOFF, False),
    ("saved", DomainState.SAVED, True),
])
def test_list_shows_domain_in_each_state(host: LibvirtHost, make_domain, state: str,
                                         expected: DomainState, saved: bool) -> None:
    lab = make_domain(state=state)
    listed = {d.name: d for d in host.list_domains()}
    info = listed[lab.name]
    assert info.uuid == lab.uuid
    assert info.state is expected
    assert info.has_managed_save is saved
    assert info.persistent
    assert info.vcpus == 1
    assert info.memory_kib == 128 * 1024
    assert info.disks == (DiskInfo(target="vda", path=str(lab.disk_path("vda")), format="qcow2",
                                   bus="virtio", device="disk", source_type="file"),)
    assert info.disk() == info.disks[0]
    assert info.base_image_ref is None


def test_state_follows_transitions(host: LibvirtHost, make_domain) -> None:
    lab = make_domain(state="shut off")
    seen = []
    for state in ("running", "paused", "shut off", "saved", "running"):
        if state == "running" and seen and seen[-1] is DomainState.PAUSED:
            lab.dom.resume()
        else:
            lab.set_state(state)
        seen.append(host.get_domain(lab.name).state)
    assert seen == [DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF,
                    DomainState.SAVED, DomainState.RUNNING]
    # Starting from the managed save consumed it.
    assert host.get_domain(lab.name).has_managed_save is False


def test_get_domain_by_name_and_uuid(host: LibvirtHost, make_domain) -> None:
    lab = make_domain()
    assert host.get_domain(lab.name).uuid == lab.uuid
    assert host.get_domain(lab.uuid).name == lab.name
    assert host.lookup(lab.uuid).name() == lab.name


@pytest.mark.parametrize("missing", ["snaptui-test-does-not-exist",
                                     "00000000-0000-4000-8000-000000000000"])
def test_get_domain_unknown_is_not_found(host: LibvirtHost, missing: str) -> None:
    with pytest.raises(NotFound) as info:
        host.get_domain(missing)
    assert str(info.value) == f"no such domain: {missing}"


def test_connect_to_dead_uri_is_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    uri = "qemu+unix:///system?socket=/nonexistent"
    with pytest.raises(HypervisorError) as info:
        LibvirtHost(uri).connect()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot connect to {uri}: libvirtd is not running (")
    assert "/nonexistent" in message
    # libvirt's default handler would also print the error to stderr; we silence it.
    assert "libvirt:" not in capfd.readouterr().err


def test_capabilities_on_qemu_and_test_driver(host: LibvirtHost) -> None:
    assert not host.is_test_driver
    assert host.supports_block_copy and host.supports_backup
    with LibvirtHost("test:///default") as test_host:
        assert test_host.is_test_driver
        assert not test_host.supports_block_copy and not test_host.supports_backup
        assert [d.name for d in test_host.list_domains()] == ["test"]


# -- domain XML --------------------------------------------------------------------------------
NOVA_XML = """<domain type='kvm' id='3'>
  <name>instance-00000042</name>
  <uuid>629b29b9-b0fb-4766-b27d-f4a686d5cbda</uuid>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/{version}">
      <nova:package version="27.1.0"/>
      <nova:name>web-1</nova:name>
      <nova:creationTime>2025-04-29 06:01:09</nova:creationTime>
      <nova:flavor name="m1.small">
        <nova:memory>2048</nova:memory><nova:disk>20</nova:disk><nova:vcpus>1</nova:vcpus>
      </nova:flavor>
      <nova:owner>
        <nova:user uuid="u-1">alice</nova:user>
        <nova:project uuid="p-1">demo</nova:project>
      </nova:owner>
      <nova:root type="{root_type}" uuid="8a3d1c52-5a4f-4a43-9d4b-4d1f8a5b8f10"/>
    </nova:instance>
  </metadata>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/nova/instances/629b/disk'/>
      <backingStore type='file'><format type='raw'/><source file='/base/abc'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/mapper/vol-1'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='rbd' name='volumes/volume-7'><host name='10.0.0.1' port='6789'/></source>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/nova/instances/629b/disk.config'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
  </devices>
</domain>"""


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_parse_nova_domain_xml(version: str) -> None:
    parsed = parse_domain_xml(NOVA_XML.format(version=version, root_type="image"))
    assert parsed.name == "instance-00000042"
    assert parsed.uuid == "629b29b9-b0fb-4766-b27d-f4a686d5cbda"
    assert parsed.base_image_ref == "8a3d1c52-5a4f-4a43-9d4b-4d1f8a5b8f10"
    assert parsed.nova is not None
    assert (parsed.nova.name, parsed.nova.flavor) == ("web-1", "m1.small")
    assert (parsed.nova.owner_user, parsed.nova.owner_project_id) == ("alice", "p-1")
    assert parsed.disks == (
        DiskInfo("vda", "/var/lib/nova/instances/629b/disk", "qcow2", "virtio", "disk", "file"),
        DiskInfo("vdb", "/dev/mapper/vol-1", "raw", "virtio", "disk", "block"),
        DiskInfo("vdc", "volumes/volume-7", "raw", "virtio", "disk", "network",
                 network=NetworkSource("rbd", "volumes/volume-7", (("10.0.0.1", 6789),))),
        DiskInfo("sda", "/var/lib/nova/instances/629b/disk.config", "raw", "sata", "cdrom",
                 "file", readonly=True),
    )


def test_parse_boot_from_volume_has_no_base_image() -> None:
    parsed = parse_domain_xml(NOVA_XML.format(version="1.1", root_type="volume"))
    assert parsed.nova is not None and parsed.nova.root_type == "volume"
    assert parsed.base_image_ref is None


def test_parse_plain_xml_and_empty_cdrom() -> None:
    parsed = parse_domain_xml("""<domain type='kvm'><name>plain</name><devices>
      <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    </devices></domain>""")
    assert parsed.nova is None and parsed.base_image_ref is None
    assert parsed.disks == (DiskInfo("hdc", None, None, "ide", "cdrom", "file", readonly=True),)


def test_parse_garbage_is_hypervisor_error() -> None:
    with pytest.raises(HypervisorError, match="cannot parse domain XML"):
        parse_domain_xml("<domain><name>x</domain>")
    with pytest.raises(HypervisorError, match="not a domain XML"):
        parse_domain_xml("<network/>")


# -- events ------------------------------------------------------------------------------------
def test_event_names_from_libvirt_constants() -> None:
    assert event_names(2, 0) == ("started", "booted")
    assert event_names(5, 1) == ("stopped", "destroyed")
    assert event_names(5, 4) == ("stopped", "saved")
    assert event_names(3, 0) == ("suspended", "paused")
    assert event_names(4, 0) == ("resumed", "unpaused")


class Recorder:
    """Collects watcher events in a queue; ``wait_for`` consumes until a predicate matches."""

    def __init__(self) -> None:
        self.events: queue.Queue[DomainEvent] = queue.Queue()
        self.seen: list[DomainEvent] = []

    def __call__(self, event: DomainEvent) -> None:
        self.events.put(event)

    def wait_for(self, match: Callable[[DomainEvent], bool], timeout: float = 20) -> DomainEvent:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(event)
            if match(event):
                return event
        raise AssertionError(f"event not seen within {timeout} s; saw {self.seen}")

    def wait_lifecycle(self, name: str, event: str, detail: str) -> DomainEvent:
        return self.wait_for(lambda e: e.kind == "lifecycle" and e.domain == name
                             and (e.event, e.detail) == (event, detail))


@pytest.fixture
def recorder(libvirt_uri: str):
    rec = Recorder()
    watcher = DomainEventWatcher(libvirt_uri, rec)
    watcher.start()
    rec.watcher = watcher  # type: ignore[attr-defined]
    yield rec
    watcher.stop()


def test_watcher_sees_lifecycle_sequence(recorder: Recorder, make_domain) -> None:
    lab = make_domain(state="shut off")
    dom = lab.dom
    recorder.wait_lifecycle(lab.name, "defined", "added")
    dom.create()
    started = recorder.wait_lifecycle(lab.name, "started", "booted")
    assert started.uuid == lab.uuid
    dom.suspend()
    recorder.wait_lifecycle(lab.name, "suspended", "paused")
    dom.resume()
    recorder.wait_lifecycle(lab.name, "resumed", "unpaused")
    dom.destroy()
    stopped = recorder.wait_lifecycle(lab.name, "stopped", "destroyed")
    assert stopped.monotonic >= started.monotonic
    assert abs(stopped.wall - time.time()) < 60


def test_watcher_bad_uri_raises() -> None:
    watcher = DomainEventWatcher("qemu+unix:///system?socket=/nonexistent", lambda e: None)
    with pytest.raises(HypervisorError, match="libvirtd is not running"):
        watcher.start()
    watcher.stop()


@pytest.mark.skipif(not LIBVIRTD_PIDFILE.exists(), reason="needs a local libvirtd to restart")
def test_watcher_and_host_survive_libvirtd_restart(recorder: Recorder, host: LibvirtHost,
                                                   make_domain, libvirt_uri: str) -> None:
    lab = make_domain(state="shut off")
    recorder.wait_lifecycle(lab.name, "defined", "added")
    assert [d.name for d in host.list_domains() if d.name == lab.name] == [lab.name]
    try:
        stop_libvirtd()
        lost = recorder.wait_for(lambda e: e.kind == "disconnected", timeout=15)
        assert lost.event == "eof"
    finally:
        ensure_libvirtd(libvirt_uri)
    recorder.wait_for(lambda e: e.kind == "reconnected", timeout=30)
    lab.conn = libvirt.open(libvirt_uri)  # the fixture's connection died with libvirtd
    assert recorder.watcher.connected  # type: ignore[attr-defined]
    # The host's old connection died with libvirtd; read-only calls reconnect once by themselves.
    assert host.get_domain(lab.name).state is DomainState.SHUTOFF
    lab.dom.create()
    recorder.wait_lifecycle(lab.name, "started", "booted")


def test_watcher_restarts_and_stops_from_its_callback(make_domain, libvirt_uri: str) -> None:
    rec = Recorder()
    watcher = DomainEventWatcher(libvirt_uri, rec)
    watcher.start()
    watcher.stop()
    assert not watcher.connected

    def stop_on_define(event: DomainEvent) -> None:
        rec(event)
        watcher.stop()  # must not deadlock joining its own thread

    watcher = DomainEventWatcher(libvirt_uri, stop_on_define)
    watcher.start()
    lab = make_domain(state="shut off")
    rec.wait_lifecycle(lab.name, "defined", "added")
    assert not watcher.connected
