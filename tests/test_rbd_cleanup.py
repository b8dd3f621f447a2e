"""Cleanup of what direct snapshots leave in Ceph, on the real lab (one-node Ceph with cephx,
Glance's ``ceph`` store on pool ``images``).

The leftovers are made for real: a direct snapshot job whose flatten fails and whose rollback
cannot remove the clone (the cluster seam of tests/fault_seam/) leaves its protected snapshot
``snaptui-<job>`` on the disk with an unflattened clone in Glance's pool; Nova's kind is made
with librbd as Nova's direct_snapshot makes it (a 32-hex snapshot, protected, cloned into the
pool under an image id Glance does not have).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import rbd
from cli_tools import snaptui
from fault_seam import snaptui_faults as faults
from fault_tools import wait_gone
from lab_rbd import RbdDomain, purge_image
from test_rbd_direct import digest, run_job

from snaptui.core import audit
from snaptui.core.cleanup import Kind, preselected, remove_all, scan
from snaptui.core.cleanup.findings import LIKELY_NOVA
from snaptui.core.engine.jobs import get_job
from snaptui.core.engine.plan import SnapshotRequest

pytestmark = pytest.mark.lab
NAME = "snaptui-test-rbdclean"
# the flatten fails once; the clone's undo cannot reach the cluster, so the clone stays and
# the snapshot it was made from cannot be unprotected either
LEAVE_BEHIND = "flatten:image=once,clone:image=fail"


def pool_state(domain: RbdDomain, pool: str, older_than: float | None = None) -> dict[str, dict]:
    """Every image of ``pool`` (created before ``older_than`` when given): its parent and its
    snapshots with protection and children."""
    state = {}
    with domain.ceph.ioctx(pool) as ioctx:
        for name in rbd.RBD().list(ioctx):
            try:
                with rbd.Image(ioctx, name, read_only=True) as img:
                    if older_than is not None and img.create_timestamp().timestamp() > older_than:
                        continue
                    try:
                        spec = img.get_parent_image_spec()
                        parent = f"{spec['pool_name']}/{spec['image_name']}@{spec['snap_name']}"
                    except rbd.ImageNotFound:
                        parent = None
                    snaps = {}
                    for snap in img.list_snaps():
                        with rbd.Image(ioctx, name, snapshot=snap["name"],
                                       read_only=True) as at:
                            kids = sorted(f"{c['pool']}/{c['image']}"
                                          for c in at.list_children2())
                        snaps[snap["name"]] = (img.is_protected_snap(snap["name"]), kids)
            except rbd.ImageNotFound:
                continue  # another session's, removed while listing
            state[name] = {"parent": parent, "snaps": snaps}
    return state


@pytest.fixture
def nova_leftover(make_rbd_domain) -> Iterator[tuple[RbdDomain, str, str]]:
    """A guest on RBD with a Nova-made leftover: ``<32 hex>`` snapshot (protected) cloned into
    Glance's pool as ``images/<uuid>`` that Glance has no image for; and an operator's own
    snapshot, which is nobody's leftover."""
    guest = make_rbd_domain(state="running")
    snap, clone = uuid.uuid4().hex, str(uuid.uuid4())
    with guest.ceph.ioctx() as vms, guest.ceph.ioctx(guest.ceph.images_pool) as images:
        with rbd.Image(vms, guest.image) as img:
            img.create_snap("before-upgrade")
            img.create_snap(snap)
            img.protect_snap(snap)
        rbd.RBD().clone(vms, guest.image, snap, images, clone,
                        features=rbd.RBD_FEATURE_LAYERING)
    yield guest, snap, clone
    with guest.ceph.ioctx(guest.ceph.images_pool) as images:  # every clone of the disk
        for name, state in pool_state(guest, guest.ceph.images_pool).items():
            if (state["parent"] or "").startswith(f"{guest.ceph.pool}/{guest.image}@"):
                purge_image(images, name)


def test_leftovers_of_a_failed_direct_snapshot_are_found_and_removed(
        nova_leftover, host, store, own_images, monkeypatch: pytest.MonkeyPatch) -> None:
    guest, nova_snap, nova_clone = nova_leftover
    started = time.time()
    # a finished direct snapshot: its clone has its Glance image, so it is nobody's leftover
    _, done, _ = run_job(SnapshotRequest(domain=guest.name, name=f"{NAME}-kept"))
    assert done["event"] == "done", done
    own_images.append(done["image_id"])
    kept_digest = digest(guest, guest.ceph.images_pool, done["image_id"], "snap")

    faults.install_in(monkeypatch, LEAVE_BEHIND)
    job_id, last, _ = run_job(SnapshotRequest(domain=guest.name, name=f"{NAME}-left"))
    assert last["event"] == "failed", last
    wait_gone([get_job(job_id).pid])  # the job's process has ended: its leftovers are ours
    plan_rbd = get_job(job_id).plan["disks"][0]["rbd"]
    clone, own_snap = plan_rbd["clone_name"], plan_rbd["snapshot"]
    assert own_snap == f"snaptui-{job_id}"
    vms, images = guest.ceph.pool, guest.ceph.images_pool
    disk = pool_state(guest, vms)[guest.image]
    assert disk["snaps"][own_snap] == (True, [f"{images}/{clone}"])  # the job's leftovers
    assert pool_state(guest, images)[clone]["parent"] == f"{vms}/{guest.image}@{own_snap}"

    # -- the scan: ours pre-selected (clone before its parent snapshot), Nova's flagged only
    report = asyncio.run(scan(host, store, only={Kind.RBD}, older_than_s=0,
                              domains=[guest.name]))
    assert report.problems == []
    found = {f.details.get("name") or f.details["image"]: f for f in report.findings}
    assert set(found) == {clone, own_snap, nova_snap, nova_clone}, list(found)
    assert [f.key for f in report.findings].index(found[clone].key) < \
        [f.key for f in report.findings].index(found[own_snap].key)
    for key in (clone, own_snap):
        assert found[key].safe and found[key].label == "snaptui", found[key]
        assert preselected(found[key]) and job_id in found[key].reason
    for key in (nova_snap, nova_clone):
        assert found[key].label == LIKELY_NOVA and not found[key].safe, found[key]
        assert not found[key].unowned_ok
        assert not preselected(found[key], unowned_of={guest.name})
    assert found[clone].domain == found[nova_clone].domain == guest.name
    assert "rbd" in found[clone].commands[-1] and found[clone].commands[-1].endswith(
        f"rm {images}/{clone}")
    # the whole host's scan pre-selects nothing more (other sessions' leftovers are not ours)
    everything = asyncio.run(scan(host, store, only={Kind.RBD}, older_than_s=0))
    assert {f.key for f in everything.findings if preselected(f)} == \
        {found[clone].key, found[own_snap].key}
    # --older-than: a snapshot of a few seconds ago is not pre-selected by default
    young = asyncio.run(scan(host, store, only={Kind.RBD}, domains=[guest.name]))
    assert not any(preselected(f) for f in young.findings)

    # -- removal through the CLI, as an operator runs it. The CLI runs recover first, which
    # retries the failed undo and fails again through the same seam (the cluster still
    # refusing the job's undo); cleanup's removal is no job step and goes through no seam.
    vms_before, images_before = pool_state(guest, vms), pool_state(guest, images)
    stable_vms = pool_state(guest, vms, older_than=started - 600)
    stable_images = pool_state(guest, images, older_than=started - 600)
    run = snaptui("cleanup", "--only", "rbd", "--domain", guest.name, "--older-than", "0",
                  "--yes", "--json")
    monkeypatch.delenv(faults.ENV)
    assert run.returncode == 0, run.stderr
    assert "undo still failing" in run.stderr, run.stderr
    out = json.loads(run.stdout)
    results = {f["key"]: f["result"] for f in out["findings"] if "result" in f}
    assert set(results) == {found[clone].key, found[own_snap].key}, out
    assert all(r["ok"] for r in results.values()), results
    for result in results.values():  # measured by librbd: gone, so nothing held after
        assert result["after"] == 0 and result["reclaimed"] == result["before"], result

    # exactly those two went; nothing else in either pool changed
    vms_after, images_after = pool_state(guest, vms), pool_state(guest, images)
    assert clone not in images_after
    del vms_before[guest.image]["snaps"][own_snap]
    del images_before[clone]
    assert vms_after[guest.image] == vms_before[guest.image]
    assert images_after[nova_clone] == images_before[nova_clone]
    assert images_after[done["image_id"]] == images_before[done["image_id"]]
    assert pool_state(guest, vms, older_than=started - 600) == stable_vms
    assert pool_state(guest, images, older_than=started - 600) == stable_images
    assert digest(guest, images, done["image_id"], "snap") == kept_digest
    assert store.show(done["image_id"]).status == "active"

    # each removal is in the audit log, started then ok
    entries = [(e["action"], e["result"]) for e in audit.read()
               if e["action"].startswith("cleanup:rbd")]
    assert entries == [("cleanup:rbd rm", "started"), ("cleanup:rbd rm", "ok"),
                       ("cleanup:rbd snap rm", "started"), ("cleanup:rbd snap rm", "ok")]

    # a second scan finds only Nova's, still flagged
    again = asyncio.run(scan(host, store, only={Kind.RBD}, older_than_s=0,
                             domains=[guest.name]))
    assert {f.details.get("name") or f.details["image"] for f in again.findings} == \
        {nova_snap, nova_clone}


def test_a_snapshot_whose_clone_stays_is_refused(nova_leftover, host, store) -> None:
    """Chosen explicitly, Nova's snapshot is still refused while its clone exists (children
    first), and removing the clone then the snapshot works."""
    guest, nova_snap, nova_clone = nova_leftover
    report = asyncio.run(scan(host, store, only={Kind.RBD}, older_than_s=0,
                              domains=[guest.name]))
    found = {f.details.get("name") or f.details["image"]: f for f in report.findings}
    [refused] = asyncio.run(remove_all([found[nova_snap]], host, store))
    assert not refused.ok and refused.reason.startswith("refused: clones were made"), refused
    assert nova_snap in pool_state(guest, guest.ceph.pool)[guest.image]["snaps"]
    results = asyncio.run(remove_all([found[nova_clone], found[nova_snap]], host, store))
    assert [r.ok for r in results] == [True, True], results
    assert nova_clone not in pool_state(guest, guest.ceph.images_pool)
    assert set(pool_state(guest, guest.ceph.pool)[guest.image]["snaps"]) == {"before-upgrade"}


def test_a_boot_checks_clone_left_behind_is_shown_and_removed_when_chosen(
        make_rbd_domain, host, store) -> None:
    """A killed standalone verify leaves ``snaptui-verify-<job>`` (a clone of the image's snap)
    beside the disks; no journal proves it ours, so it is shown, not pre-selected, and removed
    when chosen; its parent and the pool's other images are untouched."""
    guest = make_rbd_domain(state="shut off")
    job = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() - 3600)) + "-e25e25"
    clone = f"snaptui-verify-{job}"
    vms = guest.ceph.pool
    with guest.ceph.ioctx() as ioctx:
        with rbd.Image(ioctx, guest.image) as img:
            img.create_snap("snap")
            img.protect_snap("snap")
        rbd.RBD().clone(ioctx, guest.image, "snap", ioctx, clone,
                        features=rbd.RBD_FEATURE_LAYERING)
    try:
        before = {k: v for k, v in pool_state(guest, vms).items() if k != clone}
        report = asyncio.run(scan(host, store, only={Kind.RBD}, older_than_s=0))
        [found] = [f for f in report.findings if f.details.get("image") == clone]
        assert found.details["what"] == "verify-clone" and found.label == "snaptui"
        assert found.unowned and not found.safe and not preselected(found), found
        assert job in found.reason and "standalone verify" in found.reason
        assert found.commands[-1].endswith(f"rm {vms}/{clone}")
        # the disk's own snapshot is nobody's leftover: the clone is the only finding of it
        assert not [f for f in report.findings if f.details.get("image") == guest.image]
        [removed] = asyncio.run(remove_all([found], host, store))
        assert removed.ok, removed
        after = pool_state(guest, vms)
        assert clone not in after
        assert after[guest.image] == {**before[guest.image],
                                      "snaps": {"snap": (True, [])}}
    finally:
        with guest.ceph.ioctx() as ioctx:
            purge_image(ioctx, clone)
