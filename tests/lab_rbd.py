"""Disk-only test domains whose disk is an RBD image in the lab's Ceph, named as Nova names
them (``vms/<uuid>_disk``), reached with cephx through the lab's libvirt ``ceph`` secret."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import libvirt
import rados
import rbd
from lab_domains import SEED_PATTERN, TEST_PREFIX, domain_type

MIB = 1 << 20


@dataclass(frozen=True)
class CephLab:
    """The lab's cluster as ``scripts/lab env`` describes it."""

    conf: str
    user: str
    secret_uuid: str
    mon: str  # host:port
    pool: str = "vms"
    images_pool: str = "images"

    @classmethod
    def from_env(cls) -> CephLab:
        env = os.environ
        return cls(env["SNAPTUI_LAB_CEPH_CONF"], env["SNAPTUI_LAB_CEPH_USER"],
                   env["SNAPTUI_LAB_CEPH_SECRET_UUID"], env["SNAPTUI_LAB_CEPH_MON"],
                   env.get("SNAPTUI_LAB_CEPH_POOL", "vms"),
                   env.get("SNAPTUI_LAB_CEPH_IMAGES_POOL", "images"))

    @contextmanager
    def ioctx(self, pool: str | None = None) -> Iterator[rados.Ioctx]:
        """An I/O context on ``pool`` as the lab's client user (keyring from the conf)."""
        cluster = rados.Rados(conffile=self.conf, rados_id=self.user)
        cluster.connect(timeout=30)
        try:
            with cluster.open_ioctx(pool or self.pool) as ioctx:
                yield ioctx
        finally:
            cluster.shutdown()


def rbd_disk_xml(ceph: CephLab, image: str, target: str = "vda") -> str:
    host, port = ceph.mon.rsplit(":", 1)
    return f"""
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='writeback' discard='unmap'/>
      <auth username='{ceph.user}'>
        <secret type='ceph' uuid='{ceph.secret_uuid}'/>
      </auth>
      <source protocol='rbd' name='{ceph.pool}/{image}'>
        <host name='{host}' port='{port}'/>
      </source>
      <target dev='{target}' bus='virtio'/>
    </disk>"""


def domain_xml(name: str, dom_uuid: str, disks_xml: str, memory_mib: int = 128) -> str:
    return f"""<domain type='{domain_type()}'>
  <name>{name}</name>
  <uuid>{dom_uuid}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>{disks_xml}
    <serial type='pty'/>
  </devices>
</domain>"""


def purge_image(ioctx: rados.Ioctx, name: str) -> None:
    """Remove an RBD image the test made, with its snapshots (unprotected first)."""
    try:
        with rbd.Image(ioctx, name) as image:
            for snap in list(image.list_snaps()):
                if image.is_protected_snap(snap["name"]):
                    image.unprotect_snap(snap["name"])
                image.remove_snap(snap["name"])
    except rbd.ImageNotFound:
        return
    rbd.RBD().remove(ioctx, name)


@dataclass
class RbdDomain:
    """A test domain on an RBD image; ``remove()`` undoes everything it made."""

    conn: libvirt.virConnect
    ceph: CephLab
    name: str
    uuid: str

    @property
    def image(self) -> str:
        return f"{self.uuid}_disk"

    @property
    def dom(self) -> libvirt.virDomain:
        return self.conn.lookupByName(self.name)

    def set_state(self, state: str) -> None:
        dom = self.dom
        if state == "running" and not dom.isActive():
            dom.create()
        elif state == "shut off" and dom.isActive():
            dom.destroy()
        elif state not in ("running", "shut off"):
            raise ValueError(state)

    def read(self, offset: int, length: int, snap: str | None = None) -> bytes:
        with self.ceph.ioctx() as ioctx, rbd.Image(ioctx, self.image, snapshot=snap,
                                                   read_only=True) as image:
            return image.read(offset, length)

    def remove(self) -> None:
        try:
            dom = self.conn.lookupByName(self.name)
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            except libvirt.libvirtError:
                pass
        with self.ceph.ioctx() as ioctx:
            purge_image(ioctx, self.image)


def create_rbd_domain(conn: libvirt.virConnect, ceph: CephLab, *, state: str = "shut off",
                      size: int = 64 * MIB, seed: int = 16 * MIB,
                      pattern: int = SEED_PATTERN) -> RbdDomain:
    """Define a disk-only domain on a new RBD image ``vms/<uuid>_disk`` whose first ``seed``
    bytes hold ``pattern``, and bring it to ``state``."""
    name = TEST_PREFIX + "rbd-" + uuid.uuid4().hex[:8]
    dom_uuid = str(uuid.uuid4())
    lab = RbdDomain(conn, ceph, name, dom_uuid)
    with ceph.ioctx() as ioctx:
        rbd.RBD().create(ioctx, lab.image, size, old_format=False,
                         features=rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                         | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
        if seed:
            with rbd.Image(ioctx, lab.image) as image:
                chunk = bytes([pattern]) * (4 * MIB)
                for offset in range(0, seed, len(chunk)):
                    image.write(chunk[:min(len(chunk), seed - offset)], offset)
    try:
        conn.defineXML(domain_xml(name, dom_uuid, rbd_disk_xml(ceph, lab.image)))
        lab.set_state(state)
    except BaseException:
        lab.remove()
        raise
    return lab
