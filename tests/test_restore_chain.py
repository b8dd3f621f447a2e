"""Restoring a disk that is a qcow2 overlay over a base, as Nova's are over its image cache:
when the image's ``base_image_ref`` names that base, the restored disk is again an overlay over
it, holding only what differs (the base is shared, so it is only read); otherwise flat."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import subprocess
from pathlib import Path

import libvirt
import pytest
from cli_tools import snaptui
from fault_seam import snaptui_faults as faults
from lab_domains import LabDomain, domain_xml, make_disk
from rich.console import Console

from snaptui.cli.job_view import print_outcome
from snaptui.core.engine.journal import load_job
from snaptui.core.images.library import ImageLibrary
from snaptui.core.images.store import add_image

BASE_PATTERN = 0xCD
WRITTEN_PATTERN = 0xEE


def qemu_info(path: Path) -> dict:
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def same_content(a: Path, b: Path) -> bool:
    return subprocess.run(["qemu-img", "compare", "-U", str(a), str(b)],
                          capture_output=True).returncode == 0


def qemu_io(path: Path, command: str) -> None:
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(path)], check=True,
                   capture_output=True)


def file_state(path: Path) -> tuple[str, int, int]:
    """The base's bytes and times: a write (or a chmod) would change them."""
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_ctime_ns


def run_json(*args: str) -> list[dict]:
    proc = snaptui(*args, "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture
def nova_like(conn: libvirt.virConnect, disk_dir: Path, tmp_path: Path):
    """A library holding a base image, Nova's cached copy of it (raw, named the sha1 of its id
    in a ``_base`` dir) and a shut-off domain whose disk is a qcow2 overlay over that copy,
    with some writes of its own; the disk belongs to the QEMU user, mode 0640."""
    library = ImageLibrary(tmp_path / "lib")
    base_image = add_image(library, make_disk(tmp_path / "base.qcow2", seed="8M",
                                              pattern=BASE_PATTERN),
                           name="snaptui-test-27b-base", disk_format="qcow2")
    cache = disk_dir / "_base"
    cache.mkdir(mode=0o755)
    base = cache / hashlib.sha1(base_image.id.encode()).hexdigest()
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(tmp_path / "base.qcow2"),
                    str(base)], check=True)
    base.chmod(0o644)
    name = "snaptui-test-27b-" + os.urandom(3).hex()
    disk = disk_dir / f"{name}-vda.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw",
                    str(disk)], check=True)
    qemu_io(disk, "write -q -P 0x11 16M 1M")
    qemu_user = pwd.getpwnam("libvirt-qemu")
    os.chown(disk, qemu_user.pw_uid, qemu_user.pw_gid)
    disk.chmod(0o640)
    conn.defineXML(domain_xml(name, [("vda", disk, "qcow2")]))
    lab = LabDomain(conn, name, [("vda", disk, "qcow2")])
    yield lab, library, base_image.id, base
    lab.remove()


def test_restore_over_the_cached_base_is_an_overlay_over_it(nova_like, tmp_path):
    lab, library, base_id, base = nova_like
    disk = lab.disk_path()
    lib = str(library.directory)
    snap = run_json("snapshot", lab.name, "--name", "snaptui-test-27b-snap", "--mode", "cold",
                    "--to", "library", "--library", lib, "--base-image", base_id)
    image = library.show(snap[-1]["image_id"])
    assert image.properties["base_image_ref"] == base_id
    snapshotted = tmp_path / "snapshotted.qcow2"  # the disk's content at the snapshot
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(snapshotted)],
                   check=True)
    qemu_io(disk, f"write -q -P {WRITTEN_PATTERN:#x} 0 2M")
    written = tmp_path / "written.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(written)], check=True)
    before = file_state(base)
    owner = disk.stat()

    dry = run_json("restore", image.id, "--domain", lab.name, "--library", lib, "--dry-run")
    assert any(f"qcow2 overlay over {base}" in n for n in dry[-1]["notes"]), dry[-1]["notes"]
    events = run_json("restore", image.id, "--domain", lab.name, "--library", lib, "--yes")
    assert events[-1]["event"] == "done", events[-3:]
    job_id = events[0]["job_id"]
    assert [s["name"] for s in events[0]["steps"]] == [
        "download:vda", "overlay:vda", "rebase:vda", "prepare:vda", "keep:vda", "swap:vda"]

    info = qemu_info(disk)
    assert info["format"] == "qcow2"
    assert info["full-backing-filename"] == str(base)
    assert info["backing-filename-format"] == "raw"
    assert same_content(disk, snapshotted)
    # only what differs from the base is in the overlay (1 MiB written over 8 MiB of base data)
    assert info["actual-size"] < qemu_info(Path(lib) / f"{image.id}.qcow2")["actual-size"] / 2
    st = disk.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (owner.st_uid, owner.st_gid, 0o640)
    assert file_state(base) == before  # shared: never written
    assert not [p for p in disk.parent.iterdir() if ".restore-" in p.name]

    undo = run_json("restore", "--undo", job_id, "--yes")
    assert undo[-1]["event"] == "done"
    assert same_content(disk, written)
    assert qemu_info(disk)["full-backing-filename"] == str(base)
    assert file_state(base) == before


def test_restore_is_flat_when_the_base_is_another_image(nova_like, tmp_path):
    lab, library, _, base = nova_like
    disk = lab.disk_path()
    lib = str(library.directory)
    other = add_image(library, make_disk(tmp_path / "other.qcow2", seed="4M", pattern=0x5A),
                      name="snaptui-test-27b-other", disk_format="qcow2",
                      properties={"base_image_ref": "0b7e5c2a-27b0-4d6e-9c1a-000000000000"})
    before = file_state(base)

    dry = run_json("restore", other.id, "--domain", lab.name, "--library", lib, "--dry-run")
    assert any("restored as one flat file (its base is not Nova's cached copy of the image's "
               "base_image_ref 0b7e5c2a" in n for n in dry[-1]["notes"]), dry[-1]["notes"]
    events = run_json("restore", other.id, "--domain", lab.name, "--library", lib, "--yes")
    assert events[-1]["event"] == "done", events[-3:]
    assert [s["name"] for s in events[0]["steps"]] == [
        "download:vda", "prepare:vda", "keep:vda", "swap:vda"]
    info = qemu_info(disk)
    assert "backing-filename" not in info and info["format"] == "qcow2"
    assert same_content(disk, tmp_path / "other.qcow2")
    assert file_state(base) == before


def test_a_failed_overlay_restore_is_undone_and_the_base_untouched(nova_like, monkeypatch):
    lab, library, base_id, base = nova_like
    disk = lab.disk_path()
    lib = str(library.directory)
    snap = run_json("snapshot", lab.name, "--name", "snaptui-test-27b-fault", "--mode", "cold",
                    "--to", "library", "--library", lib, "--base-image", base_id)
    qemu_io(disk, f"write -q -P {WRITTEN_PATTERN:#x} 0 2M")
    disk_before, base_before = file_state(disk), file_state(base)

    faults.install_in(monkeypatch, "start:create")  # libvirt refuses to start the guest
    proc = snaptui("restore", snap[-1]["image_id"], "--domain", lab.name, "--library", lib,
                   "--start", "--yes", "--json")
    assert proc.returncode == 1, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    undone = [e["step"] for e in events if e["event"] == "step_undone"]
    assert undone == ["start", "swap:vda", "keep:vda", "rebase:vda", "overlay:vda",
                      "download:vda"], undone
    assert file_state(disk)[0] == disk_before[0]
    assert file_state(base) == base_before
    assert sorted(p.name for p in disk.parent.iterdir()) == ["_base", disk.name]
    assert not lab.dom.isActive()
    # the CLI's outcome line says what kind of job failed
    console = Console(file=io.StringIO(), width=200)
    assert print_outcome(console, load_job(events[0]["job_id"])) == 1
    assert console.file.getvalue().startswith("restore failed: ")
