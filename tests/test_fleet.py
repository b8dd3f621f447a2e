"""Issue 16: a fleet over SSH. The lab's sshd on loopback stands in for a second host ("lab2",
the same libvirtd seen through ``qemu+ssh://``); snaptui there is this checkout with its own
state dir and no cloud configuration (tests/fleet_tools.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from fault_tools import MID_STEP_RATE, children
from fleet_tools import HOST, PYTHON, Fleet, json_lines, snaptui

from snaptui.core.engine.journal import fold, read_events
from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.fleet.ssh import PROTOCOL, remote_command, remote_info, ssh_argv

pytestmark = pytest.mark.lab

NASTY = ["a b", "it's", 'say "hi"', "$(touch /tmp/snaptui-pwned)", "x; rm -rf /nope",
         "back`tick`", "line\nbreak", "ünïcødé ✓", "-n", "", "*", "~root", "a\\b", "\t"]


def _lab2(fleet: Fleet, command: list[str]) -> HostSpec:
    return HostSpec(name=HOST, uri=fleet.ssh_uri, snaptui=tuple(command))


# ---------------------------------------------------------------- quoting through real ssh


def test_remote_command_round_trips_any_argv_through_ssh_and_sh(fleet: Fleet) -> None:
    """What arrives in the remote process's argv is exactly what was sent (the remote login
    shell parses the one string remote_command built)."""
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    host = _lab2(fleet, [str(PYTHON)])
    argv = ssh_argv(host, [str(PYTHON), "-c", code, *NASTY])
    assert argv[0] == "ssh" and argv[-1] == remote_command([str(PYTHON), "-c", code, *NASTY])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == NASTY
    assert not Path("/tmp/snaptui-pwned").exists()


# ---------------------------------------------------------------- inventory of two hosts


def test_domains_of_two_hosts_carry_their_host(fleet: Fleet, make_domain) -> None:
    dom = make_domain()
    proc = snaptui("domains", "--json", "-c", "qemu:///system", "-c", fleet.ssh_uri)
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in json.loads(proc.stdout) if r["name"] == dom.name]
    assert sorted(r["host"] for r in rows) == ["127.0.0.1-22422", "local"] or \
        len({r["host"] for r in rows}) == 2
    table = snaptui("domains", "-c", "qemu:///system", "-c", fleet.ssh_uri)
    assert table.returncode == 0 and "host" in table.stdout.splitlines()[0]


# ---------------------------------------------------------------- one-line failures


def test_unreachable_host_and_missing_snaptui_are_one_line(fleet: Fleet, make_domain) -> None:
    closed = fleet.ssh_uri.replace(":22422/", ":1/")
    mine = make_domain()
    listed = snaptui("domains", "--json", "-c", "qemu:///system", "-c", closed)
    assert listed.returncode == 1  # the reachable host is still listed
    assert mine.name in {r["name"] for r in json.loads(listed.stdout) if r["host"] == "local"}
    [line] = listed.stderr.strip().splitlines()
    assert line.startswith("snaptui: warning: 127.0.0.1-1: ")
    fleet.write_config(uri=closed)
    proc = snaptui("jobs", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == []  # the local host's (none); lab2 is the warning
    [line] = proc.stderr.strip().splitlines()
    assert f"{HOST}: cannot reach over SSH:" in line and "refused" in line.lower()
    dom = make_domain()
    proc = snaptui("snapshot", f"{HOST}:{dom.name}", "--name", "x", "--to", "library")
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    assert "cannot reach over SSH" in line and "Traceback" not in proc.stderr

    fleet.write_config(snaptui=["/nonexistent/snaptui"])
    proc = snaptui("snapshot", f"{HOST}:{dom.name}", "--name", "x", "--to", "library")
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"snaptui: error: {HOST}: snaptui is not installed") or \
        f"{HOST}: snaptui is not installed" in line
    assert "snaptui = " in line


def test_too_old_remote_snaptui_says_what_to_install(fleet: Fleet) -> None:
    """A host whose snaptui predates the fleet commands: argparse refuses; one line."""
    old = ["env", "-i", "PATH=/usr/bin:/bin", str(PYTHON), "-c",
           "import argparse; p = argparse.ArgumentParser(prog='snaptui'); "
           "p.add_argument('command', choices=['domains', 'snapshot']); p.parse_args()"]
    fleet.write_config(snaptui=old)
    proc = snaptui("jobs", "--json")
    [line] = proc.stderr.strip().splitlines()
    assert "too old" in line and f"install this snaptui version on {HOST}" in line
    assert remote_info(_lab2(fleet, fleet.remote_command()))["protocol"] == PROTOCOL


# ---------------------------------------------------------------- a remote snapshot


SSH_SPY = """import os, subprocess, sys
line = sys.stdin.readline()
fd = os.open({capture!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, line.encode())
os.close(fd)
proc = subprocess.Popen(["/usr/bin/ssh", *sys.argv[1:]], stdin=subprocess.PIPE)
proc.stdin.write(line.encode())
proc.stdin.close()
sys.exit(proc.wait())
"""


def _spy_on_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``ssh`` first on PATH that keeps a copy of the line our side writes to the remote's
    stdin (the test's own 0600 file), so the test knows the exact token that was forwarded."""
    bin_dir = tmp_path / "spy-bin"
    bin_dir.mkdir()
    capture = tmp_path / "forwarded-line"
    spy = bin_dir / "ssh"
    spy.write_text(f"#!{PYTHON}\n" + SSH_SPY.format(capture=str(capture)))
    spy.chmod(0o700)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return capture


def _secrets_nowhere(capture: Path, spies: set[int], stop: threading.Event,
                     seen: list[str]) -> None:
    """Until ``stop``: every process's argv and environment, searched for the forwarded token
    (once the spy has it); the spy itself, which holds it by design, is skipped."""
    needle = b""
    while not stop.is_set():
        if not needle and capture.exists() and capture.stat().st_size:
            needle = json.loads(json.loads(capture.read_text()))["auth_token"].encode()
        for entry in Path("/proc").iterdir() if needle else ():
            if not entry.name.isdigit():
                continue
            try:
                if "spy-bin/ssh" in (entry / "cmdline").read_text(errors="replace"):
                    spies.add(int(entry.name))
                    continue
            except OSError:
                continue
            for part in ("cmdline", "environ"):
                try:
                    if needle in (entry / part).read_bytes():
                        seen.append(f"{entry.name}/{part}")
                except OSError:
                    pass
        time.sleep(0.05)


def test_remote_snapshot_uses_the_forwarded_login_only(fleet: Fleet, make_domain, store,
                                                       own_images, tmp_path, monkeypatch
                                                       ) -> None:
    """The job runs and is journaled on lab2 (which has no cloud config); the image lands in
    Glance; the forwarded token is in no process's argv or environment and no file on lab2."""
    probe = [*fleet.remote_command()[:-2], "-c", "from snaptui.core.cloud.config import "
             "cloud_configured as c; import os; print(c(), 'OS_CLOUD' in os.environ)"]
    lab2 = _lab2(fleet, probe)
    answer = subprocess.run(ssh_argv(lab2, probe), capture_output=True, text=True, timeout=60,
                            check=True)
    assert answer.stdout.split() == ["False", "False"]  # lab2 knows no cloud of its own
    dom = make_domain()
    capture = _spy_on_ssh(tmp_path, monkeypatch)
    seen: list[str] = []
    spies: set[int] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_secrets_nowhere, args=(capture, spies, stop, seen))
    watcher.start()
    name = "fleet 'it's' $(x); \"q\" ✓ " + dom.name[-8:]
    try:
        proc = snaptui("snapshot", f"{HOST}:{dom.name}", "--name", name, "--json",
                       "--property", "note=a;b $(c)")
    finally:
        stop.set()
        watcher.join()
    events = json_lines(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    assert all(e["host"] == HOST for e in events)
    done = events[-1]
    assert done["event"] == "done"
    own_images.append(done["image_id"])
    image = store.show(done["image_id"])
    assert image.name == name and image.properties.get("note") == "a;b $(c)"
    job_id = events[0]["job_id"]
    journal = fleet.remote_journal(job_id)
    assert fold(job_id, journal, read_events(journal)).status == "done"
    assert not (Path(os.environ["SNAPTUI_STATE_DIR"]) / "jobs" / f"{job_id}.jsonl").exists()
    token = json.loads(json.loads(capture.read_text()))["auth_token"].encode()
    assert spies and seen == []  # the watcher did look, and found the token nowhere
    for path in [*fleet.remote_state.rglob("*"), *fleet.remote_home.rglob("*")]:
        if path.is_file():
            text = path.read_bytes()
            assert b"auth_token" not in text and token not in text, path
    listed = snaptui("jobs", "--json")
    rows = json.loads(listed.stdout)
    assert any(r["host"] == HOST and r["job_id"] == job_id for r in rows), listed.stderr


def test_killed_ssh_loses_nothing_and_reattach_gets_the_end(fleet: Fleet, make_domain,
                                                             own_images) -> None:
    """Kill the local ssh mid-job: the remote job completes; our side re-attaches (jobs
    --follow) and prints the job's end; a later --follow replays it too."""
    dom = make_domain(size="512M", seed="384M")
    proc = subprocess.Popen([str(PYTHON), "-m", "snaptui", "snapshot", f"{HOST}:{dom.name}",
                             "--name", f"drop-{dom.name[-8:]}", "--json",
                             "--bwlimit", MID_STEP_RATE],  # still running when it is cut
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "job"
    job_id = first["job_id"]
    [ssh] = [p for p in children(proc.pid) if Path(f"/proc/{p}/comm").read_text().strip()
             == "ssh"]
    os.kill(ssh, signal.SIGKILL)
    out, err = proc.communicate(timeout=240)
    events = [first, *json_lines(out)]
    assert proc.returncode == 0, err
    assert "re-attaching" in err
    kinds = [e["event"] for e in events]
    assert kinds.count("job") == 1 and kinds[-1] == "done"  # the replay is not shown twice
    own_images.append(events[-1]["image_id"])
    wait_for_file = fleet.remote_journal(job_id)
    assert fold(job_id, wait_for_file, read_events(wait_for_file)).status == "done"
    again = snaptui("jobs", "--follow", f"{HOST}:{job_id}", "--json")
    assert again.returncode == 0 and json_lines(again.stdout)[-1]["event"] == "done"
    assert _remote_followers(fleet) == []  # the first follower left when its pipe broke


def _remote_followers(fleet: Fleet) -> list[int]:
    """The processes of snaptui commands run on lab2 (its state dir in their environment)."""
    mark = f"SNAPTUI_STATE_DIR={fleet.remote_state}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"-m\0snaptui\0" in (entry / "cmdline").read_bytes() \
                    and mark in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def test_sighup_to_the_remote_follower_detaches_it(fleet: Fleet, make_domain,
                                                   own_images) -> None:
    """What sshd may do when the connection goes: SIGHUP to the remote ``snaptui snapshot``
    (or EOF/EPIPE on its pipes, test above). It stops following; the job is not cancelled."""
    dom = make_domain(size="512M", seed="384M")
    proc = subprocess.Popen([str(PYTHON), "-m", "snaptui", "snapshot", f"{HOST}:{dom.name}",
                             "--name", f"hup-{dom.name[-8:]}", "--json",
                             "--bwlimit", MID_STEP_RATE],  # still running when it is cut
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    [follower] = _remote_followers(fleet)
    os.kill(follower, signal.SIGHUP)
    out, err = proc.communicate(timeout=240)
    events = [first, *json_lines(out)]
    assert proc.returncode == 0, err
    assert events[-1]["event"] == "done" and "cancelled" not in events[-1]
    own_images.append(events[-1]["image_id"])
    assert _remote_followers(fleet) == []  # nothing lingers on the host


def test_cancel_and_info_forward_to_the_host(fleet: Fleet, make_domain) -> None:
    dom = make_domain()
    proc = snaptui("info", f"{HOST}:{dom.name}", "--json")
    assert proc.returncode == 0, proc.stderr
    [disk] = json.loads(proc.stdout)
    assert disk["target"] == "vda"
    proc = snaptui("info", f"{HOST}:{dom.name}:vda", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["target"] == "vda"
    proc = snaptui("snapshot", f"{HOST}:no-such-domain-{dom.name[-8:]}", "--name", "x")
    # The lab's URI has no_verify=1: a warning that the login went to an unchecked host key,
    # then the host's preflight refusal, one line.
    [warning, line] = proc.stderr.strip().splitlines()
    assert "no_verify=1" in warning and "Keystone token" in warning, warning
    assert proc.returncode != 0 and line.startswith(f"snaptui: error: {HOST}: ")
    assert "no-such-domain" in line
    proc = snaptui("cancel", f"{HOST}:no-such-job")
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    assert f"{HOST}:" in line and "no such job" in line
    big = make_domain(size="1G", seed="768M")
    launched = snaptui("snapshot", f"{HOST}:{big.name}", "--name", f"cancel-{big.name[-8:]}",
                       "--detach", "--json", "--bwlimit", MID_STEP_RATE)  # time to cancel
    assert launched.returncode == 0, launched.stderr
    [event] = json_lines(launched.stdout)
    assert event["event"] == "launched" and event["host"] == HOST
    job = event["job_id"]
    cancel = snaptui("cancel", "--host", HOST, job, "--json")
    assert cancel.returncode == 0, cancel.stderr
    assert json.loads(cancel.stdout)[0]["job_id"] == f"{HOST}:{job}"
    follow = snaptui("jobs", "--follow", f"{HOST}:{job}", "--json")
    last = json_lines(follow.stdout)[-1]
    assert (last["event"], last.get("cancelled"), last["host"]) == ("failed", True, HOST)
    assert follow.returncode == 1
    recovered = snaptui("recover", "--json")  # every host; nothing left to recover on either
    assert recovered.returncode == 0 and json.loads(recovered.stdout) == []




def test_core_api_launch_list_follow(fleet: Fleet, make_domain, store, own_images) -> None:
    """What the dashboard calls (core/fleet/remote_jobs.py): launch detached with the login, list,
    re-attach; the image lands in Glance."""
    from snaptui.core.engine.plan import SnapshotRequest
    from snaptui.core.fleet.remote_jobs import (
        follow_remote_job,
        launch_remote_snapshot,
        list_remote_jobs,
    )

    dom = make_domain()
    store.cloud.authenticate()
    host = _lab2(fleet, fleet.remote_command())
    request = SnapshotRequest(domain=dom.name, name=f"api-{dom.name[-8:]}",
                              destination="glance")
    job_id = launch_remote_snapshot(host, request, store.auth_state())
    assert any(r["job_id"] == job_id and r["host"] == HOST for r in list_remote_jobs(host))
    events = list(follow_remote_job(host, job_id))
    assert events[0]["event"] == "job" and events[-1]["event"] == "done"
    own_images.append(events[-1]["image_id"])
    assert store.show(events[-1]["image_id"]).name == request.name
