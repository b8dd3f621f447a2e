"""Domain XML for the lab's real guests (TCG, self-booting disk, agent channel, serial file)."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from lab_guest import OVMF_CODE, OVMF_VARS, Artefacts

AGENT_CHANNEL = "org.qemu.guest_agent.0"
USERSPACE_MARKER = "snaptui-guest: userspace up"
DESCRIPTION = "snaptui lab real guest"  # `scripts/lab guest remove` removes only these


@dataclass(frozen=True)
class GuestSpec:
    """One real guest: its name, files, firmware and whether it has an agent channel."""

    name: str
    workdir: Path
    uefi: bool = False
    agent: bool = True
    memory_mib: int = 256

    disk = property(lambda self: self.workdir / f"{self.name}-vda.qcow2")
    console = property(lambda self: self.workdir / f"{self.name}-console.log")
    nvram = property(lambda self: self.workdir / f"{self.name}-VARS.fd")


def prepare_files(spec: GuestSpec, artefacts: Artefacts) -> None:
    """Copy the cached disk (and OVMF's variable store) for this guest; empty its console."""
    spec.workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artefacts.disk, spec.disk)
    spec.disk.chmod(0o600)  # root's until libvirt hands it to QEMU, as on a stock host
    spec.console.write_bytes(b"")
    if spec.uefi:
        shutil.copyfile(OVMF_VARS, spec.nvram)


def domain_xml(spec: GuestSpec) -> str:
    """A TCG domain (real kernels hang under this host's nested KVM) booting from its disk."""
    if spec.uefi:
        # OVMF without secure boot (SMM is not available here), chosen by path: firmware
        # autoselection refuses explicit loader attributes on libvirt 9.0.
        os_xml = f"""<os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' secure='no' type='pflash'>{OVMF_CODE}</loader>
    <nvram template='{OVMF_VARS}'>{escape(str(spec.nvram))}</nvram>
    <boot dev='hd'/>
  </os>"""
    else:
        os_xml = """<os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>"""
    channel = f"""
    <channel type='unix'>
      <target type='virtio' name='{AGENT_CHANNEL}'/>
    </channel>""" if spec.agent else ""
    console = escape(str(spec.console))
    return f"""<domain type='qemu'>
  <name>{escape(spec.name)}</name>
  <uuid>{uuid.uuid4()}</uuid>
  <description>{DESCRIPTION}</description>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>1</vcpu>
  {os_xml}
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{escape(str(spec.disk))}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{console}' append='on'/>
      <target type='serial' port='0'/>
    </console>{channel}
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"""
