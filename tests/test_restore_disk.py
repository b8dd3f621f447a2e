"""`snaptui restore IMAGE --domain NAME` and `--undo JOB` on the real lab: disk-only domains,
images in the library and in Glance, the disk swapped by renames only."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import libvirt
import pytest
from cli_tools import snaptui
from lab_domains import make_disk

from snaptui.core.images.library import ImageLibrary
from snaptui.core.images.store import add_image

IMAGE_PATTERN = 0xCD


def image_file(directory: Path, *, fmt: str = "qcow2", size: str = "64M") -> Path:
    """A small image whose first 8 MiB hold a pattern the lab's disks never have."""
    return make_disk(directory / f"image.{fmt}", fmt=fmt, size=size, seed="8M",
                     pattern=IMAGE_PATTERN)


def same_content(a: Path, b: Path) -> bool:
    return subprocess.run(["qemu-img", "compare", "-U", str(a), str(b)],
                          capture_output=True).returncode == 0


def hidden_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".restore-" in p.name
                  or ".undo-" in p.name)


def test_library_image_restored_converted_then_undone(make_domain, tmp_path):
    lab = make_domain(fmt="raw", size="64M")
    disk = lab.disk_path()
    os.chmod(disk, 0o640)
    original = tmp_path / "original.raw"
    subprocess.run(["cp", "--sparse=always", str(disk), str(original)], check=True)
    xml_before = lab.dom.XMLDesc(0)
    library = ImageLibrary(tmp_path / "lib")
    image = add_image(library, image_file(tmp_path), name="snaptui-test-27-lib",
                      disk_format="qcow2")

    proc = snaptui("restore", image.id, "--domain", lab.name, "--library",
                   str(tmp_path / "lib"), "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    done = events[-1]
    assert done["event"] == "done", events[-3:]
    job_id = events[0]["job_id"]
    steps = [s["name"] for s in events[0]["steps"]]
    assert steps == ["download:vda", "convert:vda", "prepare:vda", "keep:vda", "swap:vda"]
    pre = Path(f"{disk}.pre-restore-{job_id}")
    assert same_content(disk, tmp_path / "image.qcow2")
    assert same_content(pre, original)
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(disk)],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["format"] == "raw"  # the disk's format, not the image's
    assert os.stat(disk).st_mode & 0o777 == 0o640
    assert lab.dom.XMLDesc(0) == xml_before
    assert hidden_leftovers(disk.parent) == []

    # cleanup lists the kept disk, and pre-selects it only once an age is chosen
    for extra, chosen in (((), False), (("--older-than", "0s"), True)):
        listed = snaptui("cleanup", "--only", "scratch", "--domain", lab.name, "--dry-run",
                         "--json", *extra)
        assert listed.returncode == 0, listed.stderr
        found = [f for f in json.loads(listed.stdout)["findings"] if f["location"] == str(pre)]
        assert len(found) == 1 and f"pre-restore disk of job {job_id}" in found[0]["reason"]
        assert found[0]["selected"] is chosen

    undo = snaptui("restore", "--undo", job_id, "--yes", "--json")
    assert undo.returncode == 0, undo.stderr
    assert json.loads(undo.stdout.splitlines()[-1])["event"] == "done"
    assert same_content(disk, original)
    assert not pre.exists() and hidden_leftovers(disk.parent) == []
    again = snaptui("restore", "--undo", job_id, "--yes")
    assert again.returncode == 2 and "no longer exists" in again.stderr


def test_glance_image_restored_and_started(make_domain, store, own_images, tmp_path):
    lab = make_domain(state="running", fmt="qcow2", size="64M")
    disk = lab.disk_path()
    image = add_image(store, image_file(tmp_path), name="snaptui-test-27-glance",
                      disk_format="qcow2")
    own_images.append(image.id)

    refused = snaptui("restore", image.id, "--domain", lab.name, "--yes")
    assert refused.returncode == 2 and "--shutdown" in refused.stderr
    assert lab.dom.isActive()

    dry = snaptui("restore", image.id, "--domain", lab.name, "--shutdown", "--force",
                  "--timeout", "1s", "--start", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "openstack image save --file" in dry.stdout and image.id in dry.stdout
    assert f"virsh shutdown {lab.name}" in dry.stdout and f"virsh start {lab.name}" in dry.stdout
    assert f"mv {disk.parent}/." in dry.stdout and "chown --reference=" in dry.stdout
    assert lab.dom.isActive() and hidden_leftovers(disk.parent) == []

    # A disk-only guest has no OS to answer ACPI: --force powers it off after the timeout.
    proc = snaptui("restore", "snaptui-test-27-glance", "--domain", lab.name, "--shutdown",
                   "--force", "--timeout", "1s", "--start", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "restored on" in proc.stdout
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    lab.dom.destroy()
    assert same_content(disk, tmp_path / "image.qcow2")


@pytest.mark.parametrize("case", ["shrink", "no-image"])
def test_refusals_change_nothing(make_domain, tmp_path, case):
    lab = make_domain(fmt="qcow2", size="64M")
    disk = lab.disk_path()
    library = ImageLibrary(tmp_path / "lib")
    ref = "snaptui-test-27-missing"
    if case == "shrink":
        ref = add_image(library, image_file(tmp_path, size="32M"), name="small",
                        disk_format="qcow2").id
    before = disk.stat()
    proc = snaptui("restore", ref, "--domain", lab.name, "--library", str(tmp_path / "lib"),
                   "--yes")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert ("never shrinks" if case == "shrink" else "no image") in proc.stderr
    assert disk.stat().st_mtime_ns == before.st_mtime_ns
    assert hidden_leftovers(disk.parent) == []
    assert json.loads(snaptui("jobs", "--json").stdout) == []


def test_new_guest_from_hw_properties_as_an_overlay(conn, disk_dir, tmp_path):
    library = ImageLibrary(tmp_path / "lib")
    image = add_image(library, image_file(tmp_path), name="snaptui-test-27-hw",
                      disk_format="qcow2",
                      properties={"hw_disk_bus": "scsi", "hw_qemu_guest_agent": "yes",
                                  "hw_machine_type": "pc"})
    name = "snaptui-test-27-hw-" + os.urandom(3).hex()
    proc = snaptui("restore", image.id, "--as", name, "--dir", str(disk_dir), "--overlay",
                   "--memory", "256", "--vcpus", "2", "--library", str(tmp_path / "lib"),
                   "--yes", "--json")
    try:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
        xml = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        disk = disk_dir / f"{name}-sda.qcow2"
        base = disk_dir / f"{name}-sda.base.qcow2"
        assert f"<source file='{disk}'" in xml and "bus='scsi'" in xml
        assert "org.qemu.guest_agent.0" in xml and "<vcpu placement='static'>2</vcpu>" in xml
        assert "<memory unit='KiB'>262144</memory>" in xml
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)],
                                         capture_output=True, text=True, check=True).stdout)
        assert info["backing-filename"] == str(base)
        assert same_content(disk, tmp_path / "image.qcow2")
        taken = snaptui("restore", image.id, "--as", name, "--dir", str(disk_dir),
                        "--library", str(tmp_path / "lib"), "--yes")
        assert taken.returncode == 2 and "domain named" in taken.stderr
    finally:
        try:
            conn.lookupByName(name).undefine()
        except libvirt.libvirtError:
            pass
