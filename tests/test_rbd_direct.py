"""Guests on Ceph RBD disks, on the real lab (one-node Ceph with cephx, Glance's ``ceph`` store).

Direct snapshots (Nova's direct_snapshot): the image is a flattened clone in Glance's pool,
handed over by location; nothing is read by the job, uploaded through Glance's API or written to
scratch, and the guest never pauses. Streaming the same disk into the file store is the
pull-mode export, unchanged. Each step of the direct workflow has its fault case (the cluster
seam of tests/fault_seam/, the Glance proxy for the location call).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import libvirt
import pytest
import rbd
from fault_seam import snaptui_faults as faults
from fault_tools import journal_events
from glance_proxy import FAULT_CLOUD, Rule, start_proxied_cloud
from lab_rbd import MIB, RbdDomain, create_rbd_domain

from snaptui.core.engine.jobs import follow, get_job, launch, prepare
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.errors import BadInput
from snaptui.core.paths import scratch_dir

pytestmark = pytest.mark.lab
NAME = "snaptui-test-rbd"


@dataclass
class Watch:
    """Samples the guest's state and what the scratch dir holds while a job runs."""

    dom: libvirt.virDomain
    states: set[int] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    samples: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.states.add(self.dom.state()[0])
            self.names.update(p.name for p in scratch_dir().iterdir())
            self.samples += 1
            self.stop.wait(0.005)


def run_job(request: SnapshotRequest, dom: libvirt.virDomain | None = None,
            mode: Mode = Mode.DIRECT) -> tuple[str, dict, Watch | None]:
    plan, steps = asyncio.run(prepare(request))
    assert plan.mode == mode, plan.mode_reason
    watch = Watch(dom) if dom is not None else None
    thread = threading.Thread(target=watch.run, daemon=True) if watch else None
    if thread:
        thread.start()
    try:
        job_id = launch(plan, request, steps)
        events = list(follow(job_id, timeout_s=180))
    finally:
        if watch and thread:
            watch.stop.set()
            thread.join()
    return job_id, events[-1], watch


def digest(domain: RbdDomain, pool: str, image: str, snap: str | None = None) -> str:
    """sha256 of a whole RBD image (or one of its snapshots), read with librbd."""
    sha = hashlib.sha256()
    with domain.ceph.ioctx(pool) as ioctx, rbd.Image(ioctx, image, snapshot=snap,
                                                     read_only=True) as img:
        size = img.size()
        for offset in range(0, size, 4 * MIB):
            sha.update(img.read(offset, min(4 * MIB, size - offset)))
    return sha.hexdigest()


def leftovers(domain: RbdDomain, job_id: str) -> list[str]:
    """What a job left in the cluster: the disk's snapshots and clones in the images pool
    (this job's only: other sessions share the pool)."""
    found = []
    with domain.ceph.ioctx() as ioctx, rbd.Image(ioctx, domain.image, read_only=True) as img:
        found += [f"snapshot {s['name']}" for s in img.list_snaps()]
    with domain.ceph.ioctx(domain.ceph.images_pool) as ioctx:
        for name in rbd.RBD().list(ioctx):
            with rbd.Image(ioctx, name, read_only=True) as img:
                try:
                    parent = img.get_parent_image_spec()
                except rbd.ImageNotFound:
                    parent = None
            if parent and parent["image_name"] == domain.image:
                found.append(f"clone {name}")
    return found


@pytest.fixture(scope="module")
def guest(conn_module: libvirt.virConnect, ceph_lab) -> Iterator[RbdDomain]:
    """One running disk-only guest on ``vms/<uuid>_disk`` (16 MiB of 0xab in 64 MiB)."""
    domain = create_rbd_domain(conn_module, ceph_lab, state="running")
    yield domain
    domain.remove()


@pytest.fixture(scope="module")
def conn_module(lab_env) -> Iterator[libvirt.virConnect]:
    connection = libvirt.open(lab_env["LIBVIRT_DEFAULT_URI"])
    yield connection
    connection.close()


def test_direct_snapshot_of_a_running_guest(guest: RbdDomain, store, own_images) -> None:
    """The done-when: an active image in the rbd store at rbd://<fsid>/images/<id>/snap whose
    content is the disk's; the guest never paused; nothing in scratch; no snapshot left."""
    disk_before = digest(guest, guest.ceph.pool, guest.image)
    request = SnapshotRequest(domain=guest.name, name=f"{NAME}-direct")
    job_id, last, watch = run_job(request, guest.dom)
    assert last["event"] == "done", last
    image_id = last["image_id"]
    own_images.append(image_id)
    assert watch is not None and watch.samples > 10
    assert watch.states == {libvirt.VIR_DOMAIN_RUNNING}, watch.states
    assert watch.names == set(), watch.names  # nothing ever written to scratch
    assert last["downtime_s"] == 0.0 and last["mode"] == "direct"
    job = get_job(job_id)
    assert all(s.state == "done" for s in job.steps), [(s.name, s.state) for s in job.steps]
    # the job read no disk data itself: no checksum, no output file, no NBD export
    assert not any(k.startswith(("checksum:", "output:", "backup_job")) for k in job.facts)
    raw = store.raw_image(image_id)
    fsid = raw["direct_url"].split("/")[2]
    assert raw["status"] == "active" and raw["stores"] == "ceph", raw
    assert raw["direct_url"] == f"rbd://{fsid}/images/{image_id}/snap"
    assert [loc["url"] for loc in raw["locations"]] == [raw["direct_url"]]
    assert (raw["disk_format"], raw["size"]) == ("raw", 64 * MIB)
    assert raw["snaptui_method"] == "rbd-direct" and raw["snaptui_job"] == job_id
    assert raw["image_type"] == "snapshot" and raw["instance_uuid"] == guest.uuid
    # the image is a standalone (flattened) copy of the disk at the snapshot instant
    with guest.ceph.ioctx(guest.ceph.images_pool) as ioctx, rbd.Image(
            ioctx, image_id, read_only=True) as img:
        with pytest.raises(rbd.ImageNotFound):
            img.get_parent_image_spec()
        snaps = {s["name"]: img.is_protected_snap(s["name"]) for s in img.list_snaps()}
    assert snaps == {"snap": True}
    assert digest(guest, guest.ceph.images_pool, image_id, "snap") == disk_before
    assert leftovers(guest, job_id) == []


def test_stream_of_an_rbd_disk_into_the_file_store(guest: RbdDomain, store, own_images,
                                                   tmp_path) -> None:
    """--stream reads the RBD disk over the pull-mode export into Glance's default (file)
    store, as for any disk."""
    request = SnapshotRequest(domain=guest.name, name=f"{NAME}-stream", stream="on",
                              out_format="raw")
    _, last, _ = run_job(request, mode=Mode.BACKUP)
    assert last["event"] == "done", last
    own_images.append(last["image_id"])
    raw = store.raw_image(last["image_id"])
    assert raw["stores"] == "fs" and raw["snaptui_method"] == "backup-stream", raw
    out = tmp_path / "image.raw"
    with open(out, "wb") as handle:
        store.download(last["image_id"], handle)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest(guest, guest.ceph.pool,
                                                                  guest.image)


@pytest.mark.parametrize(("mode", "words"), [
    (Mode.INTERNAL, "internal snapshots are a qcow2 feature"),
    (Mode.LIVE, "live copy of a network disk is not needed"),
])
def test_internal_and_live_refuse_rbd_disks(guest: RbdDomain, mode: Mode, words: str) -> None:
    with pytest.raises(BadInput, match=words):
        asyncio.run(prepare(SnapshotRequest(domain=guest.name, name=f"{NAME}-no", mode=mode)))


def test_direct_refused_for_the_library(guest: RbdDomain, tmp_path) -> None:
    request = SnapshotRequest(domain=guest.name, name=f"{NAME}-lib", mode=Mode.DIRECT,
                              destination="library", library_dir=str(tmp_path))
    with pytest.raises(BadInput, match="the local library has no rbd store"):
        asyncio.run(prepare(request))


# -- a fault in each step: the job fails there and leaves nothing behind ---------------------

CLUSTER_FAULTS = {
    "rbd-snap": "rbd-snap:image=once",
    "protect": "protect:image=once",
    "clone": "clone:ioctx=once",
    "flatten": "flatten:image=once",
    "clone-snap": "clone-snap:image=once",
    "rbd-unsnap": "rbd-unsnap:image=once",
}


def check_rolled_back(guest: RbdDomain, store, job_id: str, step: str) -> None:
    job = get_job(job_id)
    assert job.status == "failed", (job.status, job.error)
    failed = [ev["step"] for ev in journal_events(job_id) if ev.get("event") == "step_failed"]
    assert failed == [f"{step}:vda"], failed
    problems = [ev for ev in journal_events(job_id) if ev.get("event") == "undo_failed"]
    assert problems == [], problems
    assert leftovers(guest, job_id) == []
    assert [i.id for i in store.iter_images()
            if i.properties.get("snaptui_job") == job_id] == []
    assert guest.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


@pytest.mark.parametrize("step", list(CLUSTER_FAULTS))
def test_a_cluster_fault_in_each_step_rolls_back(guest: RbdDomain, store, step: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    faults.install_in(monkeypatch, CLUSTER_FAULTS[step])
    job_id, last, _ = run_job(SnapshotRequest(domain=guest.name, name=f"{NAME}-{step}"))
    assert last["event"] == "failed" and "injected fault" in last["error"], last
    check_rolled_back(guest, store, job_id, step)


def test_glance_refusing_the_location_rolls_back(guest: RbdDomain, store, tmp_path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    proxied = start_proxied_cloud(tmp_path / "cloud")
    try:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(proxied.config_file))
        proxied.glance.add(Rule("PATCH", r"^/v2/images/[^/]+$", "status", code=500))
        request = SnapshotRequest(domain=guest.name, name=f"{NAME}-location", cloud=FAULT_CLOUD)
        job_id, last, _ = run_job(request)
    finally:
        proxied.stop()
    assert last["event"] == "failed" and "adding location" in last["error"], last
    check_rolled_back(guest, store, job_id, "image")
