"""What a domain's XML proves about the virtual hardware an image of it needs.

Read the way virt-v2v's Glance output reads its target: firmware, machine type, buses and device
models become the ``hw_*`` image properties Nova's libvirt driver boots an image with
(``nova/objects/image_meta.py``: ImageMetaProps). Also the devices that make a managed save
impossible (host PCI/USB devices, mediated devices).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from snaptui.core.errors import HypervisorError

# Nova's hw_disk_bus / hw_cdrom_bus values (nova/objects/fields.py DiskBus) libvirt can name.
DISK_BUSES = frozenset({"fdc", "ide", "sata", "scsi", "usb", "virtio", "xen", "lxc", "uml"})
# nova/objects/fields.py VIFModel (the libvirt names; "virtio" is Nova's too)
VIF_MODELS = frozenset({"virtio", "ne2k_pci", "pcnet", "rtl8139", "e1000", "e1000e",
                        "netfront", "spapr-vlan", "lan9118", "igb", "vmxnet3"})
# nova/objects/fields.py VideoModel
VIDEO_MODELS = frozenset({"vga", "cirrus", "vmvga", "xen", "qxl", "gop", "virtio", "none",
                          "bochs"})
AGENT_CHANNEL = "org.qemu.guest_agent.0"


@dataclass(frozen=True)
class DomainHardware:
    """The hardware facts of one domain XML (None: the XML does not say)."""

    firmware: str  # "uefi" or "bios"
    secure_boot: bool
    machine: str | None
    arch: str | None
    disk_buses: dict[str, str]  # target -> bus, for device='disk'
    cdrom_bus: str | None
    scsi_model: str | None  # "virtio-scsi" when a virtio-scsi controller exists
    vif_model: str | None
    video_model: str | None
    rng_model: str | None
    guest_agent: bool
    host_devices: tuple[str, ...]  # "pci 0000:01:00.0", "mdev <uuid>", ...

    def properties(self, target: str) -> dict[str, str]:
        """The ``hw_*``/``os_*``/``architecture`` properties for an image of disk ``target``."""
        props = {"hw_firmware_type": self.firmware}
        if self.secure_boot:
            props["os_secure_boot"] = "required"
        optional = {
            "hw_machine_type": self.machine, "architecture": self.arch,
            "hw_disk_bus": self.disk_buses.get(target), "hw_cdrom_bus": self.cdrom_bus,
            "hw_vif_model": self.vif_model, "hw_video_model": self.video_model,
            "hw_rng_model": self.rng_model,
        }
        props.update({k: v for k, v in optional.items() if v})
        if props.get("hw_disk_bus") == "scsi" and self.scsi_model:
            props["hw_scsi_model"] = self.scsi_model
        if self.guest_agent:
            props["hw_qemu_guest_agent"] = "yes"
        return props


def _firmware(os_el: ET.Element | None) -> tuple[str, bool]:
    if os_el is None:
        return "bios", False
    loader = os_el.find("loader")
    efi = os_el.get("firmware") == "efi" or (
        loader is not None and (loader.get("type") == "pflash"
                                or "OVMF" in (loader.text or "") or "edk2" in (loader.text or "")))
    secure = loader is not None and loader.get("secure") == "yes"
    for feature in os_el.findall("./firmware/feature"):
        if feature.get("name") == "secure-boot":
            secure = feature.get("enabled") == "yes"
    return ("uefi" if efi else "bios"), efi and secure


def _host_devices(devices: ET.Element) -> tuple[str, ...]:
    found = []
    for dev in devices.findall("hostdev"):
        kind = dev.get("type", "?")
        addr = dev.find("./source/address")
        where = ""
        if kind == "mdev" and addr is not None:
            where = addr.get("uuid", "")
        elif addr is not None and addr.get("domain") is not None:
            where = "{}:{}:{}.{}".format(*(addr.get(k, "?").removeprefix("0x") for k in
                                           ("domain", "bus", "slot", "function")))
        elif addr is not None:
            where = f"{addr.get('bus', '?')}.{addr.get('device', '?')}"
        found.append(f"{'mdev' if kind == 'mdev' else kind} {where}".strip())
    return tuple(found)


def parse_hardware(xml: str) -> DomainHardware:
    """The hardware facts of a domain XML document (HypervisorError when it is not one)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise HypervisorError(f"cannot parse domain XML: {err}") from err
    os_el = root.find("os")
    type_el = os_el.find("type") if os_el is not None else None
    devices = root.find("devices")
    if devices is None:
        devices = ET.Element("devices")
    firmware, secure = _firmware(os_el)
    disk_buses: dict[str, str] = {}
    cdrom_bus = None
    for disk in devices.findall("disk"):
        target = disk.find("target")
        if target is None or target.get("bus") not in DISK_BUSES:
            continue
        if disk.get("device", "disk") == "disk":
            disk_buses[target.get("dev", "")] = target.get("bus", "")
        elif disk.get("device") == "cdrom" and cdrom_bus is None:
            cdrom_bus = target.get("bus")
    scsi = next((c.get("model") for c in devices.findall("controller")
                 if c.get("type") == "scsi" and c.get("model") == "virtio-scsi"), None)
    vif = next((m.get("type") for m in devices.findall("./interface/model")), None)
    video = next((m.get("type") for m in devices.findall("./video/model")), None)
    rng = next((r.get("model") for r in devices.findall("rng")), None)
    agent = any(t.get("name") == AGENT_CHANNEL for t in devices.findall("./channel/target"))
    return DomainHardware(
        firmware=firmware, secure_boot=secure,
        machine=type_el.get("machine") if type_el is not None else None,
        arch=type_el.get("arch") if type_el is not None else None,
        disk_buses=disk_buses, cdrom_bus=cdrom_bus, scsi_model=scsi,
        vif_model=vif if vif in VIF_MODELS else None,
        video_model=video if video in VIDEO_MODELS else None,
        rng_model="virtio" if rng == "virtio" else None,
        guest_agent=agent, host_devices=_host_devices(devices),
    )
