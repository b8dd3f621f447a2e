"""Job ids from the operator, argv or a file name are checked by one validator before they name
a file (issue 23, item 10): ``snaptui cancel ../../../tmp/x`` used to load ``/tmp/x.jsonl`` and
run its undo.

Real files, each test's own state dir; no lab.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_tools import snaptui

from snaptui.core.engine.journal import JournalWriter, check_job_id, iter_jobs, jobs_dir
from snaptui.core.engine.liveness import active_dir
from snaptui.core.engine.plan import Mode, Plan
from snaptui.core.engine.recover import recover
from snaptui.core.errors import BadInput

REPO = Path(__file__).resolve().parent.parent


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("snaptui: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def planted_journal(path: Path) -> Path:
    """A journal outside the state dir, of a dead job a cancel would roll back."""
    job_id = "20260101-000000-dddddd"
    plan = Plan(job_id=job_id, uri="test:///default", domain_name="planted",
                domain_uuid="00000000-0000-4000-8000-00000000dddd", original_state="shutoff",
                mode=Mode.COLD, mode_reason="", out_format="qcow2", compress=False,
                compression_type=None, destination="library", cloud=None, library_dir=None,
                keep_local=None, snapshot_name=None, base_image_ref=None, host="here")
    journal = JournalWriter(path)
    journal.append("job", format=1, job_id=job_id, plan=plan.to_json(),
                   request={"domain": "planted"}, steps=[])
    journal.append("pid", pid=1 << 22)
    journal.close()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("job_id", ["../x", "a/b", "", "-rf", ".hidden", "x" * 65, "a b",
                                    "job\x1b[2J", "é", "a.jsonl"])
def test_the_validator_refuses_what_no_job_is_named(job_id: str):
    with pytest.raises(BadInput, match="bad job id"):
        check_job_id(job_id)


def test_the_validator_takes_the_ids_snaptui_makes():
    from snaptui.core.engine.preflight.checks import new_job_id

    job_id = new_job_id()
    assert check_job_id(job_id) == job_id


def test_cancel_of_a_path_is_refused_and_touches_nothing(tmp_path: Path):
    planted = planted_journal(tmp_path / "x.jsonl")
    before = digest(planted)
    relative = os.path.relpath(tmp_path / "x", jobs_dir())
    assert relative.startswith("../")
    proc = snaptui("cancel", relative)
    one_line_error(proc, "bad job id")
    assert digest(planted) == before
    one_line_error(snaptui("cancel", str(tmp_path / "x")), "bad job id")
    assert digest(planted) == before


def test_follow_of_a_path_is_refused(tmp_path: Path):
    planted = planted_journal(tmp_path / "x.jsonl")
    relative = os.path.relpath(tmp_path / "x", jobs_dir())
    one_line_error(snaptui("jobs", "--follow", relative), "bad job id")
    one_line_error(snaptui("jobs", "--json", "--follow", relative), "bad job id")
    assert planted.exists()


def test_files_not_named_like_a_job_are_no_job():
    """A file in the journal directory whose name no job has is skipped by ``jobs`` and by
    recover (an active marker of that name is reported, not followed)."""
    odd = "job with spaces"
    planted_journal(jobs_dir() / f"{odd}.jsonl")
    (active_dir() / odd).touch()
    assert [j.job_id for j in iter_jobs()] == []
    outcomes = dict(recover(now=time.time()))
    assert outcomes[odd].startswith("skipped: bad job id"), outcomes
    proc = snaptui("jobs", "--json")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_job_main_refuses_a_bad_id():
    proc = subprocess.run([sys.executable, "-m", "snaptui.core.engine.job_main", "../x"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and "bad job id" in proc.stderr, proc.stderr
