"""Restore on a fleet host: the lab's sshd stands in for a second hypervisor ("lab2", the same
libvirtd seen through ``qemu+ssh://``; snaptui there has its own state dir and no cloud
configuration, tests/fleet_tools.py). The job runs and is journaled there, on the login sent
through the SSH channel; its events come back here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fleet_tools import HOST, Fleet, json_lines, snaptui

from snaptui.core.engine.journal import fold, read_events

pytestmark = pytest.mark.lab


def same_content(a: Path, b: Path) -> bool:
    return subprocess.run(["qemu-img", "compare", "-U", str(a), str(b)],
                          capture_output=True).returncode == 0


def test_snapshot_change_restore_and_undo_on_the_second_host(fleet: Fleet, make_domain, store,
                                                             own_images, tmp_path) -> None:
    lab = make_domain(fmt="qcow2", size="64M", seed="8M")
    disk = lab.disk_path()
    snap = snaptui("snapshot", f"{HOST}:{lab.name}", "--name", f"27b-fleet-{lab.name[-8:]}",
                   "--json")
    assert snap.returncode == 0, snap.stderr
    image_id = json_lines(snap.stdout)[-1]["image_id"]
    own_images.append(image_id)
    image = tmp_path / "image.qcow2"
    with image.open("wb") as out:
        store.download(image_id, out)

    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -q -P 0x5a 0 4M", str(disk)],
                   check=True, capture_output=True)
    changed = tmp_path / "changed.qcow2"
    subprocess.run(["cp", str(disk), str(changed)], check=True)
    assert not same_content(disk, image)

    bare = snaptui("restore", image_id, "--domain", lab.name, "--yes")  # which host?
    assert bare.returncode == 2 and f"HOST:{lab.name}" in bare.stderr

    dry = snaptui("restore", image_id, "--domain", f"{HOST}:{lab.name}", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(f"# on {HOST}: preflight passed")
    assert f"openstack image save --file {disk.parent}/." in dry.stdout

    proc = snaptui("restore", f"{HOST}:{image_id}", "--domain", lab.name, "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    events = json_lines(proc.stdout)
    assert all(e["host"] == HOST for e in events)
    assert events[0]["kind"] == "restore" and events[-1]["event"] == "done"
    assert any(e["event"] == "progress" for e in events)  # streamed back as it went
    job_id = events[0]["job_id"]
    assert same_content(disk, image)  # the disk's bytes are the image's
    journal = fleet.remote_journal(job_id)
    assert fold(job_id, journal, read_events(journal)).status == "done"
    assert not (Path(os.environ["SNAPTUI_STATE_DIR"]) / "jobs" / f"{job_id}.jsonl").exists()

    undo = snaptui("restore", "--undo", f"{HOST}:{job_id}", "--yes")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert f"restore {job_id} undone on {lab.name}" in undo.stdout
    assert same_content(disk, changed)
    assert not Path(f"{disk}.pre-restore-{job_id}").exists()


def test_remote_restore_arguments_parse_back_to_the_same_request() -> None:
    """What the host's snaptui parses is the request asked for here: names that look like
    options or carry spaces stay names; the login is a flag, never a value."""
    from snaptui.cli import parse_args
    from snaptui.cli.restore import request_from_args
    from snaptui.core.fleet.hosts import HostSpec
    from snaptui.core.restore.plan import RestoreRequest
    from snaptui.core.restore.remote import restore_args

    host = HostSpec("lab2", "qemu+ssh://root@127.0.0.1:22422/system")
    for request in (RestoreRequest(image="-x it's", domain="--web 1", disk="vdb", shutdown=True,
                                   timeout=90.0, force=True, start=True),
                    RestoreRequest(image="img", as_name="-new", memory_mib=256, vcpus=2,
                                   overlay=True, directory="/d d"),
                    RestoreRequest(undo_job="20261207-065443-3fa2c1", start=True)):
        argv = restore_args(host, request, auth=not request.undo_job, yes=True)
        args = parse_args(argv)
        assert args.uri == "qemu:///system" and args.yes
        assert args.auth_stdin is (not request.undo_job)
        back = request_from_args(args)
        wanted = {**request.to_json(), "uri": "qemu:///system",
                  "source": None if request.undo_job else "glance"}
        assert back.to_json() == wanted
