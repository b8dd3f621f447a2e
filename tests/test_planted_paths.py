"""A shared scratch dir (docs/usage.md allows ``SNAPTUI_SCRATCH_DIR=/var/tmp``) must not let another
user steer root's writes: every file snaptui creates is created O_EXCL, and the --keep-local copy
is linked into place, never written through a link planted after preflight.

Each case plants a symlink at a path the job is about to create (read from the plan, as an
attacker watching the directory could guess it) pointing at a victim file; the job must fail
cleanly with the victim byte-identical and the guest as it was."""

from __future__ import annotations

import asyncio
import os

import libvirt
import pytest
from fault_tools import timeline

from snaptui.core.engine.jobs import follow, launch, prepare
from snaptui.core.engine.plan import Mode, SnapshotRequest

pytestmark = pytest.mark.lab

VICTIM_TEXT = b"not snaptui's file\n"


def _run(request: SnapshotRequest, plant) -> tuple[str, dict]:
    plan, steps = asyncio.run(prepare(request))
    plant(plan)
    job_id = launch(plan, request, steps)
    return job_id, list(follow(job_id, timeout_s=180))[-1]


@pytest.mark.parametrize("mode", ["cold", "live", "backup"])
def test_link_planted_at_a_scratch_path_is_not_written_through(make_domain, tmp_path, mode):
    lab = make_domain(state="running")
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM_TEXT)
    request = SnapshotRequest(domain=lab.name, name="snaptui-test-planted", mode=Mode(mode),
                              stream="off", out_format="qcow2", destination="library",
                              library_dir=str(tmp_path / "lib"))

    def plant(plan) -> None:
        disk = plan.disks[0]
        target = {"cold": disk.output_path, "live": disk.delta_path,
                  "backup": disk.backup_path}[mode]
        os.symlink(victim, target)

    job_id, last = _run(request, plant)
    assert last["event"] == "failed", timeline(job_id)
    assert "exists already" in str(last.get("error")), last
    assert victim.read_bytes() == VICTIM_TEXT
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_keep_local_planted_after_preflight_is_not_overwritten(make_domain, tmp_path):
    lab = make_domain(state="shut off")
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM_TEXT)
    keep = tmp_path / "kept.qcow2"
    request = SnapshotRequest(domain=lab.name, name="snaptui-test-planted-keep", mode=Mode.COLD,
                              out_format="qcow2", destination="library",
                              library_dir=str(tmp_path / "lib"), keep_local=str(keep))
    job_id, last = _run(request, lambda plan: os.symlink(victim, keep))
    assert last["event"] == "failed", timeline(job_id)
    assert "appeared during the job" in str(last.get("error")), last
    assert victim.read_bytes() == VICTIM_TEXT and keep.is_symlink()
    assert not list((tmp_path / "lib").glob("*.qcow2"))  # the rollback removed the image
