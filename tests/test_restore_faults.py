"""Faults during a restore, on the real lab: Glance lost mid-download, a full filesystem beside
the disk, the job SIGKILLed then recovered, a start refused after the swap. Each time the guest
keeps its complete old disk, and nothing of the restore is left beside it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_tools import snaptui
from fault_seam import snaptui_faults as faults
from fault_tools import fill, kill_job, tmpfs, wait_terminal, wait_until
from glance_proxy import FAULT_CLOUD, ProxiedCloud, Rule, start_proxied_cloud
from lab_domains import create_domain, make_disk

from snaptui.core.engine.journal import load_job
from snaptui.core.engine.states import JobStatus
from snaptui.core.images.glance import GlanceImages
from snaptui.core.images.library import ImageLibrary
from snaptui.core.images.store import add_image
from snaptui.core.models import ImageRecord

DATA = r"^/v2/images/[^/]+/file$"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()
                  if ".restore-" in p.name or ".pre-restore-" in p.name)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, os_cloud) -> Iterator[ProxiedCloud]:
    proxied = start_proxied_cloud(tmp_path_factory.mktemp("restore-cloud"), os_cloud)
    yield proxied
    proxied.stop()


@pytest.fixture(scope="module")
def glance_image(tmp_path_factory, os_cloud) -> Iterator[ImageRecord]:
    """One 8 MiB-of-data qcow2 image in the lab's Glance for every case of the module."""
    store = GlanceImages.from_cloud(os_cloud)
    path = make_disk(tmp_path_factory.mktemp("restore-image") / "image.qcow2", size="64M",
                     seed="8M", pattern=0xCD)
    image = add_image(store, path, name="snaptui-test-27-faults", disk_format="qcow2")
    yield image
    store.delete(image.id)


@pytest.fixture
def via_proxy(cloud, monkeypatch) -> ProxiedCloud:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(cloud.config_file))
    yield cloud
    cloud.glance.reset_rules()


def restore(image_id: str, domain: str, *extra: str):
    return snaptui("restore", image_id, "--domain", domain, "--os-cloud", FAULT_CLOUD,
                   "--yes", "--json", *extra)


def launched(proc) -> str:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])["job_id"]


def assert_old_disk_kept(disk: Path, before: str, job_id: str) -> None:
    job = load_job(job_id)
    assert job.status in (JobStatus.FAILED, JobStatus.CANCELLED), job.status
    assert not job.undo_failed, [s.error for s in job.steps]
    assert digest(disk) == before
    assert leftovers(disk.parent) == []


def test_glance_lost_mid_download(make_domain, glance_image, via_proxy):
    lab = make_domain()
    disk = lab.disk_path()
    before = digest(disk)
    via_proxy.glance.add(Rule("GET", DATA, "cut", after=1 << 20))
    proc = restore(glance_image.id, lab.name)
    assert proc.returncode == 1, proc.stderr
    last = json.loads(proc.stdout.splitlines()[-1])
    assert last["event"] == "failed" and "downloading image" in last["error"]
    assert_old_disk_kept(disk, before, json.loads(proc.stdout.splitlines()[0])["job_id"])


def test_full_filesystem_beside_the_disk(conn, tmp_path, glance_image, via_proxy):
    with tmpfs(tmp_path / "small", "40M", mode=0o711) as small:
        lab = create_domain(conn, small, fmt="qcow2", size="64M", seed="16M")
        try:
            disk = lab.disk_path()
            before = digest(disk)
            hold = via_proxy.glance.add(Rule("GET", DATA, "hold"))
            job_id = launched(restore(glance_image.id, lab.name, "--detach"))
            hold.wait_arrived()
            filler = fill(small, leave_free=512 * 1024)
            hold.release()
            job = wait_terminal(job_id)
            assert "No space left" in (job.error or ""), job.error
            filler.unlink()
            assert_old_disk_kept(disk, before, job_id)
        finally:
            lab.remove()


def test_sigkill_mid_download_then_recover(make_domain, glance_image, via_proxy):
    lab = make_domain()
    disk = lab.disk_path()
    before = digest(disk)
    hold = via_proxy.glance.add(Rule("GET", DATA, "hold"))
    job_id = launched(restore(glance_image.id, lab.name, "--detach"))
    hold.wait_arrived()
    wait_until(lambda: leftovers(disk.parent), 30, "the partial file beside the disk")
    kill_job(job_id)
    hold.release()
    assert digest(disk) == before  # the path never named anything but the old disk
    listed = snaptui("jobs", "--json")  # every command recovers dead jobs first
    assert f"recovered job {job_id}" in listed.stderr
    assert load_job(job_id).recovered
    assert_old_disk_kept(disk, before, job_id)


def test_start_refused_after_the_swap_puts_the_old_disk_back(make_domain, tmp_path,
                                                           monkeypatch):
    lab = make_domain()
    disk = lab.disk_path()
    before = digest(disk)
    library = ImageLibrary(tmp_path / "lib")
    image = add_image(library, make_disk(tmp_path / "image.qcow2", size="64M", seed="8M",
                                         pattern=0xCD), name="img", disk_format="qcow2")
    faults.install_in(monkeypatch, "start:create")
    proc = snaptui("restore", image.id, "--domain", lab.name, "--library", str(tmp_path / "lib"),
                   "--start", "--yes", "--json")
    assert proc.returncode == 1
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    undone = [e["step"] for e in events if e["event"] == "step_undone"]
    assert undone == ["start", "swap:vda", "keep:vda", "download:vda"], undone
    assert_old_disk_kept(disk, before, events[0]["job_id"])
    assert not lab.dom.isActive()
