"""A self-contained demo lab: libvirt's ``test:///`` driver over real disk files, and a library.

``build_demo_lab`` creates (once; later calls reuse what exists) a few small real qcow2/raw
files with qemu-img/qemu-io, a local image library seeded with fixed ids and dates (so
screenshots are reproducible), and a test-driver node XML whose domains use those disks.
No libvirtd is needed: the test driver lives in libvirt's client library, per connection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from snaptui.core.errors import SnaptuiError
from snaptui.core.paths import private_dir, state_dir

log = logging.getLogger(__name__)

LAB_VERSION = "2"  # bump when the layout below changes: the lab is rebuilt
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
MIB = 1024 * 1024

# libvirt virDomainState values for <test:runstate>
RUNNING, PAUSED, SHUTOFF = 1, 3, 5


@dataclass(frozen=True)
class DemoDisk:
    """One disk file: virtual size, the real data written into it (a small sample, so the demo
    stays small on disk) and the data a real guest's disk of that size holds, which the demo's
    jobs are paced on (snaptui.core.demo.pace)."""

    file: str  # relative to the lab's disk directory (Nova's files live beside it, ../nova)
    fmt: str
    size_gib: int
    seed_mib: int
    data_gib: float
    backing: str | None = None  # file name of the backing image (qcow2 overlay)
    backing_fmt: str = "qcow2"
    internal_snapshots: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoDomain:
    """One test-driver domain: name, fixed uuid, libvirt run state and disks (target, disk)."""

    name: str
    uuid: str
    runstate: int
    disks: tuple[tuple[str, DemoDisk], ...]
    memory_mib: int = 1024
    vcpus: int = 1
    managed_save: bool = False
    metadata: str = ""  # <metadata> content (Nova's instance block)


@dataclass(frozen=True)
class DemoLab:
    """Where the demo lab lives and the libvirt URI that opens it."""

    uri: str
    library_dir: Path
    base: Path
    node_xml: Path

    @property
    def disk_dir(self) -> Path:
        return self.base / "disks"

    @property
    def state_dir(self) -> Path:
        """The demo jobs' journal, locks, scratch and audit log (not the operator's)."""
        return self.base / "state"


BASE_IMAGE = DemoDisk("debian-12-base.qcow2", "qcow2", 2, 12, 1.1)
NOVA_UUID = "2a7d4e91-6c3b-4f08-9e15-d0b8a4c6f207"
NOVA_IMAGE = "0d3c1a52-7a1e-4c57-9b0f-2e4d6f8a1b01"  # the library's debian image (see below)
# Nova's image cache: a raw file named by the sha1 of the image id, under instances/_base.
NOVA_BASE = DemoDisk(f"../nova/instances/_base/{hashlib.sha1(NOVA_IMAGE.encode()).hexdigest()}",
                     "raw", 2, 12, 1.1)
NOVA_METADATA = f"""
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="27.1.0"/>
      <nova:name>k8s-worker-3</nova:name>
      <nova:creationTime>2025-04-29 06:01:09</nova:creationTime>
      <nova:flavor name="m1.medium">
        <nova:memory>4096</nova:memory><nova:disk>40</nova:disk><nova:swap>0</nova:swap>
        <nova:ephemeral>0</nova:ephemeral><nova:vcpus>2</nova:vcpus>
      </nova:flavor>
      <nova:owner>
        <nova:user uuid="5b1f0c7e9a2d4e6f8a0b1c2d3e4f5a6b">ops</nova:user>
        <nova:project uuid="9c8d7e6f5a4b4c3d2e1f0a9b8c7d6e5f">platform</nova:project>
      </nova:owner>
      <nova:root type="image" uuid="{NOVA_IMAGE}"/>
    </nova:instance>
  """

# Virtual sizes and data like real guests; a cold job on api-gateway (40 + 20 GiB) takes ~50 s
# at demo speed 1, on web-frontend (20 GiB) ~20 s (demo_pace.estimate_seconds).
DOMAINS: tuple[DemoDomain, ...] = (
    DemoDomain("api-gateway", "3f1c2a9e-5b7d-4c11-9a0e-6d2f8b1a7c01", RUNNING,
               (("vda", DemoDisk("api-gateway-vda.qcow2", "qcow2", 40, 24, 6.0)),
                ("vdb", DemoDisk("api-gateway-vdb.qcow2", "qcow2", 20, 4, 1.5))),
               memory_mib=2048, vcpus=2),
    DemoDomain("db-primary", "8a4e6c10-2f3b-4d5e-8f70-91a2b3c4d502", RUNNING,
               (("vda", DemoDisk("db-primary-vda.qcow2", "qcow2", 60, 8, 8.0,
                                 backing=BASE_IMAGE.file)),),
               memory_mib=4096, vcpus=4),
    DemoDomain("instance-0000002a", NOVA_UUID, RUNNING,
               (("vda", DemoDisk(f"../nova/instances/{NOVA_UUID}/disk", "qcow2", 40, 6, 4.5,
                                 backing=NOVA_BASE.file, backing_fmt="raw")),),
               memory_mib=4096, vcpus=2, metadata=NOVA_METADATA),
    DemoDomain("legacy-raw", "c0ffee00-1d2e-4f3a-b4c5-d6e7f8a9b003", SHUTOFF,
               (("vda", DemoDisk("legacy-raw-vda.img", "raw", 16, 6, 3.0)),)),
    DemoDomain("mail-relay", "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a804", SHUTOFF,
               (("vda", DemoDisk("mail-relay-vda.qcow2", "qcow2", 30, 3, 2.0)),),
               managed_save=True),
    DemoDomain("staging-ci", "b7c8d9e0-f1a2-4b3c-9d4e-5f6a7b8c9d05", PAUSED,
               (("vda", DemoDisk("staging-ci-vda.qcow2", "qcow2", 40, 10, 5.0,
                                 internal_snapshots=("before-upgrade", "nightly-0514"))),),
               memory_mib=2048, vcpus=2),
    DemoDomain("web-frontend", "e1d2c3b4-a596-4877-8899-aabbccddee06", RUNNING,
               (("vda", DemoDisk("web-frontend-vda.qcow2", "qcow2", 20, 2, 2.5)),)),
)

# Library images: (fixed id, name, created_at, source disk file, properties).
LIBRARY_IMAGES: tuple[tuple[str, str, str, str, dict[str, str]], ...] = (
    ("0d3c1a52-7a1e-4c57-9b0f-2e4d6f8a1b01", "debian-12-genericcloud", "2025-04-02T08:30:00Z",
     BASE_IMAGE.file, {"os_distro": "debian", "os_version": "12"}),
    ("6a9b8c7d-1e2f-4a3b-8c4d-5e6f7a8b9c02", "api-gateway-2025-05-12T0715Z",
     "2025-05-12T07:15:42Z", "api-gateway-vda.qcow2",
     {"image_type": "snapshot", "instance_uuid": DOMAINS[0].uuid,
      "snaptui_mode": "cold", "snaptui_source_disk": "vda"}),
    ("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b03", "db-primary-pre-migration",
     "2025-05-14T22:04:10Z", "db-primary-vda.qcow2",
     {"image_type": "snapshot", "instance_uuid": DOMAINS[1].uuid,
      "snaptui_mode": "internal", "snaptui_source_disk": "vda"}),
)


def default_base() -> Path:
    return state_dir() / "demo"


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)  # noqa: S603 - argv list
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise SnaptuiError(f"demo lab: {argv[0]} failed: {msg[-1] if msg else proc.returncode}")


def disk_path(disk_dir: Path, file: str) -> Path:
    """Where a demo disk file lives (``file`` relative to the disk directory, normalised)."""
    return Path(os.path.normpath(disk_dir / file))


def _make_disk(disk_dir: Path, disk: DemoDisk) -> None:
    """Create one disk file with a known pattern in its first ``seed_mib`` MiB (plus a tail)."""
    path = disk_path(disk_dir, disk.file)
    if path.exists():
        return
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    argv = ["qemu-img", "create", "-q", "-f", disk.fmt]
    if disk.backing:
        argv += ["-b", str(disk_path(disk_dir, disk.backing)), "-F", disk.backing_fmt]
    size_mib = disk.size_gib * 1024
    _run([*argv, str(tmp), f"{size_mib}M"])
    # Overlays write past the base's data so both layers hold something visible.
    offset = 16 if disk.backing else 0
    writes = [f"write -q -P 0x5a {offset}M {disk.seed_mib}M",
              f"write -q -P 0xc3 {size_mib - 1}M 512k"]
    for cmd in writes:
        _run(["qemu-io", "-f", disk.fmt, "-c", cmd, str(tmp)])
    for snap in disk.internal_snapshots:
        _run(["qemu-img", "snapshot", "-c", snap, str(tmp)])
        _run(["qemu-io", "-f", disk.fmt, "-c", f"write -q -P 0x11 {disk.seed_mib}M 1M", str(tmp)])
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _disk_xml(disk_dir: Path, target: str, disk: DemoDisk) -> str:
    return (f"      <disk type='file' device='disk'>\n"
            f"        <driver name='qemu' type='{disk.fmt}'/>\n"
            f"        <source file={quoteattr(str(disk_path(disk_dir, disk.file)))}/>\n"
            f"        <target dev='{target}' bus='virtio'/>\n"
            f"      </disk>\n")


def node_xml(disk_dir: Path) -> str:
    """The test driver's node description: every demo domain with its state and disks."""
    parts = ["<node>\n"]
    for dom in DOMAINS:
        disks = "".join(_disk_xml(disk_dir, t, d) for t, d in dom.disks)
        save = "    <test:hasmanagedsave/>\n" if dom.managed_save else ""
        meta = f"    <metadata>{dom.metadata}</metadata>\n" if dom.metadata else ""
        parts.append(
            f"  <domain type='test' xmlns:test='{TEST_NS}'>\n"
            f"    <name>{dom.name}</name>\n    <uuid>{dom.uuid}</uuid>\n{meta}"
            f"    <memory unit='MiB'>{dom.memory_mib}</memory>\n"
            f"    <vcpu>{dom.vcpus}</vcpu>\n"
            f"    <os><type>hvm</type></os>\n"
            f"    <devices>\n{disks}    </devices>\n"
            f"    <test:runstate>{dom.runstate}</test:runstate>\n{save}"
            f"  </domain>\n")
    parts.append("</node>\n")
    return "".join(parts)


def _seed_library(library: Path, disk_dir: Path) -> None:
    """Write library images in ImageLibrary's format, with fixed ids and creation dates."""
    for image_id, name, created, source, props in LIBRARY_IMAGES:
        sidecar = library / f"{image_id}.json"
        if sidecar.exists():
            continue
        data = library / f"{image_id}.qcow2"
        tmp = data.with_name(data.name + ".partial")
        tmp.unlink(missing_ok=True)
        src = disk_path(disk_dir, source)
        _run(["qemu-img", "convert", "-q", "-O", "qcow2", str(src), str(tmp)])
        os.chmod(tmp, 0o600)
        digest = hashlib.sha512()
        with open(tmp, "rb") as handle:
            while chunk := handle.read(MIB):
                digest.update(chunk)
        os.replace(tmp, data)
        meta = {"id": image_id, "name": name, "status": "active", "disk_format": "qcow2",
                "container_format": "bare", "size": data.stat().st_size, "created_at": created,
                "properties": props, "os_hash_algo": "sha512",
                "os_hash_value": digest.hexdigest()}
        fd = os.open(sidecar.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(meta, out, indent=2)
            out.write("\n")
        os.replace(sidecar.with_suffix(".tmp"), sidecar)


def build_demo_lab(base: Path | None = None) -> DemoLab:
    """Create the demo lab under ``base`` (default ``state_dir()/demo``) unless it exists."""
    base = private_dir(Path(base or default_base()).absolute())
    disk_dir = private_dir(base / "disks")
    library = private_dir(base / "library")
    private_dir(base / "state")
    marker = base / "lab-version"
    if not marker.exists() or marker.read_text().strip() != LAB_VERSION:
        for old in disk_dir.iterdir():  # an older layout: start the disks again
            old.unlink()
        shutil.rmtree(base / "nova", ignore_errors=True)
    _make_disk(disk_dir, BASE_IMAGE)
    _make_disk(disk_dir, NOVA_BASE)
    for dom in DOMAINS:
        for _target, disk in dom.disks:
            _make_disk(disk_dir, disk)
    _seed_library(library, disk_dir)
    xml_path = base / "node.xml"
    text = node_xml(disk_dir)
    if not xml_path.exists() or xml_path.read_text() != text:
        xml_path.write_text(text)
    marker.write_text(LAB_VERSION + "\n")
    log.debug("demo lab ready under %s", base)
    return DemoLab(uri=f"test://{xml_path}", library_dir=library, base=base, node_xml=xml_path)
