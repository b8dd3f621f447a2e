"""Pure functions, no lab and no subprocess: cleanup kinds, progress for people, and the
job journal's JSON round-trip (written, torn by a crash, folded back into a JobRecord)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from snaptui.core.cleanup.findings import ALL_KINDS, Kind, parse_kinds
from snaptui.core.engine.journal import JournalWriter, fold, read_events
from snaptui.core.errors import BadInput


def test_parse_kinds() -> None:
    assert parse_kinds(None) == ALL_KINDS
    assert parse_kinds("") == ALL_KINDS
    assert parse_kinds(" , ") == ALL_KINDS
    assert parse_kinds("internal, managed-save,") == {Kind.INTERNAL, Kind.MANAGED_SAVE}
    with pytest.raises(BadInput, match="unknown kind 'snapshots'") as caught:
        parse_kinds("internal,snapshots")
    assert "internal,scratch,managed-save" in str(caught.value)  # the known ones, in order


def test_journal_round_trip_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "20260101-000000-abcdef.jsonl"
    writer = JournalWriter(path)
    steps = [{"name": "save", "title": "Save guest"}, {"name": "convert:vda", "title": "Convert"}]
    writer.append("job", plan={"domain_name": "web", "mode": "cold"},
                  request={"domain": "web", "name": "img"}, steps=steps)
    writer.append("pid", pid=4242)
    writer.append("step_started", step="save")
    writer.append("fact", key="out:vda", value=Path("/scratch/vda.qcow2"))  # default=str
    writer.append("fact", key="note", value="ünïcode ✓")
    writer.append("step_finished", step="save", seconds=1.5)
    writer.append("step_started", step="convert:vda")
    writer.append("progress", sync=False, step="convert:vda", done=10, total=100, unit="%")
    writer.append("step_failed", step="convert:vda", error="qemu-img: boom")
    writer.append("undo_started", step="save")
    writer.append("step_undone", step="save")
    writer.append("failed", error="qemu-img: boom", downtime_s=2.0)
    writer.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, "a", encoding="utf-8") as handle:  # a crash mid-write: no newline
        handle.write(json.dumps({"t": 1, "event": "note", "text": "torn"})[:-3])

    events = read_events(path)
    assert [e["event"] for e in events][-1] == "failed" and len(events) == 12
    assert all(isinstance(e["t"], float | int) for e in events)
    job = fold(path.stem, path, events)
    assert (job.domain, job.mode, job.pid) == ("web", "cold", 4242)
    assert job.status == "failed" and job.terminal and job.error == "qemu-img: boom"
    assert [(s.name, s.state) for s in job.steps] == [("save", "undone"),
                                                       ("convert:vda", "failed")]
    assert job.step("convert:vda").progress == {"t": events[7]["t"], "done": 10, "total": 100,
                                                "unit": "%"}
    assert job.facts == {"out:vda": "/scratch/vda.qcow2", "note": "ünïcode ✓"}
    assert job.downtime_s == 2.0
    assert job.to_json()["steps"][1] == {"name": "convert:vda", "title": "Convert",
                                         "state": "failed", "error": "qemu-img: boom"}


def test_progress_text_is_one_format_for_cli_and_dashboard():
    from snaptui.core.engine.states import progress_text

    assert progress_text({"done": 45, "unit": "%"}) == "45.0 %"
    text = progress_text({"done": 300 * 2**20, "total": 2**30, "rate": 100 * 2**20, "eta_s": 7})
    assert text == "300 MiB / 1.0 GiB · 100 MiB/s · ETA 7.0 s"
