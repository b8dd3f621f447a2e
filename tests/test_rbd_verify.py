"""``--verify`` of a direct snapshot, on the real lab: the new image boots as a copy-on-write
clone of its ``snap`` (nothing downloaded), reached with the disk's cephx user and secret.

The bootable guest is the lab's real-guest disk imported into RBD (``qemu-img convert`` to an
``rbd:`` target) under a shut-off domain: one boot for the module, the verify domain's.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import rbd
from fault_seam import snaptui_faults as faults
from fault_tools import journal_events
from lab_guests import guest_artefacts  # noqa: F401
from lab_rbd import CephLab, RbdDomain, domain_xml, rbd_disk_xml
from test_rbd_direct import leftovers, run_job

from snaptui.core.engine.jobs import get_job, prepare
from snaptui.core.engine.plan import SnapshotRequest
from snaptui.core.engine.steps.rbd_verify import verify_clone
from snaptui.core.verify.boot import VERIFY_PREFIX, VerifyFiles, verify_xml

pytestmark = pytest.mark.lab
NAME = "snaptui-test-rbd-verify"
AGENT = """
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"""


@pytest.fixture(scope="module")
def conn(lab_env) -> Iterator[libvirt.virConnect]:
    connection = libvirt.open(lab_env["LIBVIRT_DEFAULT_URI"])
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def bootable(conn: libvirt.virConnect, ceph_lab: CephLab, guest_artefacts) -> Iterator[RbdDomain]:  # noqa: F811
    """A shut-off domain on ``vms/<uuid>_disk`` holding the lab's real guest (qemu-ga)."""
    dom_uuid = str(uuid.uuid4())
    domain = RbdDomain(conn, ceph_lab, f"snaptui-test-rbd-boot-{dom_uuid[:8]}", dom_uuid)
    target = f"rbd:{ceph_lab.pool}/{domain.image}:id={ceph_lab.user}:conf={ceph_lab.conf}"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw",
                    str(guest_artefacts.disk), target], check=True)
    try:
        conn.defineXML(domain_xml(domain.name, dom_uuid, rbd_disk_xml(ceph_lab, domain.image)
                                  + AGENT, memory_mib=256).replace("<domain type='kvm'>",
                                                                   "<domain type='qemu'>"))
        yield domain
    finally:
        domain.remove()


def verify_leftovers(domain: RbdDomain, job_id: str) -> list[str]:
    found = leftovers(domain, job_id)
    with domain.ceph.ioctx() as ioctx:
        found += [f"clone {n}" for n in rbd.RBD().list(ioctx) if n.endswith(job_id)]
    try:
        domain.conn.lookupByName(VERIFY_PREFIX + job_id)
        found.append("verify domain")
    except libvirt.libvirtError:
        pass
    return found


def test_direct_snapshot_with_verify_boots_a_clone(bootable: RbdDomain, store,
                                                   own_images) -> None:
    request = SnapshotRequest(domain=bootable.name, name=f"{NAME}-ok", verify=True,
                              verify_timeout=300.0)
    job_id, last, _ = run_job(request)
    assert last["event"] == "done", last
    own_images.append(last["image_id"])
    raw = store.raw_image(last["image_id"])
    assert raw["snaptui_verified"] == "agent" and raw["stores"] == "ceph", raw
    job = get_job(job_id)
    assert [s.name for s in job.steps][-2:] == ["verify:vda", "rbd-unsnap:vda"]
    notes = [ev.get("text", "") for ev in journal_events(job_id) if ev["event"] == "note"]
    assert any("verified: guest agent answered" in n for n in notes), notes
    assert verify_leftovers(bootable, job_id) == []
    assert bootable.dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF


def test_an_image_that_does_not_boot_fails_the_job(make_rbd_domain, store) -> None:
    """A disk with no OS: the check times out, the job fails, the image and clone go."""
    broken = make_rbd_domain(state="shut off")
    request = SnapshotRequest(domain=broken.name, name=f"{NAME}-broken", verify=True,
                              verify_timeout=5.0)
    job_id, last, _ = run_job(request)
    assert last["event"] == "failed" and "timed out" in last["error"], last
    failed = [ev["step"] for ev in journal_events(job_id) if ev.get("event") == "step_failed"]
    assert failed == ["verify:vda"]
    assert [ev for ev in journal_events(job_id) if ev.get("event") == "undo_failed"] == []
    assert [i.id for i in store.iter_images()
            if i.properties.get("snaptui_job") == job_id] == []
    assert verify_leftovers(broken, job_id) == []


def test_a_cluster_fault_making_the_clone_rolls_back(make_rbd_domain, store,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    broken = make_rbd_domain(state="shut off")
    faults.install_in(monkeypatch, "verify:ioctx=once")
    request = SnapshotRequest(domain=broken.name, name=f"{NAME}-fault", verify=True)
    job_id, last, _ = run_job(request)
    assert last["event"] == "failed" and "injected fault" in last["error"], last
    assert [ev for ev in journal_events(job_id) if ev.get("event") == "undo_failed"] == []
    assert [i.id for i in store.iter_images()
            if i.properties.get("snaptui_job") == job_id] == []
    assert verify_leftovers(broken, job_id) == []


def test_verify_domain_of_an_rbd_image_uses_the_disks_secret(make_rbd_domain) -> None:
    """The XML the check boots: a network disk on the clone, with the source's cephx user
    and libvirt secret (never a key)."""
    domain = make_rbd_domain(state="shut off")
    plan, _ = asyncio.run(prepare(SnapshotRequest(domain=domain.name, name=f"{NAME}-xml",
                                                  verify=True)))
    clone = verify_clone(plan.disks[0], plan.job_id)
    xml = verify_xml(domain.dom.XMLDesc(0), name=VERIFY_PREFIX + "x", accel="tcg",
                     files=VerifyFiles.for_prefix(Path("/nonexistent")), target="vda",
                     network=clone)
    disk = ET.fromstring(xml).find("./devices/disk")
    assert disk is not None and disk.get("type") == "network"
    assert disk.find("source").get("name") == f"vms/{VERIFY_PREFIX}{plan.job_id}"
    assert disk.find("auth").get("username") == domain.ceph.user
    assert disk.find("auth/secret").get("uuid") == domain.ceph.secret_uuid
