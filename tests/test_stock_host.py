"""Every mode with QEMU as a stock host runs it: Debian/Ubuntu's libvirt-qemu:kvm, RHEL's
qemu:qemu, and root (some operators), libvirt's DAC driver with dynamic_ownership and
remember_owner on, guest disks 0600 root in a libvirt-style images directory.

Each job's image is downloaded from Glance and compared with the disk; the disk keeps the owner
and mode libvirt gave it while the guest runs, and gets root's back when the guest stops; the
scratch dir is empty after. A scratch dir QEMU cannot enter is refused in preflight (one line,
naming the directory, QEMU's user and the fix) with the guest untouched, and auto falls back
to cold saying why; with QEMU as root the same directory is fine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import libvirt
import pytest
import qemu_users
from cli_tools import snaptui
from fault_tools import timeline

from snaptui.core.engine.jobs import follow, launch, prepare
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.paths import scratch_dir

MATRIX = [("stream", "raw"), ("stream", "qcow2"), ("live", "raw"), ("live", "qcow2"),
          ("backup", "raw"), ("backup", "qcow2"), ("cold", "qcow2"), ("internal", "raw")]
NOBODY = 65534

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module", params=qemu_users.USERS)
def qemu_user(request: pytest.FixtureRequest, lab_env) -> str:
    """libvirtd runs QEMU as this user for the module's tests; the lab's user again after."""
    before = qemu_users.current()
    qemu_users.switch(request.param)
    yield request.param
    qemu_users.switch(before)


def _request(name: str, mode: str, fmt: str) -> SnapshotRequest:
    if mode == "stream":
        return SnapshotRequest(domain=name, name=f"snaptui-test-stock-{mode}", mode=Mode.BACKUP,
                               stream="on", out_format=fmt, destination="glance")
    return SnapshotRequest(domain=name, name=f"snaptui-test-stock-{mode}", mode=Mode(mode),
                           stream="off", out_format=fmt, destination="glance")


@pytest.mark.parametrize(("mode", "fmt"), MATRIX, ids=[f"{m}-{f}" for m, f in MATRIX])
def test_mode_with_qemu_as_a_stock_host_runs_it(qemu_user, make_domain, store, own_images,
                                                tmp_path, mode, fmt):
    lab = make_domain(state="running", size="64M", seed="16M")
    uid = qemu_users.uid_of(qemu_user)
    assert qemu_users.qemu_process_uid(lab.name) == uid
    who = LibvirtHost(os.environ["LIBVIRT_DEFAULT_URI"]).qemu_identity(lab.name)
    assert who is not None and who.uid == uid
    disk = lab.disk_path()
    running_owner = qemu_users.ownership(disk)
    assert running_owner[0] == uid and running_owner[2] == 0o600  # libvirt chowned it
    request = _request(lab.name, mode, fmt)
    plan, steps = asyncio.run(prepare(request))
    job_id = launch(plan, request, steps)
    last = list(follow(job_id, timeout_s=180))[-1]
    assert last["event"] == "done", timeline(job_id)
    [image] = last["images"]
    own_images.append(image["image_id"])
    out = tmp_path / f"image.{fmt}"
    with open(out, "wb") as fh:
        store.download(image["image_id"], fh)
    compare = subprocess.run(["qemu-img", "compare", "-U", "-F", fmt, str(disk), str(out)],
                             capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert qemu_users.ownership(disk) == running_owner
    assert list(scratch_dir().iterdir()) == []
    lab.set_state("shut off")
    assert qemu_users.ownership(disk) == (0, 0, 0o600)  # remember_owner: root's again


def test_scratch_qemu_cannot_enter_is_refused_before_the_guest_is_touched(
        qemu_user, make_domain, host_dirs, monkeypatch):
    lab = make_domain(state="running")
    private = host_dirs.scratch() / "private"
    private.mkdir(mode=0o700)
    os.chown(private, NOBODY, NOBODY)  # another user's 0700 directory
    monkeypatch.setenv("SNAPTUI_SCRATCH_DIR", str(private))
    xml, owner = lab.dom.XMLDesc(0), qemu_users.ownership(lab.disk_path())
    if qemu_user == "root":  # QEMU as root enters it: live is planned
        proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-x", "--mode", "live",
                    "--to", "glance", "--dry-run")
        assert proc.returncode == 0, proc.stderr
        return
    for args in (("--mode", "live"), ("--mode", "backup"), ("--stream",),
                 ("--mode", "cold", "--verify")):
        proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-x", "--to", "glance", *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (args, proc.stderr)
        assert f"QEMU ({qemu_user}:" in lines[0] and f"cannot enter {private}" in lines[0]
        assert "SNAPTUI_SCRATCH_DIR" in lines[0] and "chmod" in lines[0], lines[0]
        assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and lab.dom.XMLDesc(0) == xml
        assert qemu_users.ownership(lab.disk_path()) == owner
        assert list(private.iterdir()) == []
    # auto knows live and backup would fail this way: it falls back to cold and says why
    proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-x", "--to", "glance", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "auto chose cold: QEMU (" in proc.stdout and f"cannot enter {private}" in proc.stdout



def test_lab_looks_like_a_stock_host() -> None:
    """The lab's /dev/kvm is as udev leaves it; guest disks sit where libvirt keeps them."""
    kvm = Path("/dev/kvm")
    if kvm.exists():
        st = kvm.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o660)
        import grp

        assert grp.getgrgid(st.st_gid).gr_name == "kvm"
    conf = Path("/etc/libvirt/qemu.conf").read_text()
    assert "dynamic_ownership = 1" in conf and "remember_owner = 1" in conf
