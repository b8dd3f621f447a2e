"""``snaptui info`` of a domain's RBD disks: librbd's view (pool/image, provisioned and used
sizes, snapshots with protection and clone children, the parent chain) and QEMU's
(``qemu-img info`` of the ``rbd:`` disk). The cephx key comes from libvirt's secret and is
never shown."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Group
from rich.text import Text

from snaptui.cli.output import grid, plain, table
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DiskInfo
from snaptui.core.present import size_text, size_with_bytes
from snaptui.core.rbd import images, qemu_info
from snaptui.core.rbd.cluster import RbdCluster


def rbd_disk_info(host: LibvirtHost, disk: DiskInfo) -> dict[str, Any]:
    """librbd's and qemu-img's views of one RBD disk, as JSON-ready data."""
    source = disk.rbd
    assert source is not None
    key = host.ceph_key(source)
    with RbdCluster(source, key) as cluster:
        image = images.inspect(cluster, source.pool, source.image)
    qemu = asyncio.run(qemu_info.info(source, key))
    return {"target": disk.target, "url": qemu_info.display_url(source), "rbd": image.to_json(),
            "qemu_img": {k: qemu.get(k) for k in ("format", "virtual-size", "cluster-size")}}


def render_rbd(data: dict[str, Any]) -> Group:
    """One RBD disk for people."""
    image = data["rbd"]
    head = Text.assemble(plain(f"{data['target']}  ", "bold cyan"),
                         plain(f"{image['pool']}/{image['name']}", "bold"))
    facts = grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    facts.add_row("storage", f"Ceph RBD, cluster {image['fsid']}")
    facts.add_row("qemu", data["url"])
    facts.add_row("format", str(data["qemu_img"].get("format") or "raw"))
    facts.add_row("provisioned", size_with_bytes(image["size"]))
    used = image["used"]
    facts.add_row("used", size_with_bytes(used) if used is not None else "unknown")
    if used is not None and image["size"]:
        facts.add_row("ratio", f"{100 * used / image['size']:.1f} % used of provisioned")
    facts.add_row("object size", size_text(image["object_size"]))
    facts.add_row("features", ", ".join(image["features"]) or "-")
    chain = [image["parent"], *image["parent_chain"]] if image["parent"] else []
    facts.add_row("parent", " → ".join(chain) if chain else "none (not a clone)")
    parts: list[Any] = [head, facts]
    if image["snapshots"]:
        snaps = table("name", "size", "protected", "clones", title=None)
        for s in image["snapshots"]:
            snaps.add_row(s["name"], size_text(s["size"]), "yes" if s["protected"] else "no",
                          ", ".join(s["children"]) or "-")
        parts += [Text("RBD snapshots", style="dim"), snaps]
    else:
        facts.add_row("snapshots", "none")
    return Group(*parts)
