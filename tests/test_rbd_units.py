"""RBD disks without the lab: parsing a Nova-style disk, the qemu-img argv (no key in it), the
monitors' addresses, and the mode reasons of RBD disks."""

from __future__ import annotations

import json

from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.preflight.mode_decision import RBD_COLD, ModeFacts, decide, mode_reasons
from snaptui.core.libvirt.domain_xml import parse_domain_xml
from snaptui.core.models import DiskInfo, DomainInfo, DomainState
from snaptui.core.rbd import qemu_info
from snaptui.core.rbd.cluster import mon_host

NOVA_RBD = """<domain type='kvm'><name>instance-1</name><devices>
  <disk type='network' device='disk'>
    <driver name='qemu' type='raw' cache='writeback'/>
    <auth username='nova'><secret type='ceph' uuid='5b8a3a2e-0000-4000-8000-000000000001'/></auth>
    <source protocol='rbd' name='vms/629b_disk'>
      <host name='10.0.0.1' port='6789'/><host name='10.0.0.2' port='3300'/>
    </source>
    <target dev='vda' bus='virtio'/>
  </disk></devices></domain>"""


def test_parse_a_nova_rbd_disk() -> None:
    disk = parse_domain_xml(NOVA_RBD).disks[0]
    assert disk.rbd is not None and disk.path == "vms/629b_disk"
    assert (disk.rbd.pool, disk.rbd.image, disk.rbd.snapshot) == ("vms", "629b_disk", None)
    assert disk.rbd.auth_user == "nova"
    assert disk.rbd.secret_uuid == "5b8a3a2e-0000-4000-8000-000000000001"
    assert mon_host(disk.rbd) == "v1:10.0.0.1:6789,v2:10.0.0.2:3300"


def test_qemu_img_argv_carries_no_key() -> None:
    disk = parse_domain_xml(NOVA_RBD).disks[0]
    assert disk.rbd is not None
    argv = qemu_info.info_argv(disk.rbd, key_fd=7)
    assert argv[3:5] == ["--object", "secret,id=sec0,file=/dev/fd/7,format=base64"]
    options = json.loads(argv[-1].removeprefix("json:"))["file"]
    assert options == {"driver": "rbd", "pool": "vms", "image": "629b_disk", "user": "nova",
                       "server": [{"host": "10.0.0.1", "port": "6789"},
                                  {"host": "10.0.0.2", "port": "3300"}],
                       "key-secret": "sec0"}
    assert qemu_info.display_url(disk.rbd) == (
        "rbd:vms/629b_disk:id=nova:mon_host=10.0.0.1\\:6789;10.0.0.2\\:3300")


def test_mode_reasons_of_an_rbd_disk() -> None:
    parsed = parse_domain_xml(NOVA_RBD)
    info = DomainInfo("instance-1", "u", DomainState.RUNNING, 1, 1024, True, parsed.disks)
    reasons = mode_reasons(info, list(info.disks), ModeFacts(direct_blocked=None))
    assert reasons[Mode.DIRECT] is None and reasons[Mode.BACKUP] is None
    assert "qcow2 feature" in str(reasons[Mode.INTERNAL])
    assert "not needed" in str(reasons[Mode.LIVE])
    assert reasons[Mode.COLD] is None  # managed save, RBD snapshot, restart, export
    blocked = mode_reasons(info, list(info.disks), ModeFacts(direct_blocked="no rbd store"))
    assert blocked[Mode.DIRECT] == "no rbd store"


def test_cold_refuses_rbd_and_file_disks_together() -> None:
    parsed = parse_domain_xml(NOVA_RBD)
    file_disk = DiskInfo(target="vdb", path="/x.qcow2", format="qcow2", bus="virtio")
    disks = [*parsed.disks, file_disk]
    info = DomainInfo("instance-1", "u", DomainState.SHUTOFF, 1, 1024, True, disks)
    reasons = mode_reasons(info, disks, ModeFacts(direct_blocked=None))
    assert "separate jobs" in str(reasons[Mode.COLD]) and "vdb is not" in str(reasons[Mode.COLD])


def test_the_decision_offers_cold_for_rbd_disks() -> None:
    """What the dialog and preflight share: cold is possible, auto takes it when direct and
    streaming cannot run, and says why; internal and live stay refused."""
    parsed = parse_domain_xml(NOVA_RBD)
    info = DomainInfo("guest-1", "u", DomainState.RUNNING, 1, 1024, True, parsed.disks)
    facts = ModeFacts(direct_blocked="the local library has no rbd store (direct needs "
                      "Glance's)")
    reasons = mode_reasons(info, list(info.disks), facts)
    decision = decide(SnapshotRequest(domain="guest-1", name="x"), "library", info, reasons,
                      facts)
    assert decision.mode == Mode.COLD and Mode.COLD in decision.possible
    assert RBD_COLD in decision.why and "the local library" in decision.why
    assert Mode.INTERNAL not in decision.possible and Mode.LIVE not in decision.possible
