"""snaptui as an operator runs it on a stock host: as root, with no SNAPTUI_* variables, on a
guest whose QEMU runs as the lab's user (libvirt-qemu:kvm unless the lab was started with
another). The default mode streams, live and backup work, a real guest's image is verified,
each image equals the disk, the disk's owner never changes, and the default scratch dir
(/var/lib/snaptui/scratch) holds nothing of the job afterwards."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import lab_guests
import libvirt
import pytest
import qemu_users
from cli_tools import snaptui

from snaptui.core.paths import SYSTEM_SCRATCH

pytestmark = pytest.mark.lab
guest_artefacts = lab_guests.guest_artefacts
make_guest = lab_guests.make_guest


@pytest.fixture
def operator_env(tmp_path: Path) -> dict[str, Any]:
    """How cli_tools.snaptui runs the CLI as root's shell would: a fresh home (its state dir
    inside, 0700) and no SNAPTUI_* (or XDG_*) variables."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return {"env": {"HOME": str(home)},
            "unset": [k for k in os.environ if k.startswith(("SNAPTUI_", "XDG_"))]}



def _events(proc: subprocess.CompletedProcess[str]) -> tuple[str, dict]:
    """The job's id and its last event, from ``snapshot --json``."""
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    job_id = next(e["job_id"] for e in events if e.get("event") == "job")
    return job_id, events[-1]


def _left_in_scratch(job_id: str) -> list[str]:
    return [p.name for p in SYSTEM_SCRATCH.iterdir() if p.name.startswith(job_id)]


@pytest.mark.parametrize("mode", ["auto", "live", "backup"])
def test_snapshot_of_a_running_guest_with_no_settings(operator_env, make_domain, store,
                                                      own_images, tmp_path, mode):
    lab = make_domain(state="running", size="96M", seed="24M")
    disk = lab.disk_path()
    owner = qemu_users.ownership(disk)
    assert owner[0] == qemu_users.qemu_process_uid(lab.name)
    # reading a disk QEMU owns changes nothing
    for argv in (("info", lab.name, "--json"), ("domains", "--json"),
                 ("cleanup", "--dry-run", "--json", "--only", "internal,scratch")):
        proc = snaptui(*argv, **operator_env)
        assert proc.returncode == 0, proc.stderr
        assert qemu_users.ownership(disk) == owner
    proc = snaptui("snapshot", lab.name, "--name", f"snaptui-test-defaults-{mode}",
                   "--mode", mode, "--format", "raw", "--json", **operator_env)
    job_id, result = _events(proc)
    own_images.extend(i["image_id"] for i in result.get("images", []))
    assert proc.returncode == 0 and result["event"] == "done", proc.stderr + str(result)
    assert result["mode"] == ("backup" if mode == "auto" else mode)
    [image] = result["images"]
    if mode == "auto":
        assert store.show(image["image_id"]).properties["snaptui_method"] == "backup-stream"
    out = tmp_path / "image.raw"
    with open(out, "wb") as fh:
        store.download(image["image_id"], fh)
    compare = subprocess.run(["qemu-img", "compare", "-U", "-F", "raw", str(disk), str(out)],
                             capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert qemu_users.ownership(disk) == owner
    assert _left_in_scratch(job_id) == []
    # the default scratch dir: QEMU may enter it, nobody may list it
    assert SYSTEM_SCRATCH.stat().st_mode & 0o777 == 0o711


def test_real_guest_verified_with_no_settings(operator_env, make_guest, store, own_images,
                                              tmp_path):
    guest = make_guest(agent=True)
    guest.wait_userspace()
    owner = qemu_users.ownership(guest.spec.disk)
    kept = tmp_path / "kept.qcow2"
    proc = snaptui("snapshot", guest.name, "--name", "snaptui-test-defaults-verify",
                   "--mode", "live", "--verify", "--keep-local", str(kept), "--json",
                   **operator_env)
    job_id, result = _events(proc)
    own_images.extend(i["image_id"] for i in result.get("images", []))
    assert proc.returncode == 0 and result["event"] == "done", proc.stderr + str(result)
    [image] = result["images"]
    assert store.show(image["image_id"]).properties["snaptui_verified"] in ("agent", "console")
    assert guest.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert qemu_users.ownership(guest.spec.disk) == owner
    assert _left_in_scratch(job_id) == []
    # the verify domain's backing file was the image: libvirt chowned it to QEMU and, as a
    # read-only chain member, never gave it back; snaptui did
    assert qemu_users.ownership(kept) == (0, 0, 0o600)
