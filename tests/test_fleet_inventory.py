"""The fleet's inventory (fleet/inventory.py) on real hosts: the lab's libvirtd under two URIs, the
test driver, a port where nothing listens, and one that accepts and never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.fleet.inventory import Fleet, HostStatus, domain_key, key_of, split_key

DOWN_URI = "qemu+tcp://127.0.0.1:1/system"  # nothing listens on port 1
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # test:///default's one domain


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung host)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:  # the hung libvirt.open now fails, and its thread ends
        conn.close()
    listener.close()


def test_domains_from_every_host_carry_their_host(make_domain, libvirt_uri: str) -> None:
    lab = make_domain(state="shut off")
    fleet = Fleet([HostSpec("lab", libvirt_uri), HostSpec("sim", "test:///default"),
                   HostSpec("gone", DOWN_URI)])
    try:
        listings = fleet.list_all()
    finally:
        fleet.close()
    assert [x.status.name for x in listings] == ["lab", "sim", "gone"]
    lab_rows, sim_rows, gone_rows = (x.domains for x in listings)
    mine = next(d for d in lab_rows if d.uuid == lab.uuid)
    assert mine.host == "lab" and mine.to_json()["host"] == "lab"
    assert [(d.name, d.uuid, d.host) for d in sim_rows] == [("test", TEST_UUID, "sim")]
    assert gone_rows == ()
    up = [x.status.up for x in listings]
    assert up == [True, True, False]
    error = listings[2].status.error
    assert error and "127.0.0.1" in error and "\n" not in error
    assert fleet["gone"].status.error == error  # the host keeps what its last listing said
    # The reason alone (the host's name already says which URI): libvirt's own words.
    assert listings[2].status.reason == error.removeprefix(f"cannot connect to {DOWN_URI}: ")
    assert "refused" in (listings[2].status.reason or "")


def test_one_libvirtd_under_two_uris_gives_distinct_keys(make_domain, libvirt_uri: str) -> None:
    """In the lab both "hosts" can be one libvirtd: the same uuid twice, two keys."""
    lab = make_domain(state="shut off")
    fleet = Fleet([HostSpec("a", libvirt_uri), HostSpec("b", "qemu+unix:///system")])
    try:
        a, b = fleet.list_all()
    finally:
        fleet.close()
    keys = {key_of(d) for d in (*a.domains, *b.domains) if d.uuid == lab.uuid}
    assert keys == {domain_key("a", lab.uuid), domain_key("b", lab.uuid)}
    assert split_key(domain_key("b", lab.uuid)) == ("b", lab.uuid)


def test_a_down_host_comes_back_on_the_next_listing(tmp_path: Path) -> None:
    """Down (its driver file is missing), then the file appears: the next listing is up."""
    node = tmp_path / "node.xml"
    fleet = Fleet([HostSpec("sim", "test:///default"), HostSpec("late", f"test://{node}")])
    try:
        sim, late = fleet.list_all()
        assert sim.status.up and not late.status.up and late.status.error
        node.write_text("<node><domain type='test'><name>late-vm</name>"
                        "<uuid>11111111-2222-3333-4444-555555555555</uuid><memory>65536</memory>"
                        "<os><type>hvm</type></os></domain></node>")
        listing = fleet["late"].list_domains()
    finally:
        fleet.close()
    assert listing is not None and listing.status.up
    assert [(d.name, d.host) for d in listing.domains] == [("late-vm", "late")]


def test_a_hung_host_does_not_hold_back_the_others(silent_port: int) -> None:
    """Listings come as each host answers: the hung host is reported last, as no answer."""
    hung = f"qemu+tcp://127.0.0.1:{silent_port}/system"
    fleet = Fleet([HostSpec("hung", hung), HostSpec("sim", "test:///default"),
                   HostSpec("gone", DOWN_URI)])
    seen = list(fleet.iter_listings(timeout=3))
    assert [x.status.name for x in seen][-1] == "hung"
    assert sorted(x.status.name for x in seen[:2]) == ["gone", "sim"]
    assert seen[-1].status.error and "no answer" in seen[-1].status.error
    assert not seen[-1].status.up


def test_a_listing_asked_for_while_one_runs_is_folded_into_it(silent_port: int) -> None:
    """While a thread lists a host (here: hung), another caller returns at once with None
    instead of piling a second thread onto the hung host."""
    fleet = Fleet([HostSpec("hung", f"qemu+tcp://127.0.0.1:{silent_port}/system")])
    host = fleet["hung"]
    first: list[object] = []
    thread = threading.Thread(target=lambda: first.append(host.list_domains()), daemon=True)
    thread.start()
    while not host._busy:  # the first call is inside libvirt.open now
        threading.Event().wait(0.01)
    assert host.list_domains() is None
    assert host._again  # the first caller lists once more when its listing returns


def test_a_down_hosts_reason_is_libvirts_own_words() -> None:
    """What the down line shows: the reason without the URI, also after a lost connection."""
    uri = "qemu+ssh://hv2/system"
    lost = f"list domains: connection to libvirtd lost; cannot connect to {uri}: Connection reset"
    assert HostStatus("hv2", uri, lost, True).reason == "Connection reset"
    assert HostStatus("hv2", uri, f"cannot connect to {uri}: refused", True).reason == "refused"
    assert HostStatus("hv2", uri, "cannot list domains: boom", True).reason == (
        "cannot list domains: boom")
    assert HostStatus("hv2", uri).reason is None


def test_statuses_before_any_listing_are_not_up() -> None:
    fleet = Fleet([HostSpec("sim", "test:///default")])
    assert [s.to_json() for s in fleet.statuses()] == [
        {"name": "sim", "uri": "test:///default", "up": False, "error": None}]
    with pytest.raises(ValueError):
        Fleet([])
