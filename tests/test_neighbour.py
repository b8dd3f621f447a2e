"""A job as a good neighbour, on the real lab: its priority (``--priority``), its bandwidth cap
(``--bwlimit``) on qemu-img, the block copy and the upload, and the dashboard's default."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import libvirt
import pytest
from cli_tools import snaptui
from fault_tools import wait_until

from snaptui.core.engine.journal import load_job
from snaptui.core.engine.plan import SnapshotRequest
from snaptui.core.engine.reservations import reserved
from snaptui.core.images.library import ImageLibrary
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.paths import scratch_dir

MIB = 1024 * 1024


def nice_of(pid: int) -> int:
    """Field 19 of /proc/PID/stat."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def ionice_of(pid: int) -> str:
    return subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True,
                          check=True).stdout.strip()


def children_named(pid: int, comm: str) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        name = stat.split("(", 1)[1].rsplit(")", 1)[0]
        if name == comm and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(proc.name))
    return found


def step_seconds(job_id: str, step: str) -> float:
    s = load_job(job_id).step(step)
    assert s.started and s.finished, (step, s.state)
    return s.finished - s.started


EXPECTED = {  # --priority: (nice, `ionice -p` output)
    "low": (10, "best-effort: prio 7"),
    "idle": (19, "idle"),
}


@pytest.mark.parametrize("priority", ["low", "idle", "normal"])
def test_job_and_its_qemu_img_run_at_the_chosen_priority(make_domain, tmp_path, priority):
    """A capped convert (32 MiB of data at 4 MiB/s) runs long enough to look at the job's
    process and its qemu-img child while they work; then the job is cancelled."""
    lab = make_domain(state="shut off", size="64M", seed="32M")
    args = ["snapshot", lab.name, "--name", "snaptui-test-prio", "--mode", "cold",
            "--to", "library", "--library", str(tmp_path / "lib"), "--bwlimit", "4M",
            "--detach"]
    if priority != "low":  # low is the default: no flag
        args += ["--priority", priority]
    proc = snaptui(*args)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    pid = wait_until(lambda: load_job(job_id).pid, 30, "the job's pid")
    child = wait_until(lambda: children_named(pid, "qemu-img"), 30, "the job's qemu-img")[0]
    argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
    assert argv[1] == b"convert" and b"-r" in argv
    assert argv[argv.index(b"-r") + 1] == str(4 * MIB).encode()
    if priority == "normal":
        expected = (nice_of(os.getpid()), ionice_of(os.getpid()))
    else:
        expected = EXPECTED[priority]
    for one in (pid, child):
        assert (nice_of(one), ionice_of(one)) == expected, (priority, one)
    assert any(n.startswith(f"priority {priority}") for n in load_job(job_id).notes)
    assert snaptui("cancel", job_id).returncode == 0
    wait_until(lambda: load_job(job_id).terminal, 60, "the job's end")
    assert load_job(job_id).status == "cancelled"
    assert list(scratch_dir().iterdir()) == []
    assert reserved() == {}


def test_bwlimit_caps_convert_and_upload(make_domain, tmp_path):
    """32 MiB of data under an 8 MiB/s cap: neither the convert nor the upload goes faster
    than the cap (+20 % for qemu-img's first time slice); the image is whole."""
    lab = make_domain(state="shut off", size="64M", seed="32M")
    cap = 8 * MIB
    proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-bw", "--mode", "cold",
                   "--to", "library", "--library", str(tmp_path / "lib"), "--bwlimit", "8M",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    done = events[-1]
    assert done["event"] == "done"
    job_id = events[0]["job_id"]
    convert = [s["command"] for s in events[0]["steps"] if s["name"] == "convert:vda"][0]
    assert f"-r {cap} " in convert
    data = 32 * MIB
    assert data / step_seconds(job_id, "convert:vda") <= cap * 1.2
    uploaded = done["sizes"]["uploaded"]
    assert uploaded >= data
    assert uploaded / step_seconds(job_id, "upload:vda") <= cap * 1.2
    image = ImageLibrary(tmp_path / "lib").show(done["image_id"])
    assert image.size == uploaded
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF


def test_bwlimit_reaches_the_block_copy(make_domain, tmp_path):
    """Live mode: libvirt's block job runs at the cap (blockJobInfo's bandwidth in bytes)."""
    lab = make_domain(state="running", size="64M", seed="32M")
    proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-bwcopy", "--mode", "live",
                   "--to", "library", "--library", str(tmp_path / "lib"), "--bwlimit", "2M",
                   "--detach")
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()

    def copy_info():
        try:
            return lab.dom.blockJobInfo("vda", libvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES)
        except libvirt.libvirtError:
            return None

    info = wait_until(copy_info, 30, "the block copy")
    assert info["bandwidth"] == 2 * MIB
    assert snaptui("cancel", job_id).returncode == 0
    wait_until(lambda: load_job(job_id).terminal, 60, "the job's end")
    assert load_job(job_id).status == "cancelled"
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert not copy_info()


def test_dry_run_shows_the_caps_and_reserves_nothing(make_domain, tmp_path):
    lab = make_domain(state="running")
    lib = ["--to", "library", "--library", str(tmp_path / "lib")]
    proc = snaptui("snapshot", lab.name, "--name", "x", "--mode", "live", "--compress",
                   "--bwlimit", "50M", "--dry-run", *lib)
    assert proc.returncode == 0, proc.stderr
    assert f"--bandwidth {50 * MIB} --bytes" in proc.stdout
    convert = [line.split() for line in proc.stdout.splitlines()
               if line.startswith("qemu-img convert")]
    assert len(convert) == 1 and convert[0][-4:-2] == ["-r", str(50 * MIB)], proc.stdout
    assert reserved() == {}
    assert json.loads(snaptui("jobs", "--json").stdout) == []


@pytest.mark.parametrize("rate", ["fast", "0", "-5M", "5X", "1.5.0M", ""])
def test_bad_bwlimit_is_one_line_exit_2_and_changes_nothing(make_domain, tmp_path, rate):
    lab = make_domain(state="running")
    proc = snaptui("snapshot", lab.name, "--name", "x", "--to", "library", "--library",
                   str(tmp_path / "lib"), f"--bwlimit={rate}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--bwlimit" in lines[0], proc.stderr
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert json.loads(snaptui("jobs", "--json").stdout) == []
    assert not (tmp_path / "lib").exists() or not list((tmp_path / "lib").iterdir())


def test_dashboard_jobs_run_at_low_priority(make_domain, tmp_path, libvirt_uri):
    """The dashboard's launcher (ui/job_launcher.py) with the dialog's request: low priority."""
    from snaptui.ui.job_launcher import start_snapshot

    lab = make_domain(state="shut off")
    request = SnapshotRequest(domain=lab.name, name="snaptui-test-dash", destination="library",
                              library_dir=str(tmp_path / "lib"))
    host = LibvirtHost(libvirt_uri).connect()
    try:
        job_id = asyncio.run(start_snapshot(request, host, None))
    finally:
        host.close()
    wait_until(lambda: load_job(job_id).terminal, 120, "the job's end")
    job = load_job(job_id)
    assert job.status == "done", job.error
    assert job.plan["priority"] == "low"
    assert "priority low: nice 10, best-effort I/O level 7" in job.notes


def test_glance_upload_is_capped_and_checked(store, own_images, tmp_path):
    """The Glance upload through a limiter: no faster than the cap, and Glance's sha512 is
    the local one (the store raises ChecksumMismatch otherwise)."""
    import hashlib

    from snaptui.core.throttle import RateLimiter

    blob = tmp_path / "blob.raw"
    blob.write_bytes(os.urandom(8 * MIB))
    record = store.create("snaptui-test-bw-glance", "raw", "bare", {})
    own_images.append(record.id)
    cap = 4 * MIB
    started = time.monotonic()
    digest = store.upload(record.id, blob, limiter=RateLimiter(cap))
    elapsed = time.monotonic() - started
    assert digest == hashlib.sha512(blob.read_bytes()).hexdigest()
    assert store.show(record.id).size == 8 * MIB
    assert 8 * MIB / elapsed <= cap * 1.2
