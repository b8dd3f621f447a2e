"""Undo only acts on what it can prove is its own (issue 23): a block or backup job is aborted
only when its destination is the plan's file, a saved guest is restarted only while it is
still in the managed-saved state the job left it in, and a non-SSH remote URI is refused for
anything that touches disks.

Real lab guests; the operator's block copy and backup are started with libvirt directly, as
`virsh blockcopy` / `virsh backup-begin` would; the undos are the steps' own, run as recover
runs them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libvirt
import pytest
from host_dirs import SCRATCH_BASE

from snaptui.core.engine.execute import make_context
from snaptui.core.engine.jobs import prepare, write_header
from snaptui.core.engine.journal import JournalWriter, journal_path, load_job
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.recover import recover
from snaptui.core.engine.workflows import build_steps
from snaptui.core.errors import BadInput
from snaptui.core.libvirt import qemu_access

REPO = Path(__file__).resolve().parent.parent


def _plan(lab, tmp_path: Path, mode: Mode, cloud: str | None = None):
    where = {"destination": "glance", "cloud": cloud, "stream": "on"} if cloud else \
        {"destination": "library", "library_dir": str(tmp_path / "lib")}
    request = SnapshotRequest(domain=lab.name, name="snaptui-test-owned", mode=mode, **where)
    plan, steps = asyncio.run(prepare(request))
    return plan, request, steps


def _run_undo(plan, step_name: str, facts: dict) -> None:
    step = next(s for s in build_steps(plan) if s.name == step_name)
    assert step.undo is not None
    journal = JournalWriter(journal_path(plan.job_id))
    try:
        ctx = make_context(plan, journal, facts=facts)
        ctx.undoing = True
        asyncio.run(step.undo(ctx))
    finally:
        journal.close()


def test_block_copy_undo_leaves_an_operators_block_job(make_domain, tmp_path, disk_dir):
    lab = make_domain(state="running", size="64M", seed="16M")
    plan, _, _ = _plan(lab, tmp_path, Mode.LIVE)
    theirs = disk_dir / "operator-copy.qcow2"
    xml = f"<disk type='file'><driver type='qcow2'/><source file='{theirs}'/></disk>"
    lab.dom.blockCopy("vda", xml, None, libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
    try:
        assert lab.dom.blockJobInfo("vda", 0)
        _run_undo(plan, "copy:vda", {"block_job:vda": True})
        assert lab.dom.blockJobInfo("vda", 0), "the operator's block copy was aborted"
    finally:
        if lab.dom.blockJobInfo("vda", 0):
            lab.dom.blockJobAbort("vda", 0)


@pytest.mark.parametrize("streamed", [False, True], ids=["push", "stream"])
def test_backup_undo_leaves_an_operators_backup(make_domain, tmp_path, disk_dir, streamed,
                                                 os_cloud, monkeypatch):
    lab = make_domain(state="running", size="64M", seed="16M")
    if streamed:  # the per-test scratch path is too long for the NBD socket's sun_path
        short = Path(tempfile.mkdtemp(prefix="s", dir=SCRATCH_BASE))
        short.chmod(0o711)
        monkeypatch.setenv("SNAPTUI_SCRATCH_DIR", str(short))
    plan, _, _ = _plan(lab, tmp_path, Mode.BACKUP, os_cloud if streamed else None)
    assert plan.stream == streamed
    sock_dir = disk_dir / "operator-nbd"
    qemu_access.make_socket_dir(sock_dir, qemu_access.from_domain_xml(lab.dom.XMLDesc(0)))
    backup = (f"<domainbackup mode='pull'><server transport='unix' socket='{sock_dir}/s'/>"
              f"<disks><disk name='vda' backup='yes' type='file'>"
              f"<scratch file='{disk_dir}/operator-scratch.qcow2'/></disk></disks>"
              "</domainbackup>")
    lab.dom.backupBegin(backup, None, 0)
    try:
        step = "export" if plan.stream else "backup"
        _run_undo(plan, step, {"backup_job": True})
        lab.dom.backupGetXMLDesc(0)  # raises when the operator's backup was aborted
    finally:
        try:
            lab.dom.abortJob()
        except libvirt.libvirtError:
            pass
        if streamed:
            shutil.rmtree(os.environ["SNAPTUI_SCRATCH_DIR"], ignore_errors=True)


def _dead_after_save(lab, tmp_path: Path) -> str:
    """A cold job that saved the guest (a real managedSave) and died."""
    plan, request, steps = _plan(lab, tmp_path, Mode.COLD)
    journal = write_header(plan, request, steps)
    journal.append("pid", pid=1 << 22)
    journal.append("step_started", step="save")
    journal.append("fact", key="guest_stopped_at", value=time.time())
    journal.append("fact", key="guest_paused_by_us", value=True)
    lab.dom.managedSave(0)
    journal.append("fact", key="guest_saved", value=True)
    journal.append("step_finished", step="save")
    journal.close()
    return plan.job_id


def test_save_undo_leaves_a_guest_the_operator_shut_down(make_domain, tmp_path):
    lab = make_domain(state="running", size="64M", seed="16M")
    job_id = _dead_after_save(lab, tmp_path)
    # The operator starts the guest from its save, then shuts it down on purpose.
    lab.dom.create()
    lab.dom.destroy()
    assert not lab.dom.hasManagedSaveImage(0)
    outcomes = dict(recover())
    assert outcomes[job_id].startswith("rolled back"), outcomes
    assert not lab.dom.isActive(), "recover started a guest the operator had shut down"
    notes = " ".join(load_job(job_id).notes)
    assert "left shut off" in notes, notes


def test_save_undo_still_restarts_the_guest_it_saved(make_domain, tmp_path):
    lab = make_domain(state="running", size="64M", seed="16M")
    job_id = _dead_after_save(lab, tmp_path)
    outcomes = dict(recover())
    assert outcomes[job_id] == "rolled back", outcomes
    assert lab.dom.isActive() and not lab.dom.hasManagedSaveImage(0)


@pytest.mark.parametrize("uri", ["qemu+tls://127.0.0.1/system", "qemu+tcp://127.0.0.1/system",
                                 "qemu+libssh2://root@127.0.0.1/system",
                                 "qemu://127.0.0.1/system"])
def test_non_ssh_remote_uri_is_refused_for_disks(uri, lab_env):
    with pytest.raises(BadInput, match="qemu\\+ssh"):
        asyncio.run(prepare(SnapshotRequest(domain="any", name="img", uri=uri)))
    proc = subprocess.run([sys.executable, "-m", "snaptui", "-c", uri, "snapshot", "any",
                           "--name", "img", "--dry-run"], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env=dict(os.environ),
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "qemu+ssh" in proc.stderr
