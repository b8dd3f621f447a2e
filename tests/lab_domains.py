"""Create and remove small real libvirt domains for tests (no OS; SeaBIOS just sits there)."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import libvirt

TEST_PREFIX = "snaptui-test-"
SEED_PATTERN = 0xAB


def domain_type() -> str:
    return "kvm" if os.path.exists("/dev/kvm") else "qemu"


def make_disk(path: Path, *, fmt: str = "qcow2", size: str = "64M", seed: str = "16M",
              pattern: int = SEED_PATTERN) -> Path:
    """Create a disk image and write a known pattern into its first ``seed`` bytes; 0600 root,
    as a host's guest disks are until libvirt hands them to QEMU."""
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True)
    if seed:
        subprocess.run(
            ["qemu-io", "-f", fmt, "-c", f"write -q -P {pattern:#x} 0 {seed}", str(path)],
            check=True, capture_output=True,
        )
    path.chmod(0o600)
    return path


def domain_xml(name: str, disks: list[tuple[str, Path, str]], memory_mib: int = 128) -> str:
    """Domain XML with virtio disks given as (target, path, format)."""
    disk_xml = "".join(
        f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='{fmt}'/>
      <source file='{path}'/>
      <target dev='{target}' bus='virtio'/>
    </disk>"""
        for target, path, fmt in disks
    )
    return f"""<domain type='{domain_type()}'>
  <name>{name}</name>
  <uuid>{uuid.uuid4()}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>{disk_xml}
    <serial type='pty'/>
  </devices>
</domain>"""


@dataclass
class LabDomain:
    """A test domain and its disk files; ``remove()`` undoes everything it made."""

    conn: libvirt.virConnect
    name: str
    disks: list[tuple[str, Path, str]]

    @property
    def dom(self) -> libvirt.virDomain:
        return self.conn.lookupByName(self.name)

    @property
    def uuid(self) -> str:
        return self.dom.UUIDString()

    def disk_path(self, target: str = "vda") -> Path:
        return next(p for t, p, _ in self.disks if t == target)

    def set_state(self, state: str) -> None:
        """Bring the domain to 'running', 'paused', 'shut off' or 'saved'."""
        dom = self.dom
        if state in ("running", "paused"):
            if not dom.isActive():
                dom.create()
            if state == "paused":
                dom.suspend()
        elif state == "saved":
            if not dom.isActive():
                dom.create()
            dom.managedSave(0)
        elif state == "shut off":
            if dom.isActive():
                dom.destroy()
        else:
            raise ValueError(state)

    def remove(self) -> None:
        try:
            dom = self.conn.lookupByName(self.name)
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            try:
                for job_disk, _, _ in self.disks:
                    try:
                        dom.blockJobAbort(job_disk, 0)
                    except libvirt.libvirtError:
                        pass
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError:
                pass
            try:
                if dom.hasManagedSaveImage(0):
                    dom.managedSaveRemove(0)
            except libvirt.libvirtError:
                pass
            try:
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                )
            except libvirt.libvirtError:
                pass
        for _, path, _ in self.disks:
            path.unlink(missing_ok=True)


def create_domain(conn: libvirt.virConnect, workdir: Path, *, state: str = "shut off",
                  fmt: str = "qcow2", size: str = "64M", seed: str = "16M",
                  ndisks: int = 1) -> LabDomain:
    """Define a fresh test domain with seeded disks in ``workdir`` and bring it to ``state``."""
    name = TEST_PREFIX + uuid.uuid4().hex[:8]
    disks = []
    for i in range(ndisks):
        target = "vd" + "abcdefgh"[i]
        path = make_disk(workdir / f"{name}-{target}.{fmt}", fmt=fmt, size=size, seed=seed,
                         pattern=SEED_PATTERN + i)
        disks.append((target, path, fmt))
    conn.defineXML(domain_xml(name, disks))
    lab = LabDomain(conn, name, disks)
    lab.set_state(state)
    return lab
