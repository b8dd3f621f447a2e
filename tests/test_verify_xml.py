"""The verify domain's XML (core/verify/boot.py): what it copies from the source, what it never
has (a network interface, the source's disk or variable store), and the accel rule."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from snaptui.core.cleanup.findings import SCRATCH_FILE_RE
from snaptui.core.engine.preflight.quiesce import check_verify_options
from snaptui.core.errors import BadInput
from snaptui.core.verify.boot import VerifyFiles, destroy_domain, verify_xml

SOURCE = """<domain type='kvm'>
  <name>web1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='KiB'>1048576</memory><vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram>
    <kernel>/boot/vmlinuz-guest</kernel><initrd>/boot/initrd-guest</initrd>
    <cmdline>console=ttyS0 root=/dev/vda1</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='host-passthrough'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web1.qcow2'/><target dev='vdb' bus='virtio'/>
      <boot order='1'/></disk>
    <interface type='network'><source network='default'/><model type='virtio'/></interface>
    <graphics type='vnc'/>
  </devices>
</domain>"""
FILES = VerifyFiles.for_prefix(Path("/scratch/20261130-010203-abcdef-vdb"))


def test_copies_machine_firmware_and_direct_kernel_boot_but_no_nic_and_not_the_source_disk():
    root = ET.fromstring(verify_xml(SOURCE, name="snaptui-verify-x", files=FILES, accel=None,
                                    target="vdb", nvram_ready=True))
    assert root.get("type") == "kvm" and root.findtext("name") == "snaptui-verify-x"
    assert root.find("os/type").get("machine") == "pc-q35-7.2"
    assert root.findtext("os/kernel") == "/boot/vmlinuz-guest"
    assert root.findtext("os/cmdline") == "console=ttyS0 root=/dev/vda1"
    assert root.find("os/loader").text == "/usr/share/OVMF/OVMF_CODE.fd"
    assert root.findtext("os/nvram") == str(FILES.nvram)  # a copy, never the source's store
    assert root.find("cpu") is not None and root.find("features/apic") is not None
    assert root.findtext("memory") == "1048576" and root.findtext("vcpu") == "2"
    assert root.find("devices/interface") is None and root.find("devices/graphics") is None
    disks = root.findall("devices/disk")
    assert len(disks) == 1
    assert disks[0].find("source").get("file") == str(FILES.overlay)
    assert disks[0].find("target").attrib == {"dev": "vdb", "bus": "virtio"}
    assert disks[0].find("boot").get("order") == "1"
    assert root.find("devices/serial/source").get("path") == str(FILES.console)
    assert root.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"


def test_accel_override_drops_a_host_cpu_model_and_no_source_gives_a_tcg_bios_pc():
    tcg = ET.fromstring(verify_xml(SOURCE, name="snaptui-verify-x", files=FILES, accel="tcg"))
    assert tcg.get("type") == "qemu" and tcg.find("cpu") is None
    plain = ET.fromstring(verify_xml(None, name="snaptui-verify-y", files=FILES, accel=None))
    assert plain.get("type") == "qemu"
    assert plain.find("os/type").get("machine") == "pc"
    assert plain.find("os/boot").get("dev") == "hd"


def test_a_source_store_without_template_that_could_not_be_copied_is_left_out():
    source = SOURCE.replace(" template='/usr/share/OVMF/OVMF_VARS.fd'", "")
    root = ET.fromstring(verify_xml(source, name="snaptui-verify-x", files=FILES, accel=None))
    assert root.find("os/nvram") is None


def test_verify_files_are_scratch_files_cleanup_recognises():
    for path in (FILES.overlay, FILES.console, FILES.nvram):
        match = SCRATCH_FILE_RE.match(path.name)
        assert match and match.group("job") == "20261130-010203-abcdef", path.name


def test_destroy_refuses_a_domain_not_named_as_a_verify_domain():
    with pytest.raises(ValueError, match="not a verify domain"):
        destroy_domain(None, "web1")  # type: ignore[arg-type]


@pytest.mark.parametrize(("console", "timeout", "accel", "message"), [
    ("([", 120, None, "not a regular expression"),
    (None, 0, None, "more than 0"),
    (None, 10, "xen", "must be one of"),
])
def test_bad_verify_options_are_one_line_errors(console, timeout, accel, message):
    with pytest.raises(BadInput, match=message):
        check_verify_options(console, timeout, accel)
