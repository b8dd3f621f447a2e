"""Image properties like Nova's and hardware derived from the domain XML: pure XML strings and
dicts in, dicts out (no lab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from snaptui.core.engine.plan import Mode
from snaptui.core.engine.preflight.image_plan import check_save_space, save_refusal
from snaptui.core.engine.preflight.mode_decision import auto_mode
from snaptui.core.errors import BadInput
from snaptui.core.images.properties import (
    BaseImage,
    OperatorMetadata,
    image_settings,
    inheritable,
    min_disk_gib,
    parse_properties,
    snapshot_properties,
    validate_operator,
)
from snaptui.core.libvirt.domain_xml import parse_domain_xml
from snaptui.core.libvirt.hardware import parse_hardware
from snaptui.core.libvirt.nova_instance import describe, stop_refusal
from snaptui.core.models import DomainInfo, DomainState

GIB = 1024 ** 3
NOVA = """<metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
  <nova:name>web-1</nova:name>
  <nova:flavor name="m1.small"><nova:memory>2048</nova:memory><nova:disk>20</nova:disk>
    <nova:swap>0</nova:swap><nova:ephemeral>0</nova:ephemeral><nova:vcpus>1</nova:vcpus>
  </nova:flavor>
  <nova:owner><nova:user uuid="u-1">alice</nova:user>
    <nova:project uuid="p-tenant">tenant</nova:project></nova:owner>
  <nova:root type="image" uuid="11111111-2222-3333-4444-555555555555"/>
</nova:instance></metadata>"""


def xml(*, efi: bool = False, secure: bool = False, bus: str = "virtio", agent: bool = False,
        extra: str = "", metadata: str = "") -> str:
    os_attr = " firmware='efi'" if efi else ""
    fw = (f"<firmware><feature enabled='{'yes' if secure else 'no'}' name='secure-boot'/>"
          "</firmware>") if efi else ""
    channel = ("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
               "</channel>") if agent else ""
    return f"""<domain type='qemu'><name>d</name><uuid>9d8e7f60-1111-2222-3333-444455556666</uuid>
  {metadata}
  <os{os_attr}><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>{fw}</os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/x/a.qcow2'/><target dev='{"vda" if bus == "virtio" else "sda"}'
      bus='{bus}'/></disk>
    <disk type='file' device='cdrom'><source file='/x/i.iso'/><target dev='sdz' bus='sata'/>
    </disk>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <interface type='network'><source network='default'/><model type='virtio'/></interface>
    <video><model type='qxl'/></video>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    {channel}{extra}
  </devices></domain>"""


def test_uefi_virtio_scsi_with_agent_is_derived():
    props = parse_hardware(xml(efi=True, bus="scsi", agent=True)).properties("sda")
    assert props == {
        "hw_firmware_type": "uefi", "hw_machine_type": "pc-q35-7.2", "architecture": "x86_64",
        "hw_disk_bus": "scsi", "hw_scsi_model": "virtio-scsi", "hw_cdrom_bus": "sata",
        "hw_vif_model": "virtio", "hw_video_model": "qxl", "hw_rng_model": "virtio",
        "hw_qemu_guest_agent": "yes",
    }


@pytest.mark.parametrize("bus", ["virtio", "sata"])
def test_bios_without_agent_has_no_agent_or_scsi_model(bus):
    target = "vda" if bus == "virtio" else "sda"
    props = parse_hardware(xml(bus=bus)).properties(target)
    assert props["hw_firmware_type"] == "bios" and props["hw_disk_bus"] == bus
    assert "hw_qemu_guest_agent" not in props and "hw_scsi_model" not in props
    assert "os_secure_boot" not in props


def test_secure_boot_and_pflash_loader_mean_uefi_required():
    assert parse_hardware(xml(efi=True, secure=True)).properties("vda")["os_secure_boot"] \
        == "required"
    loader = xml().replace("<os>", "<os><loader readonly='yes' secure='yes' type='pflash'>"
                           "/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>")
    hw = parse_hardware(loader)
    assert (hw.firmware, hw.secure_boot) == ("uefi", True)


def test_host_and_mediated_devices_are_found():
    extra = """<hostdev mode='subsystem' type='pci' managed='yes'><source>
      <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>
      <hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>
      <address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>"""
    hw = parse_hardware(xml(extra=extra))
    assert hw.host_devices == ("pci 0000:01:00.0", "mdev c2177883-f1bb-47f0-914d-32a22e3a8804")
    info = DomainInfo("d", "u", DomainState.RUNNING, 1, 131072, True)
    for mode in (Mode.COLD, Mode.INTERNAL):
        assert "host or mediated devices" in (save_refusal(info, hw, mode) or "")
    assert save_refusal(info, hw, Mode.LIVE) is None
    off = DomainInfo("d", "u", DomainState.SHUTOFF, 1, 131072, True)
    assert save_refusal(off, hw, Mode.COLD) is None  # no managed save of a guest that is off


def test_managed_save_needs_room_for_the_guests_ram(tmp_path: Path):
    huge = DomainInfo("big", "u", DomainState.RUNNING, 1, 2 ** 40, True)  # 1 PiB of RAM
    with pytest.raises(BadInput, match="managed save of big"):
        check_save_space(huge, tmp_path / "not" / "yet")
    check_save_space(DomainInfo("s", "u", DomainState.RUNNING, 1, 1024, True), tmp_path)


BASE = BaseImage("11111111-2222-3333-4444-555555555555", {
    "os_distro": "debian", "os_version": "12", "hw_vif_model": "e1000",
    "hw_rng_model": "virtio", "img_signature": "sig", "img_signature_hash_method": "SHA-256",
    "img_signature_key_type": "RSA-PSS", "img_signature_certificate_uuid": "c",
    "cinder_encryption_key_id": "k", "cinder_encryption_key_deletion_policy": "on_image_deletion",
    "cache_in_nova": "True", "bittorrent": "yes", "mappings": "[]",
    "img_block_device_mapping": "[]", "os_glance_importing_to_stores": "",
    "owner_specified.openstack.sha256": "abc", "snaptui_job": "old", "instance_uuid": "old",
    "image_type": "snapshot", "base_image_ref": "older", "owner_id": "someone",
}, min_ram=64, min_disk=3)


def test_inheritance_drops_novas_non_inheritable_keys():
    assert inheritable(BASE.properties) == {"os_distro": "debian", "os_version": "12",
                                            "hw_vif_model": "e1000", "hw_rng_model": "virtio"}


def test_precedence_derived_then_inherited_then_operator_then_snapshot():
    info = parse_domain_xml(xml(efi=True, agent=True, metadata=NOVA))
    props = snapshot_properties(
        target="vda", hardware=parse_hardware(xml(efi=True, agent=True)), base=BASE,
        base_image_ref=BASE.id, nova=info.nova,
        operator=OperatorMetadata(properties={"os_version": "12.5", "größe": "Ünïcødé 日本"}),
        caller_project="p-admin", caller_user="u-admin", instance_uuid="inst")
    assert props["hw_vif_model"] == "e1000"  # the base image states it: it wins over the XML
    assert props["hw_firmware_type"] == "uefi" and props["hw_qemu_guest_agent"] == "yes"
    assert props["os_version"] == "12.5" and props["größe"] == "Ünïcødé 日本"
    assert (props["owner_id"], props["instance_owner"]) == ("p-tenant", "p-tenant")
    assert (props["base_image_ref"], props["instance_uuid"]) == (BASE.id, "inst")
    assert props["user_id"] == "u-admin" and props["image_type"] == "snapshot"
    assert not any(k.startswith(("img_signature", "cinder_", "snaptui_")) for k in props)


def test_no_derive_and_no_base_leave_only_the_snapshot_keys():
    props = snapshot_properties(target="vda", hardware=None, base=None, base_image_ref=None,
                                nova=None, operator=OperatorMetadata(), caller_project="p",
                                caller_user=None, instance_uuid="i")
    assert props == {"image_type": "snapshot", "instance_uuid": "i", "image_location":
                     "snapshot", "image_state": "available", "owner_id": "p"}


def test_min_disk_is_the_largest_of_base_flavor_and_virtual_size():
    assert min_disk_gib(64 * 1024 ** 2, BASE, 20) == 20
    assert min_disk_gib(64 * 1024 ** 2, BASE, None) == 3
    assert min_disk_gib(5 * GIB + 1, BASE, 2) == 6
    assert min_disk_gib(GIB, None, None) == 1
    assert min_disk_gib(GIB, BASE, 20, operator=2) == 2
    with pytest.raises(BadInput, match="cannot boot on a smaller"):
        min_disk_gib(3 * GIB, None, None, operator=2)


def test_visibility_as_nova_sets_it():
    nova = parse_domain_xml(xml(metadata=NOVA)).nova
    own = image_settings(nova=nova, caller_project="p-tenant", base=BASE,
                         operator=OperatorMetadata(), min_disk=0)
    assert (own.visibility, own.members, own.min_ram) == ("private", (), 64)
    admin = image_settings(nova=nova, caller_project="p-admin", base=None,
                           operator=OperatorMetadata(min_ram=512), min_disk=0)
    assert (admin.visibility, admin.members, admin.min_ram) == ("shared", ("p-tenant",), 512)
    public = image_settings(nova=nova, caller_project="p-admin", base=None,
                            operator=OperatorMetadata(visibility="public"), min_disk=0)
    assert (public.visibility, public.members) == ("public", ())
    plain = image_settings(nova=None, caller_project="p", base=None,
                           operator=OperatorMetadata(), min_disk=0)
    assert plain.visibility == "private"


@pytest.mark.parametrize(("item", "message"), [
    ("os_glance_import_task=x", "reserved os_glance"),
    ("min_disk=3", "use --min-disk"),
    ("visibility=public", "use --visibility"),
    ("status=active", "field Glance reserves"),
    ("snaptui_job=x", "snaptui sets"),
    ("instance_uuid=x", "snaptui sets"),
    ("=value", "key is empty"),
    ("novalue", "expected KEY=VALUE"),
    ("emoji=\U0001F600", "4-byte"),
    ("ctl\x01=x", "control characters"),
])
def test_bad_operator_properties_are_one_line_errors(item, message):
    with pytest.raises(BadInput, match=message) as err:
        parse_properties([item])
    assert "\n" not in str(err.value)


def test_operator_properties_keep_any_utf8_and_split_on_the_first_equals():
    assert parse_properties(["größe=Ünïcødé=日本", "note=a=b", "emoji=\U0001F600"],
                            glance=False) == {"größe": "Ünïcødé=日本", "note": "a=b",
                                              "emoji": "\U0001F600"}


@pytest.mark.parametrize("meta", [OperatorMetadata(tags=("a/b",)), OperatorMetadata(tags=("",)),
                                  OperatorMetadata(visibility="everyone"),
                                  OperatorMetadata(min_ram=-1)])
def test_bad_tags_visibility_and_numbers_are_refused(meta):
    with pytest.raises(BadInput):
        validate_operator(meta, glance=True)


def test_nova_instance_is_described_and_stopping_modes_refused():
    parsed = parse_domain_xml(xml(metadata=NOVA))
    assert parsed.nova is not None
    assert (parsed.nova.flavor_disk_gb, parsed.nova.flavor_memory_mb) == (20, 2048)
    assert describe(parsed.nova) == "Nova instance web-1 (project tenant, flavor m1.small)"
    running = DomainInfo("d", "u", DomainState.RUNNING, 1, 131072, True, nova=parsed.nova)
    for mode in (Mode.COLD, Mode.INTERNAL):
        reason = stop_refusal(running, mode) or ""
        assert "power-state sync" in reason and "\n" not in reason
    assert stop_refusal(running, Mode.LIVE) is None
    off = DomainInfo("d", "u", DomainState.SHUTOFF, 1, 131072, True, nova=parsed.nova)
    assert stop_refusal(off, Mode.COLD) is None


def test_auto_picks_backup_for_a_nova_instance_live_cannot_copy():
    nova = parse_domain_xml(xml(metadata=NOVA)).nova
    info = DomainInfo("d", "u", DomainState.RUNNING, 1, 131072, True, nova=nova)
    reasons: dict[Mode, str | None] = {m: None for m in Mode}
    assert auto_mode(info, reasons)[0] == Mode.LIVE
    assert "Nova instance" in auto_mode(info, reasons)[1]
    reasons[Mode.LIVE] = "live copy needs file-backed disks (vda is not)"
    mode, why = auto_mode(info, reasons)
    assert mode == Mode.BACKUP and "Nova instance" in why
    plain = DomainInfo("d", "u", DomainState.RUNNING, 1, 131072, True)
    assert auto_mode(plain, reasons)[0] == Mode.COLD


def test_detail_links_an_image_to_its_base_and_its_snapshots():
    from snaptui.core.models import ImageRecord
    from snaptui.ui.widgets.detail_pane import image_links, nova_lines

    base = ImageRecord("b-1", "debian-12", "active", "qcow2", "bare", 1, "2025-01-01")
    snaps = [ImageRecord(f"s-{i}", f"snap-{i}", "active", "qcow2", "bare", 1, f"2025-02-0{i}",
                         properties={"base_image_ref": "b-1", "image_type": "snapshot"})
             for i in (2, 1)]
    images = {i.id: i for i in (base, *snaps)}
    assert image_links(snaps[0], images) == ["base image [b]debian-12[/b] [$text-muted]b-1[/]"]
    lines = image_links(base, images)
    assert lines[0] == "snapshots of it: 2" and "snap-1" in lines[1] and "snap-2" in lines[2]
    nova = parse_domain_xml(xml(metadata=NOVA)).nova
    info = DomainInfo("instance-1", "u", DomainState.RUNNING, 1, 131072, True, nova=nova)
    text = "\n".join(nova_lines(info))
    assert "web-1" in text and "tenant" in text and "m1.small" in text and "20 GB root" in text
