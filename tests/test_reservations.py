"""The host-wide job limit and the scratch reservations (core/engine/reservations.py), on the
real lab: preflights racing for a small real tmpfs, a third job refused while two run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import libvirt
import pytest
from cli_tools import snaptui
from fault_tools import tmpfs, wait_gone, wait_until

from snaptui.core.engine.jobs import prepare_with_store
from snaptui.core.engine.journal import JournalWriter, journal_path, load_job
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.preflight.checks import new_job_id
from snaptui.core.engine.reservations import release, reserve, reserved
from snaptui.core.errors import BadInput
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.paths import config_dir
from snaptui.core.settings import load_settings, max_concurrent_jobs

MIB = 1024 * 1024


def request_for(lab, tmp_path, **kw) -> SnapshotRequest:
    return SnapshotRequest(domain=lab.name, name="snaptui-test-res", mode=Mode.COLD,
                           out_format="raw", destination="library",
                           library_dir=str(tmp_path / "lib"), **kw)


def preflight(request: SnapshotRequest, uri: str, job_id: str):
    host = LibvirtHost(uri).connect()
    try:
        return asyncio.run(prepare_with_store(request, host, job_id=job_id))
    finally:
        host.close()


@pytest.fixture
def small_scratch(tmp_path, monkeypatch):
    """A real 64 MiB tmpfs as the scratch dir."""
    with tmpfs(tmp_path / "scratch", "64M") as path:
        monkeypatch.setenv("SNAPTUI_SCRATCH_DIR", str(path))
        yield path


def test_two_preflights_racing_for_space_only_one_fits(make_domain, tmp_path, libvirt_uri,
                                                       small_scratch):
    """Each job needs 40 MiB (a raw image of a 40 MiB disk) of a 64 MiB scratch: both pass
    the plain free-space check, and only one may have it."""
    labs = [make_domain(state="shut off", size="40M", seed="8M") for _ in range(2)]
    ids = [new_job_id() + f"-{i}" for i in range(2)]
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def run(lab, job_id: str) -> None:
        barrier.wait()
        try:
            plan, _, _ = preflight(request_for(lab, tmp_path), libvirt_uri, job_id)
            outcomes[job_id] = plan
        except BadInput as err:
            outcomes[job_id] = err

    threads = [threading.Thread(target=run, args=pair) for pair in zip(labs, ids, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [o for o in outcomes.values() if isinstance(o, BadInput)]
    assert len(outcomes) == 2 and len(errors) == 1, outcomes
    winner = next(j for j, o in outcomes.items() if not isinstance(o, BadInput))
    message = str(errors[0])
    assert "not enough space" in message and f"{winner} 40.0 MiB" in message
    assert "\n" not in message
    assert set(reserved()) == {winner}
    for lab in labs:
        assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF

    # The winner's files count as used, not twice: with 20 MiB written, it still claims 20.
    (small_scratch / f"{winner}-vda.raw.partial").write_bytes(b"\1" * 20 * MIB)
    loser = next(j for j in ids if j != winner)
    loser_lab = labs[ids.index(loser)]
    with pytest.raises(BadInput, match=f"44.0 MiB free of which running jobs reserved "
                       f"{winner} 20.0 MiB"):
        preflight(request_for(loser_lab, tmp_path), libvirt_uri, loser)
    (small_scratch / f"{winner}-vda.raw.partial").unlink()

    release(winner)  # the winner's job ended: the space is the loser's now
    preflight(request_for(loser_lab, tmp_path), libvirt_uri, loser)
    assert set(reserved()) == {loser}
    release(loser)


def test_reservations_of_dead_or_ended_jobs_are_ignored(make_domain, tmp_path, libvirt_uri,
                                                        small_scratch):
    lab = make_domain(state="shut off", size="40M", seed="8M")
    # A launcher that reserved 40 MiB and died without launching its job.
    dead = new_job_id() + "-dead"
    code = ("import sys; from pathlib import Path; "
            "from snaptui.core.engine.reservations import reserve; "
            f"reserve({dead!r}, 'gone', Path(sys.argv[1]), {40 * MIB})")
    subprocess.run([sys.executable, "-c", code, str(small_scratch)], check=True)
    # A job whose journal says it ended, its reservation not released (its process was killed
    # between the journal's end and the release).
    ended = new_job_id() + "-ended"
    reserve(ended, "ended", small_scratch, 40 * MIB)
    journal = JournalWriter(journal_path(ended))
    journal.append("job", format=1, job_id=ended, plan={}, request={}, steps=[])
    journal.append("failed", error="test: ended")
    journal.close()
    assert load_job(ended).terminal
    assert reserved() == {}
    job_id = new_job_id()
    preflight(request_for(lab, tmp_path), libvirt_uri, job_id)
    assert set(reserved()) == {job_id}  # and the stale ones were dropped from the file
    release(job_id)


def _detached_capped_job(lab, tmp_path) -> str:
    proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-limit", "--mode", "cold",
                   "--to", "library", "--library", str(tmp_path / "lib"), "--bwlimit", "1M",
                   "--detach")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_limit_refuses_a_third_job_while_two_run(make_domain, tmp_path):
    """Default limit 2: two running jobs (capped, so they last) hold their reservations; a
    third is refused at preflight with one line naming them and the config key."""
    assert max_concurrent_jobs() == 2
    labs = [make_domain(state="shut off", size="64M", seed="32M") for _ in range(3)]
    running = [_detached_capped_job(lab, tmp_path) for lab in labs[:2]]
    try:
        assert set(reserved()) == set(running)
        proc = snaptui("snapshot", labs[2].name, "--name", "x", "--to", "library",
                       "--library", str(tmp_path / "lib"))
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "2 snapshot jobs already running on this host" in lines[0]
        assert "jobs.max_concurrent = 2" in lines[0]
        for job_id, lab in zip(running, labs[:2], strict=True):
            assert f"{job_id} ({lab.name})" in lines[0]
        dry = snaptui("snapshot", labs[2].name, "--name", "x", "--to", "library",
                      "--library", str(tmp_path / "lib"), "--dry-run")
        assert dry.returncode == 2 and "jobs.max_concurrent = 2" in dry.stderr
        assert labs[2].dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
        assert len(json.loads(snaptui("jobs", "--json").stdout)) == 2
    finally:
        for job_id in running:
            snaptui("cancel", job_id)
    wait_until(lambda: all(load_job(j).terminal for j in running), 60,
               "the cancelled jobs to end", poll=0.1)
    assert all(load_job(j).status == "cancelled" for j in running)
    assert reserved() == {}  # each job released its own at its end


def test_the_limit_comes_from_config(make_domain, tmp_path, libvirt_uri):
    config = config_dir()
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text("theme = \"nord\"\n[jobs]\nmax_concurrent = 1\n")
    assert max_concurrent_jobs() == 1
    assert load_settings(config / "config.toml").theme == "nord"  # the dashboard reads it too
    labs = [make_domain(state="shut off") for _ in range(2)]
    first = new_job_id()
    preflight(request_for(labs[0], tmp_path), libvirt_uri, first)
    try:
        with pytest.raises(BadInput, match=rf"1 snapshot job already running on this host "
                           rf"\({first} \({labs[0].name}\)\); the limit is "
                           r"jobs.max_concurrent = 1 in .*config.toml"):
            preflight(request_for(labs[1], tmp_path), libvirt_uri, new_job_id())
    finally:
        release(first)
    for bad in ("0", "\"two\"", "true", "1.5"):
        (config / "config.toml").write_text(f"[jobs]\nmax_concurrent = {bad}\n")
        with pytest.raises(BadInput, match="'jobs.max_concurrent' must be a whole number"):
            max_concurrent_jobs()
    (config / "config.toml").write_text("[jobs]\nmax_concurent = 3\n")
    with pytest.raises(BadInput, match="unknown key 'jobs.max_concurent'"):
        max_concurrent_jobs()


def test_a_killed_jobs_reservation_is_ignored(make_domain, tmp_path):
    """SIGKILL of a running job's process: its reservation stops counting at once (its
    journal is not terminal, but no process runs it), and recover cleans up after it."""
    import signal

    lab = make_domain(state="shut off", size="64M", seed="32M")
    job_id = _detached_capped_job(lab, tmp_path)
    pid = wait_until(lambda: load_job(job_id).pid, 30, "the job's pid in its journal")
    assert set(reserved()) == {job_id}
    os.kill(pid, signal.SIGKILL)
    # Gone means not running: a zombie (not yet reaped) keeps /proc/PID but runs nothing.
    wait_gone([pid], timeout=10)
    assert not load_job(job_id).terminal
    assert reserved() == {}
    assert snaptui("recover").returncode == 0
    assert load_job(job_id).terminal
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
