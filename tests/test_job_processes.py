"""core/engine/job_processes.py on real processes: a job process is recognised by its argv,
and only there; its session's members are found for recover to stop."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from snaptui.core.engine import job_processes as jp

JOB = "20260101-000000-abcdef"
SLEEPER = "import sys, time; sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)"


@pytest.fixture
def look_alike() -> Iterator[subprocess.Popen[str]]:
    """A process whose argv is a job process's (module name, job id), in its own session."""
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, jp.JOB_MAIN_MODULE, JOB],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"  # argv is in place
    yield proc
    proc.kill()
    proc.wait()


def test_a_job_process_is_known_by_its_argv(look_alike: subprocess.Popen[str]) -> None:
    found = {p.pid: p.job_id for p in jp.job_processes()}
    assert found.get(look_alike.pid) == JOB
    assert look_alike.pid in {p.pid for p in jp.job_processes(ours_only=True)}
    assert jp.job_process_of(look_alike.pid) == jp.JobProcessInfo(JOB, look_alike.pid)
    assert jp.pid_names_job(look_alike.pid, JOB)
    assert not jp.pid_names_job(look_alike.pid, "20260101-000000-bbbbbb")
    assert list(jp.session_members(look_alike.pid)) == [look_alike.pid]
    assert jp.job_main_argv(JOB, "--wait")[-3:] == [jp.JOB_MAIN_MODULE, JOB, "--wait"]


def test_other_processes_are_not_job_processes() -> None:
    plain = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    bad_id = subprocess.Popen([sys.executable, "-c", SLEEPER, jp.JOB_MAIN_MODULE, "../x"],
                              stdout=subprocess.PIPE, text=True)
    try:
        for proc in (plain, bad_id):
            assert proc.stdout is not None and proc.stdout.readline() == "up\n"
            assert jp.job_process_of(proc.pid) is None
        pids = {p.pid for p in jp.job_processes()}
        assert plain.pid not in pids and bad_id.pid not in pids
    finally:
        for proc in (plain, bad_id):
            proc.kill()
            proc.wait()
    assert jp.cmdline(plain.pid) == []  # gone (reaped): nothing to read
