"""A big synthetic inventory for the dashboard benchmark: a libvirt ``test:///`` node XML with
N domains over a handful of small real qcow2 files (and some missing ones), and a local image
library with M sidecars (no data files: the dashboard only reads sidecars).

Deterministic (seeded), so two runs measure the same rows.
"""

from __future__ import annotations

import json
import random
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
RUNNING, PAUSED, SHUTOFF = 1, 3, 5  # virDomainState values for <test:runstate>

ROLES = ("web", "api", "db", "cache", "worker", "ci", "mail", "proxy", "search", "queue",
         "auth", "billing", "metrics", "backup", "vpn", "dns")
ENVS = ("prod", "stage", "dev", "qa")
DISTROS = (("ubuntu-22.04-server-cloudimg", "ubuntu", "22.04"),
           ("ubuntu-24.04-server-cloudimg", "ubuntu", "24.04"),
           ("debian-12-genericcloud", "debian", "12"), ("rocky-9-genericcloud", "rocky", "9"),
           ("fedora-40-cloud-base", "fedora", "40"), ("alpine-3.20-virt", "alpine", "3.20"))
IMAGE_STATUS = (("active", 88), ("queued", 3), ("saving", 2), ("killed", 2),
                ("deactivated", 3), ("importing", 1), ("pending_delete", 1))
SHARED_DISKS = 6  # real qcow2 files, 64 MiB virtual, shared by every domain


@dataclass(frozen=True)
class Inventory:
    """Where the synthetic inventory lives and what it holds."""

    uri: str
    library: Path
    domains: int
    images: int
    states: dict[str, int]
    missing_disks: int
    snapshot_images: int


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def _real_disks(disk_dir: Path) -> list[Path]:
    """A few small qcow2 files (one an overlay) that ``qemu-img info`` can read."""
    disk_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(SHARED_DISKS):
        path = disk_dir / f"shared-{i}.qcow2"
        if not path.exists():
            argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
            if i == SHARED_DISKS - 1:
                argv += ["-b", str(paths[0]), "-F", "qcow2"]
            subprocess.run([*argv, str(path), "64M"], check=True)
            subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -q -P {0x40 + i} 0 {i + 1}M",
                            str(path)], check=True, capture_output=True)
        paths.append(path)
    return paths


def build_inventory(base: Path, n_domains: int, n_images: int, seed: int = 4) -> Inventory:
    """Write node.xml, the shared disks and the library sidecars under ``base``."""
    rng = random.Random(seed)
    disks = _real_disks(base / "disks")
    states = {"running": 0, "paused": 0, "shut off": 0, "saved": 0}
    domains: list[tuple[str, str]] = []
    missing = 0
    parts = ["<node>\n"]
    for n in range(n_domains):
        name = f"{rng.choice(ROLES)}-{rng.choice(ENVS)}-{n:04d}"
        dom_uuid = _uuid(rng)
        domains.append((name, dom_uuid))
        kind = _weighted(rng, (("running", 55), ("shut off", 30), ("paused", 10), ("saved", 5)))
        states[kind] += 1
        runstate = {"running": RUNNING, "paused": PAUSED}.get(kind, SHUTOFF)
        disk_xml = []
        for d in range(rng.choice((1, 1, 1, 2, 2, 3))):
            if rng.random() < 0.15:  # a disk whose file is gone (moved storage, typo)
                path, missing = Path(f"/var/lib/libvirt/images/gone/{name}-vd{'abc'[d]}.qcow2"), \
                    missing + 1
            else:
                path = rng.choice(disks)
            disk_xml.append(f"      <disk type='file' device='disk'>\n"
                            f"        <driver name='qemu' type='qcow2'/>\n"
                            f"        <source file={quoteattr(str(path))}/>\n"
                            f"        <target dev='vd{'abc'[d]}' bus='virtio'/>\n"
                            f"      </disk>\n")
        save = "    <test:hasmanagedsave/>\n" if kind == "saved" else ""
        parts.append(
            f"  <domain type='test' xmlns:test='{TEST_NS}'>\n"
            f"    <name>{escape(name)}</name>\n    <uuid>{dom_uuid}</uuid>\n"
            f"    <memory unit='MiB'>{rng.choice((512, 1024, 2048, 4096, 8192))}</memory>\n"
            f"    <vcpu>{rng.choice((1, 2, 4, 8))}</vcpu>\n    <os><type>hvm</type></os>\n"
            f"    <devices>\n{''.join(disk_xml)}    </devices>\n"
            f"    <test:runstate>{runstate}</test:runstate>\n{save}  </domain>\n")
    parts.append("</node>\n")
    node = base / "node.xml"
    node.write_text("".join(parts))

    library = base / "library"
    library.mkdir(mode=0o700, parents=True, exist_ok=True)
    start = datetime(2023, 6, 1, tzinfo=UTC)
    snapshots = 0
    for _ in range(n_images):
        image_id = _uuid(rng)
        created = start + timedelta(seconds=rng.randrange(2 * 365 * 86400))
        stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        if domains and rng.random() < 0.75:
            name, dom_uuid = rng.choice(domains)
            props = {"image_type": "snapshot", "instance_uuid": dom_uuid,
                     "snaptui_mode": rng.choice(("cold", "live", "internal", "backup")),
                     "snaptui_source_disk": "vda"}
            image_name = f"{name}-{created:%Y-%m-%dT%H%MZ}"
            snapshots += 1
        else:
            distro, os_distro, version = rng.choice(DISTROS)
            props = {"os_distro": os_distro, "os_version": version}
            image_name = f"{distro}-{created:%Y%m%d}"
        status = _weighted(rng, IMAGE_STATUS)
        fmt = rng.choice(("qcow2", "qcow2", "qcow2", "raw"))
        size = rng.randrange(200, 20_000) * 1024 * 1024 if status == "active" else None
        meta = {"id": image_id, "name": image_name, "status": status, "disk_format": fmt,
                "container_format": "bare", "size": size, "created_at": stamp,
                "properties": props, "os_hash_algo": "sha512",
                "os_hash_value": rng.randbytes(64).hex() if status == "active" else None}
        (library / f"{image_id}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Inventory(uri=f"test://{node}", library=library, domains=n_domains, images=n_images,
                     states=states, missing_disks=missing, snapshot_images=snapshots)
