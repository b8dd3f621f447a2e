"""A managed save is snaptui's only while the job that saved the guest is unfinished (issue 23,
item 4): dead without its restart, and the save no newer than the job.

Real guests saved with libvirt's managedSave, real journals in this test's state dir, and the
CLI run as an operator would (``cleanup --dry-run`` / ``--yes``, narrowed to the test's
domains: the lab is shared).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from cleanup_fixtures import backdate, job_id
from cli_tools import snaptui

from snaptui.core.engine.journal import JournalWriter, journal_path

DAY = 24 * 3600.0
pytestmark = pytest.mark.lab


def old_job(lab, age_s: float, *, restarted: bool, end: str = "done") -> str:
    """A cold job on ``lab`` that ended ``age_s`` ago: it saved the guest, and restarted it
    (``restarted``) or died without (then recover ended it 'failed')."""
    jid = job_id()
    t = time.time() - age_s
    journal = JournalWriter(journal_path(jid))
    try:
        journal.append("job", job_id=jid, plan={"job_id": jid, "domain_uuid": lab.uuid,
                                                "domain_name": lab.name, "mode": "cold",
                                                "disks": []},
                       request={"domain": lab.name}, steps=[])
        journal.append("pid", pid=1 << 22)
        journal.append("fact", key="guest_stopped_at", value=t - 5)
        journal.append("fact", key="guest_saved", value=True)
        if restarted:
            journal.append("fact", key="guest_resumed_at", value=t - 1)
        journal.append(end, error=None if end == "done" else "job process died",
                       recovered=end != "done")
    finally:
        journal.close()
    # every record and the file itself as old as the job
    path = journal_path(jid)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**ev, "t": t}) + "\n" for ev in lines))
    backdate(path, age_s)
    return jid


def save_file(lab) -> Path:
    return Path(f"/var/lib/libvirt/qemu/save/{lab.name}.save")


def managed_save(lab, *argv: str) -> dict:
    proc = snaptui("cleanup", "--dry-run", "--json", "--only", "managed-save", "--older-than",
                   "1h", "--domain", lab.name, *argv)
    assert proc.returncode in (0, 1), proc.stderr
    found = {f["key"]: f for f in json.loads(proc.stdout)["findings"]}
    return found[f"managed-save:{lab.uuid}"]


def test_a_save_made_after_an_old_finished_job_is_foreign(make_domain):
    """libvirt-guests (ON_SHUTDOWN=suspend) or `virsh managedsave` saved it yesterday; a job
    that saved and restarted the guest 90 days ago proves nothing about it."""
    lab = make_domain(state="saved")
    old = old_job(lab, 90 * DAY, restarted=True)
    backdate(save_file(lab), DAY)
    finding = managed_save(lab)
    assert finding["safe"] is False, finding
    assert "not saved by snaptui" in finding["reason"], finding
    assert old in finding["reason"], finding  # says which job it is not
    proc = snaptui("cleanup", "--yes", "--only", "managed-save", "--older-than", "1h",
                   "--domain", lab.name)
    assert proc.returncode in (0, 1), proc.stderr
    assert lab.dom.hasManagedSaveImage(0), "cleanup --yes discarded a foreign managed save"


def test_a_save_newer_than_the_dead_job_is_foreign(make_domain):
    """The job died without its restart 90 days ago, but this save is a day old: someone
    started the guest since and saved it again."""
    lab = make_domain(state="saved")
    old = old_job(lab, 90 * DAY, restarted=False, end="failed")
    backdate(save_file(lab), DAY)
    finding = managed_save(lab)
    assert finding["safe"] is False, finding
    assert "newer than" in finding["reason"] and old in finding["reason"], finding


def test_the_save_of_an_unfinished_job_is_ours(make_domain):
    lab = make_domain(state="saved")
    backdate(save_file(lab), 3 * DAY)
    dead = old_job(lab, 2 * DAY, restarted=False, end="failed")
    finding = managed_save(lab)
    assert finding["safe"] is True, finding
    assert dead in finding["reason"]
    assert os.path.exists(save_file(lab))
