"""`snaptui snapshot`, `jobs`, `cancel` and `recover` as an operator runs them, on the real lab."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import libvirt
from cli_tools import snaptui
from fault_tools import QemuImgFault, wait_terminal, wait_until

from snaptui.core.engine.journal import load_job
from snaptui.core.images.library import ImageLibrary
from snaptui.core.paths import scratch_dir


def test_snapshot_json_events_end_with_done(make_domain, tmp_path):
    lab = make_domain(state="running")
    name = "snaptui-test cli \"q\" $(touch /tmp/pwned); ü"
    proc = snaptui("snapshot", lab.name, "--name", name, "--mode", "cold", "--to", "library",
                   "--library", str(tmp_path / "lib"), "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "job" and kinds[-1] == "done"
    assert {"step_started", "step_finished", "progress"} <= set(kinds)
    done = events[-1]
    for key in ("image_id", "name", "downtime_s", "sizes", "checksum"):
        assert key in done
    assert done["name"] == name
    assert set(done["sizes"]) >= {"source_virtual", "source_actual", "source_apparent",
                                  "output_actual", "output_apparent", "uploaded"}
    assert done["downtime_s"] > 0
    assert not os.path.exists("/tmp/pwned")
    assert ImageLibrary(tmp_path / "lib").show(done["image_id"]).name == name
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    listed = json.loads(snaptui("jobs", "--json").stdout)
    assert listed[0]["status"] == "done" and listed[0]["domain"] == lab.name


def test_dry_run_prints_commands_and_changes_nothing(make_domain, tmp_path):
    lab = make_domain(state="running")
    proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-dry", "--mode", "internal",
                   "--to", "library", "--library", str(tmp_path / "lib"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"virsh managedsave {lab.name}" in out
    assert "qemu-img snapshot -c" in out and "snapshot.name=" in out
    assert "qemu-img snapshot -d" in out and f"virsh start {lab.name}" in out
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert not (tmp_path / "lib").exists() or not list((tmp_path / "lib").iterdir())
    assert json.loads(snaptui("jobs", "--json").stdout) == []


def test_bad_input_is_one_line_and_changes_nothing(make_domain, tmp_path):
    raw = make_domain(state="running", fmt="raw")
    lib = ["--to", "library", "--library", str(tmp_path / "lib")]
    cases = [
        (["snapshot", "snaptui-test-nope", "--name", "x", *lib], "no such domain"),
        (["snapshot", raw.name, "--name", "x", "--disk", "vdz", *lib], "no disk vdz"),
        (["snapshot", raw.name, "--name", "x", "--mode", "internal", *lib], "qcow2"),
        (["snapshot", raw.name, "--name", "a\nb", *lib], "control characters"),
        (["snapshot", raw.name, "--name", "x" * 300, *lib], "at most 255"),
        (["snapshot", raw.name, "--name", "x", "--format", "raw", "--compress", *lib],
         "--compress needs"),
    ]
    for args, expected in cases:
        proc = snaptui(*args)
        assert proc.returncode != 0, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert raw.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    # The job process started ahead of each refused job found its pipe closed and exited.
    wait_until(lambda: waiting_job_processes() == [], 10, "the unused job processes to exit",
               poll=0.1)
    jobs = Path(os.environ["SNAPTUI_STATE_DIR"]) / "jobs"
    assert [p.name for p in jobs.glob("*.log")] == [], "unused job processes left their logs"


def waiting_job_processes() -> list[int]:
    """Job processes of this test's state dir still waiting for their launcher's go."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        state = os.environ["SNAPTUI_STATE_DIR"].encode()
        if b"snaptui.core.engine.job_main" in argv and b"--wait" in argv \
                and b"SNAPTUI_STATE_DIR=" + state + b"\0" in environ:
            found.append(int(proc.name))
    return found


def test_not_enough_space_is_refused_before_the_guest_is_touched(make_domain, tmp_path,
                                                                  monkeypatch):
    lab = make_domain(state="running", size="256M", seed="64M")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(mount)], check=True)
    try:
        env = {**os.environ, "SNAPTUI_SCRATCH_DIR": str(mount)}
        proc = snaptui("snapshot", lab.name, "--name", "x", "--mode", "cold", "--format", "raw",
                       "--to", "library", "--library", str(tmp_path / "lib"), env=env)
        assert proc.returncode != 0
        assert "not enough space" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert not lab.dom.hasManagedSaveImage(0)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_job_survives_the_terminal_going_away(make_domain, tmp_path):
    """SIGHUP/SIGKILL of the CLI mid-job: the detached job finishes and the guest runs."""
    lab = make_domain(state="running", size="1G", seed="512M")
    cli = subprocess.Popen(
        [sys.executable, "-m", "snaptui", "snapshot", lab.name, "--name", "snaptui-test-hup",
         "--mode", "cold", "--to", "library", "--library", str(tmp_path / "lib"), "--json"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    job_id = json.loads(cli.stdout.readline())["job_id"]
    wait_until(lambda: load_job(job_id).facts.get("guest_saved"), 30, "the guest saved",
               poll=0.05)
    os.killpg(cli.pid, signal.SIGHUP)
    cli.wait(10)
    job = wait_terminal(job_id, timeout=120)
    assert job.status == "done", job.error
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert list(scratch_dir().iterdir()) == []


def test_cancel_from_the_cli_rolls_back(make_domain, tmp_path):
    lab = make_domain(state="running", size="256M", seed="64M")
    # The job's convert waits at a gate (a real qemu-img behind a wrapper) until cancelled:
    # a fast convert would otherwise finish before `snaptui cancel` has started.
    gate = QemuImgFault(tmp_path, "convert", "gate")
    proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-cancel", "--mode", "cold",
                   "--format", "raw", "--to", "library", "--library", str(tmp_path / "lib"),
                   "--detach", env={**os.environ, "SNAPTUI_QEMU_IMG": str(gate.path)})
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    gate.wait_arrived(job_id)
    assert load_job(job_id).step("convert:vda").state == "running"
    cancel = snaptui("cancel", job_id)
    assert cancel.returncode == 0, cancel.stderr
    job = wait_terminal(job_id, timeout=60)
    assert job.status == "cancelled", (job.status, job.error)
    assert job.step("save").state == "undone"
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert not lab.dom.hasManagedSaveImage(0)
    assert list(scratch_dir().iterdir()) == []
    again = snaptui("cancel", job_id)
    assert again.returncode != 0 and "already ended" in again.stderr
