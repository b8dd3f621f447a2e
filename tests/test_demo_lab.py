"""The demo lab: test:/// driver domains over real disk files, and a real cold snapshot on it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from snaptui.core.demo.lab import DOMAINS, LIBRARY_IMAGES, build_demo_lab
from snaptui.core.disk import qemu_img
from snaptui.core.engine.jobs import follow, get_job, prepare, run_inline
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.preflight.checks import available_modes
from snaptui.core.images.library import ImageLibrary
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DomainState


@pytest.fixture
def lab(tmp_path: Path):
    return build_demo_lab(tmp_path / "demo")


@pytest.fixture
def host(lab):
    with LibvirtHost(lab.uri).connect() as host:
        yield host


def test_domains_list_with_states_and_real_disks(host: LibvirtHost) -> None:
    assert host.is_test_driver
    domains = {d.name: d for d in host.list_domains()}
    assert set(domains) == {d.name for d in DOMAINS}
    assert domains["api-gateway"].state == DomainState.RUNNING
    assert domains["staging-ci"].state == DomainState.PAUSED
    assert domains["legacy-raw"].state == DomainState.SHUTOFF
    assert domains["mail-relay"].state == DomainState.SAVED
    assert [d.target for d in domains["api-gateway"].disks] == ["vda", "vdb"]
    for dom in domains.values():
        for disk in dom.disks:
            assert disk.path and Path(disk.path).is_file()
    assert domains["legacy-raw"].disks[0].format == "raw"


async def test_disk_files_have_the_advertised_shapes(host: LibvirtHost) -> None:
    domains = {d.name: d for d in host.list_domains()}
    staging = await qemu_img.info(domains["staging-ci"].disks[0].path, force_share=True)
    assert [s.name for s in staging.snapshots] == ["before-upgrade", "nightly-0514"]
    db = await qemu_img.info(domains["db-primary"].disks[0].path, force_share=True)
    assert db.backing_file and db.backing_file.endswith("debian-12-base.qcow2")
    assert len(db.backing_chain) == 1
    raw = await qemu_img.info(domains["legacy-raw"].disks[0].path, fmt="raw")
    assert raw.format == "raw" and raw.virtual_size == 16 << 30
    infos = [await qemu_img.info(d.disks[0].path, force_share=True) for d in domains.values()]
    sizes = {i.virtual_size for i in infos}
    assert len(sizes) >= 4  # sized like real guests: 16-60 GiB
    assert min(sizes) >= 16 << 30 and max(sizes) <= 60 << 30
    # ... in sparse files: the whole lab stays small on disk
    assert all(i.actual_size < 64 << 20 for i in infos)


async def test_a_nova_instance_over_an_image_cache_base(host: LibvirtHost) -> None:
    nova = host.get_domain("instance-0000002a")
    assert nova.base_image_ref == LIBRARY_IMAGES[0][0]  # from its <nova:instance> metadata
    path = nova.disks[0].path
    assert path.endswith(f"/nova/instances/{nova.uuid}/disk")
    info = await qemu_img.info(path, force_share=True)
    assert info.virtual_size == 40 << 30
    assert info.backing_file and "/nova/instances/_base/" in info.backing_file
    assert info.backing_chain[0].format == "raw"


def test_library_seeded_with_fixed_ids_and_a_snapshot_of_a_demo_domain(lab) -> None:
    images = list(ImageLibrary(lab.library_dir).iter_images())
    assert [i.id for i in images] == [i[0] for i in LIBRARY_IMAGES]
    assert all(i.status == "active" and i.location for i in images)
    uuids = {d.uuid for d in DOMAINS}
    assert any(i.is_snapshot and i.instance_uuid in uuids for i in images)


def test_build_is_idempotent(tmp_path: Path) -> None:
    first = build_demo_lab(tmp_path / "d")
    stamps = {p.name: p.stat().st_mtime_ns for p in first.disk_dir.iterdir()}
    second = build_demo_lab(tmp_path / "d")
    assert second == first
    assert {p.name: p.stat().st_mtime_ns for p in second.disk_dir.iterdir()} == stamps


def test_test_driver_modes_are_honest(host: LibvirtHost) -> None:
    info = host.get_domain("api-gateway")
    modes = available_modes(info, host)
    assert modes[Mode.COLD] is None and modes[Mode.INTERNAL] is None
    assert modes[Mode.LIVE] and "test" in modes[Mode.LIVE].lower()
    raw = available_modes(host.get_domain("legacy-raw"), host)
    assert raw[Mode.INTERNAL] and "qcow2" in raw[Mode.INTERNAL]


async def test_cold_snapshot_runs_for_real_on_the_demo(lab, host: LibvirtHost) -> None:
    store = ImageLibrary(lab.library_dir)
    before = {i.id for i in store.iter_images()}
    request = SnapshotRequest(domain="web-frontend", name="web-frontend-demo", mode=Mode.COLD,
                              destination="library", uri=lab.uri,
                              library_dir=str(lab.library_dir))
    plan, steps = await prepare(request, host=host, store=store)
    assert plan.mode == Mode.COLD
    job_id = run_inline(plan, request, steps, host=host, store=store)
    events = await asyncio.to_thread(lambda: list(follow(job_id, timeout_s=60)))
    assert events[-1]["event"] == "done", events[-3:]
    job = get_job(job_id)
    assert job.status == "done"
    assert all(s.state == "done" for s in job.steps)
    # The guest came back to running on the same (in-process) test driver connection.
    assert host.get_domain("web-frontend").state == DomainState.RUNNING
    new = [i for i in store.iter_images() if i.id not in before]
    assert [i.name for i in new] == ["web-frontend-demo"]
    assert new[0].instance_uuid == host.get_domain("web-frontend").uuid
    source = host.get_domain("web-frontend").disks[0].path
    assert await qemu_img.compare(source, new[0].location, force_share=True)
