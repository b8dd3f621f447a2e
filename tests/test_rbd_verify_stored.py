"""``snaptui verify IMAGE`` of an image in Glance's rbd store, on the real lab: it boots as a
copy-on-write clone of the image's ``snap``, nothing downloaded, reached with the cephx user and
libvirt secret of the source domain's RBD disk; the clone is gone afterwards.

The bootable guest is the lab's real-guest disk imported into RBD (test_rbd_verify's fixture):
one boot for the module, the standalone check's.
"""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest
import rbd
from cli_tools import snaptui
from lab_guests import guest_artefacts  # noqa: F401
from lab_rbd import RbdDomain
from test_rbd_direct import run_job
from test_rbd_verify import bootable, conn  # noqa: F401

from snaptui.core.engine.plan import SnapshotRequest
from snaptui.core.engine.verify_stored import RbdLocation, find_access
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.paths import scratch_dir
from snaptui.core.verify.boot import VERIFY_PREFIX, VerifyFiles

pytestmark = pytest.mark.lab
NAME = "snaptui-test-rbd-vstored"


@dataclass
class Seen:
    """What the verify domain booted from, and every scratch file seen while it ran."""

    disks: list[tuple[str, str]] = field(default_factory=list)  # (type, source name)
    parents: list[dict] = field(default_factory=list)
    scratch: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)


def watch(connection: libvirt.virConnect, domain: RbdDomain, image_id: str, seen: Seen) -> None:
    """Poll for the verify domain booting a clone of ``image_id`` (other sessions may verify
    at the same time: only the one whose disk's parent is our image counts)."""
    while not seen.stop.wait(0.2):
        seen.scratch |= {p.name for p in scratch_dir().iterdir()} if scratch_dir().exists() \
            else set()
        for dom in connection.listAllDomains(0):
            if not dom.name().startswith(VERIFY_PREFIX) or seen.disks:
                continue
            try:
                disk = ET.fromstring(dom.XMLDesc(0)).find("./devices/disk")
            except libvirt.libvirtError:
                continue
            source = disk.find("source") if disk is not None else None
            if disk is None or source is None or disk.get("type") != "network":
                continue
            pool, _, name = source.get("name", "").partition("/")
            try:
                with domain.ceph.ioctx(pool) as ioctx, rbd.Image(ioctx, name,
                                                                 read_only=True) as img:
                    parent = img.get_parent_image_spec()
            except (rbd.Error, OSError):
                continue
            if parent["image_name"] == image_id:
                seen.disks.append((disk.get("type"), source.get("name")))
                seen.parents.append(parent)


def test_verify_of_an_rbd_image_boots_a_clone_of_its_snap(
        bootable: RbdDomain, conn: libvirt.virConnect, store, own_images) -> None:  # noqa: F811
    job_id, last, _ = run_job(SnapshotRequest(domain=bootable.name, name=f"{NAME}-ok"))
    assert last["event"] == "done", last
    image_id = last["image_id"]
    own_images.append(image_id)
    before = store.raw_image(image_id)
    assert before["direct_url"].startswith("rbd://") and "snaptui_verified" not in before

    seen = Seen()
    watcher = threading.Thread(target=watch, args=(conn, bootable, image_id, seen), daemon=True)
    watcher.start()
    try:
        out = snaptui("verify", image_id, "--verify-timeout", "300", "--json", timeout=400)
    finally:
        seen.stop.set()
        watcher.join()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["event"] == "verified" and result["method"] == "agent", result
    assert result["via"] == "rbd-clone", result
    assert "nothing downloaded" in out.stderr and "downloading" not in out.stderr, out.stderr

    # it booted the clone vms/snaptui-verify-<job> of images/<id>@snap
    assert len(seen.disks) == 1, seen
    kind, name = seen.disks[0]
    assert kind == "network" and name.startswith(f"{bootable.ceph.pool}/{VERIFY_PREFIX}")
    assert (seen.parents[0]["pool_name"], seen.parents[0]["snap_name"]) == (
        bootable.ceph.images_pool, "snap")
    verify_job = name.rpartition(VERIFY_PREFIX)[2]
    # nothing downloaded: the download path's copy (<job>-vda.<fmt>.partial) never appeared
    # in scratch, nor an overlay; only the console file was written there
    files = VerifyFiles.for_prefix(Path(f"{verify_job}-vda"))
    mine = {n for n in seen.scratch if n.startswith(verify_job)}
    assert files.console.name in mine, seen.scratch
    assert mine <= {files.console.name, files.nvram.name}, seen.scratch
    assert not any(n.endswith(".partial") for n in seen.scratch), seen.scratch

    # marked verified, the image itself unchanged; the clone and the domain are gone
    after = store.raw_image(image_id)
    assert after["snaptui_verified"] == "agent" and after["snaptui_verified_at"]
    assert (after["status"], after["direct_url"], after["os_hash_value"]) == (
        "active", before["direct_url"], before["os_hash_value"])
    with bootable.ceph.ioctx() as ioctx:
        assert [n for n in rbd.RBD().list(ioctx) if n.endswith(verify_job)] == []
    assert [d.name() for d in conn.listAllDomains(0) if d.name().endswith(verify_job)] == []
    assert not any(p.name.startswith(verify_job) for p in scratch_dir().iterdir())
    assert bootable.dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF

    # --stale takes the same way in (the guest's only image: its proof is 0 s old)
    out = snaptui("verify", "--stale", "0s", "--domain", bootable.name, "--verify-timeout",
                  "300", "--json", timeout=400)
    assert out.returncode == 0, out.stderr
    assert [(r["image_id"], r["outcome"]) for r in json.loads(out.stdout)] == [
        (image_id, "verified")], out.stdout
    assert "nothing downloaded" in out.stderr and "downloading" not in out.stderr, out.stderr
    assert store.raw_image(image_id)["snaptui_verified_at"] >= after["snaptui_verified_at"]
    with bootable.ceph.ioctx() as ioctx:
        assert [n for n in rbd.RBD().list(ioctx) if n.startswith(VERIFY_PREFIX)
                and _parent(ioctx, n) == image_id] == []


def _parent(ioctx, name: str) -> str | None:
    try:
        with rbd.Image(ioctx, name, read_only=True) as img:
            return img.get_parent_image_spec()["image_name"]
    except rbd.Error:
        return None


def test_the_cluster_is_found_through_a_disk_on_the_same_fsid(bootable: RbdDomain) -> None:  # noqa: F811
    """The source domain's disk is the way in; a cluster no disk is on gives the reason the
    download path then names."""
    fsid = _fsid(bootable)
    host = LibvirtHost().connect()
    try:
        source, why = find_access(host, fsid, [bootable.dom.UUIDString()])
        assert source is not None and why == ""
        assert source.name == f"{bootable.ceph.pool}/{bootable.image}"
        assert source.auth_user == bootable.ceph.user
        assert source.secret_uuid == bootable.ceph.secret_uuid
        other = "00000000-0000-0000-0000-000000000000"
        source, why = find_access(host, other, [])
        assert source is None and why.startswith(f"no RBD disk of this host's domains is on "
                                                 f"cluster {other}"), why
    finally:
        host.close()
    assert RbdLocation.parse("rbd://f/images/i%2Dd/snap") == RbdLocation("f", "images", "i-d",
                                                                         "snap")
    assert RbdLocation.parse("file:///var/lib/glance/images/x") is None


def _fsid(domain: RbdDomain) -> str:
    import rados

    cluster = rados.Rados(conffile=domain.ceph.conf, rados_id=domain.ceph.user)
    cluster.connect(timeout=30)
    try:
        return str(cluster.get_fsid())
    finally:
        cluster.shutdown()
