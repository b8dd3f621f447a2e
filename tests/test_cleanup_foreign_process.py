"""Another local user cannot steer or hang root's cleanup (issue 23, item 9).

cleanup counts job processes of other state dirs as live (their journals name what must not be
touched). A process only *looks* like a job by its argv, and its environment names the state
dir: trusted only when it runs as this snaptui's uid, and a journal that is not a regular file
(a FIFO would block the reader forever) is never opened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_tools import wait_until

from snaptui.core.cleanup.context import host_job_processes
from snaptui.core.engine.journal import JournalWriter

REPO = Path(__file__).resolve().parent.parent
JOB = "20260101-000000-f1f0f1"
pytestmark = pytest.mark.lab  # runs processes as another user: root, as the lab tier runs


def fake_job(state: Path, *, user: str | None = None) -> subprocess.Popen[bytes]:
    """A process whose argv says ``snaptui.core.engine.job_main JOB`` and whose environment
    points SNAPTUI_STATE_DIR at ``state`` (run as ``user``)."""
    code = "import sys, time; sys.stdin.read(); time.sleep(60)"
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-c", code, "snaptui.core.engine.job_main", JOB],
        stdin=subprocess.PIPE, env={"SNAPTUI_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"},
        user=user, cwd="/")
    wait_until(lambda: JOB.encode() in Path(f"/proc/{proc.pid}/cmdline").read_bytes(), 10,
               "the look-alike process to start", poll=0.01)
    return proc


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "planted"
    (state / "jobs").mkdir(parents=True)
    os.mkfifo(state / "jobs" / f"{JOB}.jsonl")
    tmp_path.chmod(0o755)
    yield state


def cleanup_dry_run() -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snaptui", "cleanup", "--dry-run", "--json",
                           "--only", "scratch"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, cwd=REPO)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def test_a_job_lookalike_of_another_user_is_not_trusted(planted: Path):
    proc = fake_job(planted, user="nobody")
    try:
        assert JOB not in [job for job, _, _ in host_job_processes()]
        done = cleanup_dry_run()  # hung forever on the FIFO before
        assert done.returncode in (0, 1), done.stderr
        json.loads(done.stdout)
    finally:
        _stop(proc)


def test_a_fifo_journal_is_never_opened(planted: Path, tmp_path: Path):
    """Even a job process of our own uid whose journal is not a regular file is skipped."""
    proc = fake_job(planted)
    try:
        assert JOB in [job for job, _, _ in host_job_processes()]
        done = cleanup_dry_run()
        assert done.returncode in (0, 1), done.stderr
    finally:
        _stop(proc)


def test_a_fifo_in_the_jobs_dir_does_not_hang_jobs(tmp_path: Path):
    """`snaptui jobs` lists the jobs dir; a FIFO named like a journal there is skipped."""
    from snaptui.core.engine.journal import jobs_dir

    JournalWriter(jobs_dir() / "20260101-000000-a0a0a0.jsonl").close()
    os.mkfifo(jobs_dir() / f"{JOB}.jsonl")
    done = subprocess.run([sys.executable, "-m", "snaptui", "jobs", "--json"],
                          capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert JOB not in done.stdout
