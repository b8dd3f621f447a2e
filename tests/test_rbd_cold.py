"""Cold snapshots of guests on Ceph RBD disks, on the real lab (one-node Ceph with cephx).

Managed save → RBD snapshot ``snaptui-<job>`` → the guest restored at once → the image read
from the snapshot (qemu-img's rbd driver, the key through a pipe) into the usual upload →
the snapshot removed. The guest is down for the save, the snapshot and the restore only. Each
step has its fault case: the libvirt and cluster seams of tests/fault_seam/, a failing qemu-img
for the export.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import subprocess
from collections.abc import Iterator

import libvirt
import pytest
from fault_seam import snaptui_faults as faults
from fault_tools import QemuImgFault, journal_events
from lab_rbd import MIB, RbdDomain, create_rbd_domain
from test_rbd_direct import digest, leftovers, run_job

from snaptui.core.engine.facts import Fact
from snaptui.core.engine.jobs import get_job, prepare
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.preflight.mode_decision import RBD_COLD
from snaptui.core.images.library import ImageLibrary
from snaptui.core.paths import scratch_dir

pytestmark = pytest.mark.lab
NAME = "snaptui-test-rbd-cold"


@pytest.fixture(scope="module")
def guest(ceph_lab, lab_env) -> Iterator[RbdDomain]:
    """One running disk-only guest on ``vms/<uuid>_disk`` (16 MiB of 0xab in 64 MiB)."""
    conn = libvirt.open(lab_env["LIBVIRT_DEFAULT_URI"])
    domain = create_rbd_domain(conn, ceph_lab, state="running")
    yield domain
    domain.remove()
    conn.close()


def sha256(path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MIB):
            sha.update(chunk)
    return sha.hexdigest()


def started(job_id: str, step: str) -> float:
    return next(ev["t"] for ev in journal_events(job_id)
                if ev.get("event") == "step_started" and ev.get("step") == step)


def test_cold_snapshot_of_a_running_guest(guest: RbdDomain, store, own_images,
                                          tmp_path) -> None:
    """Into Glance's file store: the image equals the disk, the guest runs again before the
    export begins, the downtime is measured, no snapshot is left."""
    disk_before = digest(guest, guest.ceph.pool, guest.image)
    request = SnapshotRequest(domain=guest.name, name=f"{NAME}-glance", mode=Mode.COLD,
                              out_format="raw")
    job_id, last, _ = run_job(request, mode=Mode.COLD)
    assert last["event"] == "done", last
    own_images.append(last["image_id"])
    assert last["mode"] == "cold" and last["downtime_s"] > 0, last
    job = get_job(job_id)
    assert [s.name for s in job.steps][:5] == ["save", "rbd-snap:vda", "restart", "convert:vda",
                                               "rbd-unsnap:vda"]
    assert all(s.state == "done" for s in job.steps), [(s.name, s.state) for s in job.steps]
    # the export read the snapshot while the guest ran again: after the downtime ended
    assert round(job.facts[Fact.GUEST_RESUMED_AT], 3) <= started(job_id, "convert:vda")
    assert guest.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert not guest.dom.hasManagedSaveImage(0)
    raw = store.raw_image(last["image_id"])
    assert raw["status"] == "active" and raw["stores"] == "fs", raw
    assert raw["snaptui_method"] == "cold" and raw["disk_format"] == "raw"
    out = tmp_path / "image.raw"
    with open(out, "wb") as handle:
        store.download(last["image_id"], handle)
    assert sha256(out) == disk_before
    assert leftovers(guest, job_id) == []


def test_cold_snapshot_of_a_shut_off_rbd_guest_into_the_library(make_rbd_domain,
                                                                 tmp_path) -> None:
    """Auto takes cold (no Glance, so no direct; not running, so no stream): no save, no
    restart, the guest stays off; a qcow2 image equal to the disk."""
    domain = make_rbd_domain(state="shut off", seed=8 * MIB)
    request = SnapshotRequest(domain=domain.name, name=f"{NAME}-lib", destination="library",
                              library_dir=str(tmp_path))
    plan, steps = asyncio.run(prepare(request))
    assert plan.mode == Mode.COLD and "an RBD snapshot of each disk" in plan.mode_reason
    assert [s.name for s in steps] == ["rbd-snap:vda", "convert:vda", "rbd-unsnap:vda",
                                       "image:vda", "upload:vda", "finish:vda"]
    _, last, _ = run_job(request, mode=Mode.COLD)
    assert last["event"] == "done", last
    assert last["downtime_s"] == 0.0
    assert domain.dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    record = ImageLibrary(tmp_path).show(last["image_id"])
    assert record.disk_format == "qcow2" and record.location
    plain = tmp_path / "plain.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", record.location, str(plain)], check=True)
    assert sha256(plain) == digest(domain, domain.ceph.pool, domain.image)


def test_auto_takes_cold_for_a_running_guest_into_the_library(guest: RbdDomain,
                                                              tmp_path) -> None:
    """Neither direct (no rbd store in a library) nor streaming (the library keeps the copy
    path): auto takes cold and says why; the key never appears in the commands shown."""
    request = SnapshotRequest(domain=guest.name, name=f"{NAME}-auto", destination="library",
                              library_dir=str(tmp_path))
    plan, steps = asyncio.run(prepare(request))
    assert plan.mode == Mode.COLD, plan.mode_reason
    assert RBD_COLD in plan.mode_reason and "the local library" in plan.mode_reason
    export = next(s for s in steps if s.name == "convert:vda")
    # the shown command is typed into a shell: the rbd: URL is quoted (its escaped colons)
    argv = shlex.split(export.command)
    assert argv[:6] == ["qemu-img", "convert", "-p", "-f", "raw", "-O"]
    source = next(a for a in argv if a.startswith("rbd:"))
    assert source.startswith("rbd:vms/")
    assert f"@snaptui-{plan.job_id}:id={guest.ceph.user}:mon_host=" in source


# -- a fault in each step: the job fails there, the guest runs, nothing is left -------------

FAULTS = {
    "save": "save:managedSave=once",
    "rbd-snap": "rbd-snap:image=once",
    "restart": "restart:create=once",
    "convert": "convert:image=once",  # the snapshot cannot be opened
    "rbd-unsnap": "rbd-unsnap:image=once",
}


def check_rolled_back(guest: RbdDomain, store, job_id: str, step: str) -> None:
    job = get_job(job_id)
    assert job.status == "failed", (job.status, job.error)
    failed = [ev["step"] for ev in journal_events(job_id) if ev.get("event") == "step_failed"]
    assert failed == [step if step in ("save", "restart") else f"{step}:vda"], failed
    problems = [ev for ev in journal_events(job_id) if ev.get("event") == "undo_failed"]
    assert problems == [], problems
    assert leftovers(guest, job_id) == []
    assert [i.id for i in store.iter_images()
            if i.properties.get("snaptui_job") == job_id] == []
    assert guest.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert not guest.dom.hasManagedSaveImage(0)
    assert [p.name for p in scratch_dir().iterdir() if p.name.startswith(job_id)] == []


@pytest.mark.parametrize("step", list(FAULTS))
def test_a_fault_in_each_step_rolls_back(guest: RbdDomain, store, step: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    faults.install_in(monkeypatch, FAULTS[step])
    request = SnapshotRequest(domain=guest.name, name=f"{NAME}-{step}", mode=Mode.COLD,
                              out_format="raw")
    job_id, last, _ = run_job(request, mode=Mode.COLD)
    assert last["event"] == "failed" and "injected fault" in last["error"], last
    check_rolled_back(guest, store, job_id, step)


def test_qemu_img_failing_the_export_rolls_back(guest: RbdDomain, store, tmp_path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    wrapper = QemuImgFault(tmp_path, "convert")
    monkeypatch.setenv("SNAPTUI_QEMU_IMG", str(wrapper.path))
    request = SnapshotRequest(domain=guest.name, name=f"{NAME}-qemu-img", mode=Mode.COLD,
                              out_format="raw")
    job_id, last, _ = run_job(request, mode=Mode.COLD)
    assert last["event"] == "failed" and "injected fault" in last["error"], last
    check_rolled_back(guest, store, job_id, "convert")
