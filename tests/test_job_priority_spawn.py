"""The job process is at its priority from its first instruction (issue 23): before, it ran
Python's start-up and imports (~0.7 s) at nice 0 and lowered itself afterwards."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from fault_tools import wait_until

from snaptui.core.engine.jobs import JobProcess

JOB = "20260101-000000-ee0ee0"


def _python_started(pid: int) -> psutil.Process:
    """The process once it runs Python (after any exec of nice/ionice), still before its
    imports are done: it waits for the launcher's go on its stdin."""
    proc = psutil.Process(pid)
    wait_until(lambda: b"snaptui.core.engine.job_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
               and Path(f"/proc/{pid}/exe").resolve().name.startswith("python"), 10,
               "the job process to run Python", poll=0.005)
    return proc


@pytest.mark.parametrize(("priority", "nice", "ioclass"), [
    ("low", 10, psutil.IOPRIO_CLASS_BE), ("idle", 19, psutil.IOPRIO_CLASS_IDLE)])
def test_job_process_starts_at_its_priority(priority, nice, ioclass):
    job = JobProcess(JOB, priority=priority)
    try:
        proc = _python_started(job._proc.pid)  # type: ignore[union-attr]
        assert proc.nice() == nice
        assert proc.ionice().ioclass == ioclass
        if priority == "low":
            assert proc.ionice().value == 7
    finally:
        job.discard()


def test_normal_priority_is_left_alone():
    job = JobProcess(JOB, priority="normal")
    try:
        proc = _python_started(job._proc.pid)  # type: ignore[union-attr]
        assert proc.nice() == psutil.Process().nice()
    finally:
        job.discard()
