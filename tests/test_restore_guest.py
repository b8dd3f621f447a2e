"""Snapshot, break, restore, boot, on the lab's real guest: after a restore the writer's records
end exactly where the snapshot was taken, and the guest boots on the restored disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import libvirt
import libvirt_qemu
import pytest
from cli_tools import snaptui
from fault_tools import wait_until
from lab_guests import Guest, guest_artefacts, lab_guest_check, module_guests  # noqa: F401


@pytest.fixture(scope="module")
def guest(module_guests) -> Guest:  # noqa: F811
    made = module_guests()
    made.wait_agent(timeout=120)
    return made


def records_now(guest: Guest) -> lab_guest_check.RecordsCheck:
    found = guest.records()
    assert found.ok, found.problem
    return found


def test_restore_brings_the_records_back_to_the_snapshot(guest, tmp_path):
    library = tmp_path / "lib"
    wait_until(lambda: records_now(guest).last > 0, 120, "the writer's first records")
    guest.shutdown()  # cold: the image is exactly the disk at this instant
    snap = snaptui("snapshot", guest.name, "--name", "snaptui-test-27-guest", "--mode", "cold",
                   "--to", "library", "--library", str(library), "--json")
    assert snap.returncode == 0, snap.stderr
    image_id = json.loads(snap.stdout.splitlines()[-1])["image_id"]
    at_snapshot = lab_guest_check.check_image(guest.disk, scratch=tmp_path)
    assert at_snapshot.ok, at_snapshot.records.problem
    taken = at_snapshot.last_record

    guest.start()  # break: the writer goes on past the snapshot
    guest.wait_agent(timeout=120)
    wait_until(lambda: records_now(guest).last > taken + 5, 120, "records past the snapshot")

    # The running guest is asked to shut down (its agent), then its disk is replaced.
    proc = snaptui("restore", image_id, "--domain", guest.name, "--library", str(library),
                   "--shutdown", "--timeout", "2m", "--yes", "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["event"] == "done"
    assert not guest.dom.isActive()
    pre = Path(events[-1]["disks"][0]["pre_restore"])

    restored = lab_guest_check.check_image(guest.disk, scratch=tmp_path)
    assert restored.ok, restored.records.problem
    assert restored.last_record == taken
    broken = lab_guest_check.check_image(pre, scratch=tmp_path)
    assert broken.last_record > taken + 5

    guest.start()  # boots on the restored disk; the writer continues from the snapshot
    guest.wait_agent(timeout=120)
    after = records_now(guest)
    assert after.last >= taken
    pre.unlink()
    guest.destroy()  # one TCG guest at a time on this shared host

    # A new guest from the same image: the source domain's XML, a new UUID, MACs and disk.
    new_name = f"{guest.name}-as"
    made = snaptui("restore", image_id, "--as", new_name, "--library", str(library), "--start",
                   "--yes", "--json")
    try:
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr
        dom = guest.conn.lookupByName(new_name)
        assert dom.UUIDString() != guest.dom.UUIDString()
        disk = Path(json.loads(made.stdout.splitlines()[-1])["disks"][0]["path"])
        assert disk != guest.disk and disk.exists()
        assert str(disk) in dom.XMLDesc(0) and str(guest.disk) not in dom.XMLDesc(0)
        wait_until(lambda: agent_answers(dom), 180, "the new guest's agent")
    finally:
        remove_domain(guest.conn, new_name)


def agent_answers(dom: libvirt.virDomain) -> bool:
    try:
        libvirt_qemu.qemuAgentCommand(dom, '{"execute": "guest-ping"}', 5, 0)
    except libvirt.libvirtError:
        return False
    return True


def remove_domain(conn: libvirt.virConnect, name: str) -> None:
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    sources = re.findall(r"<source (?:file|path)='([^']+(?:qcow2|raw|\.log))'", dom.XMLDesc(0))
    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    for path in sources:
        Path(path).unlink(missing_ok=True)
