"""A state dir with no room left never keeps a guest down (issue 23, item 1).

The state dir (journal, locks, audit) is a small real tmpfs, filled while a cold job on a real
running lab guest is held inside its convert; the job is then cancelled. Its rollback must
restart the guest although the journal cannot grow: the journal's reserved tail records it,
and when even that is gone, the undo still runs and ``recover`` writes the end later.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from fault_tools import (
    QemuImgFault,
    assert_lab_clean,
    capture,
    fill,
    journal_events,
    tmpfs,
    wait_gone,
)

from snaptui.core.engine.jobs import cancel_job, get_job, launch, prepare
from snaptui.core.engine.journal import journal_path
from snaptui.core.engine.liveness import active_dir
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.recover import recover
from snaptui.core.errors import BadInput

pytestmark = pytest.mark.lab
PAGE = os.sysconf("SC_PAGE_SIZE")


def _start_gated(lab, tmp_path: Path, monkeypatch, state: Path) -> tuple[str, QemuImgFault]:
    """A cold job held at its convert (the guest saved), its state dir on ``state``."""
    monkeypatch.setenv("SNAPTUI_STATE_DIR", str(state))
    gate = QemuImgFault(tmp_path, "convert", "gate")
    monkeypatch.setenv("SNAPTUI_QEMU_IMG", str(gate.path))
    request = SnapshotRequest(domain=lab.name, name="snaptui-test-full-state", mode=Mode.COLD,
                              destination="library", library_dir=str(tmp_path / "lib"))
    plan, steps = asyncio.run(prepare(request))
    job_id = launch(plan, request, steps)
    gate.wait_arrived(job_id)
    assert not lab.dom.isActive(), "the guest should be saved while the convert is held"
    return job_id, gate


def _nearly_full_last_page(path: Path, leave: int = 8) -> None:
    """Append one note that leaves only ``leave`` bytes of the journal's last page: the next
    record needs a new page (a tmpfs allocates whole pages), as when qemu-img fills the disk."""
    size = path.stat().st_size
    room = -(size + leave) % PAGE or PAGE
    if room < 64:
        room += PAGE
    stub = json.dumps({"t": round(time.time(), 3), "event": "note", "text": ""})
    line = stub[:-2] + "x" * (room - len(stub) - 1) + '"}\n'
    with open(path, "a", encoding="ascii") as journal:
        journal.write(line)
    assert path.stat().st_size % PAGE == PAGE - leave


def _cancel_and_wait(job_id: str) -> None:
    pid = get_job(job_id).pid
    assert pid
    cancel_job(job_id)
    wait_gone([pid], timeout=60)


def test_full_state_dir_cold_job_cancelled_restarts_guest(make_domain, tmp_path, monkeypatch):
    lab = make_domain(state="running", size="64M", seed="16M")
    before = capture(lab)
    with tmpfs(tmp_path / "state", "32M") as state:
        job_id, _ = _start_gated(lab, tmp_path, monkeypatch, state)
        _nearly_full_last_page(journal_path(job_id))
        filler = fill(state, 0)
        try:
            with open(state / "probe", "wb") as probe, pytest.raises(OSError):
                probe.write(b"x" * 8192)
                probe.flush()
            _cancel_and_wait(job_id)
            assert lab.dom.isActive(), "the guest was left saved: the undo was skipped"
            events = journal_events(job_id)
            kinds = [(e["event"], e.get("step")) for e in events]
            assert ("step_undone", "save") in kinds, kinds  # the reserve recorded it
            assert events[-1]["event"] == "cancelled", kinds
        finally:
            filler.unlink()
        assert_lab_clean(lab, before, job_id, statuses=("cancelled",), library=tmp_path / "lib")


def test_journal_unwritable_undo_runs_and_recover_ends_it(make_domain, tmp_path, monkeypatch):
    lab = make_domain(state="running", size="64M", seed="16M")
    before = capture(lab)
    with tmpfs(tmp_path / "state", "32M") as state:
        job_id, _ = _start_gated(lab, tmp_path, monkeypatch, state)
        path = journal_path(job_id)
        _nearly_full_last_page(path)
        os.truncate(path, path.stat().st_size)  # drops the reserved tail: no write fits now
        filler = fill(state, 0)
        try:
            _cancel_and_wait(job_id)
            assert lab.dom.isActive(), "the guest was left saved: the undo was skipped"
            assert not get_job(job_id).terminal  # nothing could be written ...
            assert (active_dir() / job_id).exists()  # ... so recover will finish it
        finally:
            filler.unlink()
        outcomes = dict(recover())
        assert outcomes[job_id].startswith("rolled back"), outcomes
        assert lab.dom.isActive()
        assert_lab_clean(lab, before, job_id, statuses=("failed",), recovered=True,
                         library=tmp_path / "lib")


def _prepare_cold(lab, tmp_path: Path):
    request = SnapshotRequest(domain=lab.name, name="snaptui-test-full-state", mode=Mode.COLD,
                              destination="library", library_dir=str(tmp_path / "lib"))
    return asyncio.run(prepare(request))


def test_preflight_refuses_a_state_dir_without_room(make_domain, tmp_path, monkeypatch):
    """Scratch lives apart (plenty of room), the state dir has less than the journal's room."""
    lab = make_domain(state="running", size="64M", seed="16M")
    with tmpfs(tmp_path / "state", "4M") as state:
        monkeypatch.setenv("SNAPTUI_STATE_DIR", str(state))
        with pytest.raises(BadInput, match=r"state dir .* for the journal"):
            _prepare_cold(lab, tmp_path)
    assert lab.dom.isActive()


def test_preflight_counts_scratch_and_state_on_one_filesystem(make_domain, tmp_path,
                                                              monkeypatch):
    """Scratch inside the state dir's filesystem: the extracted image alone would fit, the
    image and the journal's room together do not."""
    lab = make_domain(state="running", size="64M", seed="24M")
    with tmpfs(tmp_path / "state", "40M") as state:
        monkeypatch.setenv("SNAPTUI_STATE_DIR", str(state / "state"))
        scratch = state / "scratch"
        scratch.mkdir()
        monkeypatch.setenv("SNAPTUI_SCRATCH_DIR", str(scratch))
        with pytest.raises(BadInput, match=r"state dir .* for the journal"):
            _prepare_cold(lab, tmp_path)
