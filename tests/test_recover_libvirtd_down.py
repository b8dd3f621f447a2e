"""With libvirtd down, recover backs off at once and writes no audit record (issue 23, item 6).

The dead job's plan names a libvirt URI whose socket nobody listens on: libvirt-python fails
exactly as with a stopped libvirtd ("Failed to connect socket"), and the shared lab's libvirtd
keeps running for everyone else. Before, every command stalled ~45 s per failed undo and
appended an audit record each time.
"""

from __future__ import annotations

import time
from pathlib import Path

from snaptui.core import audit
from snaptui.core.engine.journal import JournalWriter, journal_path, load_job
from snaptui.core.engine.liveness import active_dir, mark_active
from snaptui.core.engine.plan import Mode, Plan
from snaptui.core.engine.recover import recover

JOB = "20260101-000000-d0d0d0"


def dead_saved_job(tmp_path: Path, uri: str | None = None) -> None:
    """A cold job that saved its (running) guest and died: recover must restart the guest.
    Its libvirt URI is ``uri``, by default one where nobody listens."""
    uri = uri or f"qemu:///system?socket={tmp_path / 'nobody-listens.sock'}"
    plan = Plan(job_id=JOB, uri=uri, domain_name="gone-guest",
                domain_uuid="00000000-0000-4000-8000-00000000d0d0", original_state="running",
                mode=Mode.COLD, mode_reason="", out_format="qcow2", compress=False,
                compression_type=None, destination="library", cloud=None,
                library_dir=str(tmp_path / "lib"), keep_local=None, snapshot_name=None,
                base_image_ref=None, host="here")
    journal = JournalWriter(journal_path(JOB))
    journal.append("job", format=1, job_id=JOB, plan=plan.to_json(),
                   request={"domain": plan.domain_name, "name": "img"},
                   steps=[{"name": "save", "title": "Save"}, {"name": "restart", "title": "R"}])
    journal.append("pid", pid=1 << 22)
    journal.append("step_started", step="save")
    journal.append("fact", key="guest_stopped_at", value=time.time())
    journal.append("fact", key="guest_saved", value=True)
    journal.append("step_finished", step="save")
    journal.close()
    mark_active(JOB)


def test_recover_backs_off_from_a_down_libvirtd(tmp_path: Path):
    dead_saved_job(tmp_path)
    for _ in range(2):  # two commands, one after the other
        t0 = time.monotonic()
        outcomes = dict(recover())
        took = time.monotonic() - t0
        assert took < 10, f"recover stalled {took:.1f} s on a libvirtd that is down"
        assert "libvirtd" in outcomes[JOB] and outcomes[JOB].startswith("skipped"), outcomes
    assert list(audit.read()) == [], "recover audited an undo it could not even start"
    assert (active_dir() / JOB).exists()  # the next command tries again
    assert not load_job(JOB).terminal


def test_a_failing_undo_retried_by_each_command_is_audited_once(tmp_path: Path, libvirt_uri):
    """The real libvirtd answers, but the guest is gone: the restart fails the same way at
    every command's recover. One 'started' and one 'failed' record, not two per command."""
    dead_saved_job(tmp_path, uri=libvirt_uri)
    first = dict(recover())
    assert "with problems" in first[JOB], first
    records = [(r["action"], r["result"]) for r in audit.read()]
    assert records == [("undo:save", "started"), ("undo:save", "failed")], records
    again = dict(recover())
    assert "still failing" in again[JOB], again
    assert len(list(audit.read())) == 2, [(r["action"], r["result"]) for r in audit.read()]
