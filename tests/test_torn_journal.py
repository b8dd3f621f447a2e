"""A journal torn by a full disk (a line cut inside a UTF-8 character) or otherwise unreadable
never stops a command, and never blocks another job's recovery (issue 23, item 2).

Real files in this test's own state dir; the jobs are shut-off cold jobs that died before their
first step, so recovering one touches no guest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cli_tools import snaptui

from snaptui.core.engine.journal import JournalWriter, journal_path, load_job, read_events
from snaptui.core.engine.liveness import active_dir, mark_active
from snaptui.core.engine.plan import Mode, Plan
from snaptui.core.engine.recover import recover

TORN = b'{"event":"step","name":"caf\xc3'  # cut inside the two bytes of "é"


def dead_job(job_id: str, *, ended: bool = False) -> Path:
    """The journal of a shut-off cold job whose process died before its first step (``ended``:
    one that finished instead). Its active marker is set, as the launcher leaves it."""
    plan = Plan(job_id=job_id, uri="test:///default", domain_name=f"dom-{job_id}",
                domain_uuid=f"00000000-0000-4000-8000-{job_id[-6:]:0>12}",
                original_state="shutoff", mode=Mode.COLD, mode_reason="", out_format="qcow2",
                compress=False, compression_type=None, destination="library", cloud=None,
                library_dir=None, keep_local=None, snapshot_name=None, base_image_ref=None,
                host="here")
    journal = JournalWriter(journal_path(job_id))
    journal.append("job", format=1, job_id=job_id, plan=plan.to_json(),
                   request={"domain": plan.domain_name, "name": "café"}, steps=[])
    journal.append("pid", pid=1 << 22)  # no such process: the job is dead
    if ended:
        journal.append("done")
    journal.close()
    mark_active(job_id)
    return journal_path(job_id)


def tear(path: Path) -> None:
    """Cut the journal inside a character, as a write the disk had no room for; a minute ago
    (a last line younger than that may be a writer mid-line)."""
    with open(path, "ab") as handle:
        handle.write(TORN)
    then = time.time() - 60
    os.utime(path, (then, then))


def test_a_torn_last_line_is_ignored_and_reported_once(caplog):
    path = dead_job("20260101-000000-aaaaa1", ended=True)
    tear(path)
    with caplog.at_level("WARNING", logger="snaptui"):
        events = read_events(path)
        read_events(path)
        job = load_job("20260101-000000-aaaaa1")
    assert [e["event"] for e in events] == ["job", "pid", "done"]
    assert job.status == "done" and job.request["name"] == "café"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "20260101-000000-aaaaa1" in warnings[0], warnings


def test_jobs_and_cancel_read_a_torn_journal():
    path = dead_job("20260101-000000-aaaaa2", ended=True)
    tear(path)
    proc = snaptui("jobs", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [j["job_id"] for j in json.loads(proc.stdout)] == ["20260101-000000-aaaaa2"]
    warnings = [line for line in proc.stderr.splitlines() if "torn" in line]
    assert len(warnings) == 1, proc.stderr
    proc = snaptui("jobs")
    assert proc.returncode == 0 and "20260101-000000-aaaaa2" in proc.stdout, proc.stderr
    proc = snaptui("cancel", "20260101-000000-aaaaa2")
    assert proc.returncode == 2 and "already ended" in proc.stderr, proc.stderr


def test_appending_after_a_torn_line_starts_a_new_line():
    """recover's first record after a torn tail must not be glued to the torn bytes."""
    path = dead_job("20260101-000000-aaaaa3")
    tear(path)
    journal = JournalWriter(path)
    journal.append("note", text="after the tear")
    journal.close()
    assert [e["event"] for e in read_events(path)] == ["job", "pid", "note"]


def test_recover_goes_on_past_a_bad_journal():
    # Sorted first: a torn journal, then one that cannot be read at all (a directory where
    # the file should be), then a plain dead job. Each is recovered or reported on its own.
    torn = dead_job("20260101-000000-bbbbb1")
    tear(torn)
    broken = "20260101-000000-bbbbb2"
    journal_path(broken).mkdir()
    mark_active(broken)
    plain = dead_job("20260101-000000-bbbbb3")
    outcomes = dict(recover(now=time.time()))
    assert outcomes["20260101-000000-bbbbb1"] == "rolled back", outcomes
    assert outcomes["20260101-000000-bbbbb3"] == "rolled back", outcomes
    assert outcomes[broken].startswith("skipped: "), outcomes
    for path in (torn, plain):
        events = read_events(path)
        assert [e["event"] for e in events][-2:] == ["recovering", "failed"], events
        assert events[-1]["recovered"] is True
    # The unreadable one keeps its marker: recover tries again next time.
    assert (active_dir() / broken).exists()
    assert not (active_dir() / "20260101-000000-bbbbb3").exists()


def test_follow_reads_past_an_undecodable_line():
    """``jobs --follow`` (how another host re-attaches) streams on past a torn line that a
    later writer ended (test above): the line is skipped, the job's end still arrives."""
    from snaptui.core.engine.jobs import follow

    path = dead_job("20260101-000000-ccccc1")
    tear(path)
    journal = JournalWriter(path)
    journal.append("failed", error="died")
    journal.close()
    events = [e["event"] for e in follow("20260101-000000-ccccc1", timeout_s=30)]
    assert events == ["job", "pid", "failed"], events
