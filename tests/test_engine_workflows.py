"""Every mode on running, paused and shut-off guests, end to end on the real lab.

The output is compared with the source disk byte for byte (qemu-img compare; the test guest has no
OS and does not write), the image is checked in its store, and the guest is back as it was.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import libvirt
import pytest
from lab_domains import TEST_PREFIX, LabDomain, domain_xml, make_disk

from snaptui.core.engine.jobs import follow, get_job, launch, prepare
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.images.factory import open_store
from snaptui.core.images.library import ImageLibrary
from snaptui.core.paths import scratch_dir

STATE_NAMES = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
               libvirt.VIR_DOMAIN_SHUTOFF: "shut off"}

CASES = [
    ("cold", "running", "glance", "qcow2"),
    ("cold", "paused", "library", "raw"),
    ("cold", "shut off", "library", "qcow2"),
    ("internal", "running", "library", "qcow2"),
    ("internal", "paused", "glance", "raw"),
    ("internal", "shut off", "library", "qcow2"),
    ("live", "running", "glance", "qcow2"),
    ("live", "paused", "library", "raw"),
    ("backup", "running", "glance", "raw"),
    ("backup", "paused", "library", "qcow2"),
]


def run_job(request: SnapshotRequest, timeout_s: float = 120) -> tuple[str, list[dict]]:
    plan, steps = asyncio.run(prepare(request))
    job_id = launch(plan, request, steps)
    events = list(follow(job_id, timeout_s=timeout_s))
    return job_id, events


def qemu_compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", "compare", "-U", str(a), str(b)],
                          capture_output=True, text=True)


@pytest.mark.parametrize(("mode", "state", "destination", "fmt"), CASES,
                         ids=[f"{m}-{s.replace(' ', '')}-{d}-{f}" for m, s, d, f in CASES])
def test_mode_end_to_end(make_domain, tmp_path, mode, state, destination, fmt):
    lab = make_domain(state=state, size="96M", seed="40M")
    xml_before = lab.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    kept = tmp_path / f"out.{fmt}"
    request = SnapshotRequest(
        domain=lab.name, name=f"snaptui-test {mode} 'q' $(x); ü", mode=Mode(mode),
        out_format=fmt, destination=destination, keep_local=str(kept),
        library_dir=str(tmp_path / "lib"),
    )
    job_id, events = run_job(request)
    last = events[-1]
    assert last["event"] == "done", last
    job = get_job(job_id)
    assert all(s.state == "done" for s in job.steps), [(s.name, s.state) for s in job.steps]

    # Byte-identical to the source disk at the snapshot instant.
    result = qemu_compare(lab.disk_path(), kept)
    assert result.returncode == 0, result.stdout + result.stderr
    if fmt == "qcow2":
        subprocess.run(["qemu-img", "check", "-q", str(kept)], check=True)
    # Live and backup keep their copy as the image when it is standalone: no convert step.
    converted = any(s.name == "convert:vda" for s in get_job(job_id).steps)
    assert converted == (mode not in ("live", "backup"))

    # The guest is back in its original state, with its XML unchanged and no job left.
    dom = lab.dom
    assert STATE_NAMES[dom.state()[0]] == state
    assert dom.isPersistent()
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == xml_before
    assert not dom.hasManagedSaveImage(0)
    if dom.isActive():
        assert dom.blockJobInfo("vda", 0) == {}
        assert dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
    snaps = subprocess.run(["qemu-img", "snapshot", "-U", "-l", str(lab.disk_path())],
                           capture_output=True, text=True, check=True).stdout
    assert "snaptui" not in snaps
    assert list(scratch_dir().iterdir()) == []

    # Downtime: none for live and backup; measured for cold/internal on an active guest.
    if mode in ("live", "backup") or state == "shut off":
        assert last["downtime_s"] == 0.0
    else:
        assert last["downtime_s"] > 0

    # The image is in its store, active, with Nova's properties and the checksum we computed.
    store = open_store(destination, library=str(tmp_path / "lib"))
    image = store.show(last["image_id"])
    try:
        assert image.status == "active"
        assert image.name == request.name
        assert image.disk_format == fmt
        assert image.os_hash_value == last["checksum"]
        assert image.size == kept.stat().st_size == last["sizes"]["uploaded"]
        props = image.properties
        assert props["image_type"] == "snapshot"
        assert props["instance_uuid"] == lab.uuid
        assert props["image_location"] == "snapshot"
        assert props["image_state"] == "available"
        assert props["snaptui_method"] == mode
        assert props["snaptui_disk"] == "vda"
        if destination == "glance":
            assert props.get("owner_id")
    finally:
        store.delete(image.id)


def test_auto_chooses_live_for_running_and_cold_for_shut_off(make_domain, tmp_path):
    running = make_domain(state="running")
    off = make_domain(state="shut off")
    for lab, expected in ((running, "live"), (off, "cold")):
        request = SnapshotRequest(domain=lab.name, name="snaptui-test-auto",
                                  destination="library", library_dir=str(tmp_path / "lib"))
        plan, _ = asyncio.run(prepare(request))
        assert plan.mode == expected
        assert plan.mode_reason.startswith(f"auto chose {expected}")


def test_all_disks_compressed_to_library(make_domain, tmp_path):
    lab = make_domain(state="running", ndisks=2, size="64M", seed="24M")
    library = tmp_path / "lib"
    request = SnapshotRequest(domain=lab.name, name="snaptui-test-multi", mode=Mode.COLD,
                              all_disks=True, compress=True, destination="library",
                              library_dir=str(library))
    job_id, events = run_job(request)
    assert events[-1]["event"] == "done", events[-1]
    images = events[-1]["images"]
    assert [i["target"] for i in images] == ["vda", "vdb"]
    lib = ImageLibrary(library)
    for image, target in zip(images, ("vda", "vdb"), strict=True):
        record = lib.show(image["image_id"])
        assert record.name == f"snaptui-test-multi-{target}"
        info = subprocess.run(["qemu-img", "info", str(record.location)], capture_output=True,
                              text=True, check=True).stdout
        assert "compression type" in info
        assert qemu_compare(lab.disk_path(target), Path(record.location)).returncode == 0
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


@pytest.mark.parametrize("mode", ["live", "backup"])
def test_live_copy_of_a_disk_with_a_backing_file(conn, tmp_path, disk_dir, mode):
    """Nova's case: the instance disk is an overlay on a base image. The live delta keeps the
    backing file and is converted with its chain; the backup is standalone and kept as is."""
    base = make_disk(disk_dir / "base.qcow2", size="64M", seed="16M")
    overlay = disk_dir / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                    str(overlay)], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -q -P 0xcd 8M 8M", str(overlay)],
                   check=True, capture_output=True)
    overlay.chmod(0o600)
    name = TEST_PREFIX + "chain-" + mode
    conn.defineXML(domain_xml(name, [("vda", overlay, "qcow2")]))
    lab = LabDomain(conn, name, [("vda", overlay, "qcow2")])
    try:
        lab.set_state("running")
        kept = tmp_path / "out.qcow2"
        request = SnapshotRequest(domain=name, name=f"snaptui-test-chain-{mode}", mode=Mode(mode),
                                  out_format="qcow2", destination="library", keep_local=str(kept),
                                  library_dir=str(tmp_path / "lib"))
        job_id, events = run_job(request)
        assert events[-1]["event"] == "done", events[-1]
        steps = [s.name for s in get_job(job_id).steps]
        assert ("convert:vda" in steps) == (mode == "live")
        assert qemu_compare(overlay, kept).returncode == 0
        info = subprocess.run(["qemu-img", "info", "--output=json", str(kept)],
                              capture_output=True, text=True, check=True).stdout
        assert "backing-filename" not in info
        assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert list(scratch_dir().iterdir()) == []
    finally:
        lab.remove()
        base.unlink(missing_ok=True)
