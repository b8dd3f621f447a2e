"""libvirt calls that fail in restart, freeze, abort and thaw (``SNAPTUI_FAULT``, tests/fault_seam).

The real lab cannot be made to refuse these on demand: libvirtd restores a managed save and
aborts a block job whenever asked, and qemu-ga thaws whenever asked. ``SNAPTUI_FAULT`` makes the
job process's domain object refuse one call in one step (or pretend a call worked); everything
else is the real lab, a real guest with its agent for the thaw. Each test then checks the lab:
the guest as before, no managed save image, no block job, no scratch file, no internal
snapshot, the journal ended as the design says.
The unit tests of the hook itself (parsing, the proxy on libvirt's test driver) are at the end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import lab_guests
import libvirt
import pytest
from fault_seam import snaptui_faults as faults
from fault_tools import assert_lab_clean, capture, journal_events

from snaptui.core.engine.jobs import follow, get_job, launch, prepare
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.images.library import ImageLibrary

guest_artefacts = lab_guests.guest_artefacts
make_guest = lab_guests.make_guest


def run_job(lab, tmp_path: Path, mode: Mode, monkeypatch: pytest.MonkeyPatch,
            fault: str) -> tuple[str, dict]:
    faults.install_in(monkeypatch, fault)  # inherited by the detached job process
    request = SnapshotRequest(domain=lab.name, name=f"snaptui-test-injected-{mode}", mode=mode,
                              destination="library", library_dir=str(tmp_path / "lib"))
    plan, steps = asyncio.run(prepare(request))
    job_id = launch(plan, request, steps)
    events = list(follow(job_id, timeout_s=120))
    assert events, f"job {job_id} wrote nothing"
    return job_id, events[-1]


def notes(job_id: str) -> list[str]:
    return [ev.get("text", "") for ev in journal_events(job_id) if ev.get("event") == "note"]


@pytest.mark.parametrize(("mode", "state", "call"), [
    (Mode.COLD, "running", "create"),
    (Mode.INTERNAL, "running", "create"),
    (Mode.COLD, "paused", "createWithFlags"),  # restarted paused: virsh start --paused
], ids=["cold-running", "internal-running", "cold-paused"])
def test_failing_restart_after_managed_save_rolls_back_and_restarts_the_guest(
        make_domain, tmp_path, monkeypatch, mode, state, call):
    lab = make_domain(state=state, size="64M", seed="16M")
    before = capture(lab)
    job_id, last = run_job(lab, tmp_path, mode, monkeypatch, f"restart:{call}")
    assert last["event"] == "failed", last
    job = get_job(job_id)
    assert job.step("restart").state == "failed"
    assert job.step("convert:vda").state == "undone"
    if mode == Mode.INTERNAL:
        assert job.step("snapshot:vda").state == "undone"
    assert job.step("save").state == "undone"  # its undo restored the managed save
    # the checker: guest in its state before, no managed save image, no internal snapshot
    assert_lab_clean(lab, before, job_id, error_contains=("restart", "injected fault"),
                     library=tmp_path / "lib")
    expected = libvirt.VIR_DOMAIN_RUNNING if state == "running" else libvirt.VIR_DOMAIN_PAUSED
    assert lab.dom.state()[0] == expected


def test_failing_freeze_gives_a_crash_consistent_image(make_domain, tmp_path, monkeypatch):
    lab = make_domain(state="running", size="64M", seed="16M")
    before = capture(lab)
    job_id, last = run_job(lab, tmp_path, Mode.LIVE, monkeypatch, "freeze:fsFreeze")
    assert last["event"] == "done", last  # the design: no agent answer -> crash-consistent
    frozen_notes = [n for n in notes(job_id) if "not frozen" in n]
    assert len(frozen_notes) == 1 and "injected fault" in frozen_notes[0], notes(job_id)
    assert "crash-consistent" in frozen_notes[0]
    assert_lab_clean(lab, before, job_id, statuses=("done",), library=tmp_path / "lib")
    image = ImageLibrary(tmp_path / "lib").show(last["image_id"])
    assert image.status == "active"


def test_failing_block_job_abort_rolls_back_with_no_block_job_left(
        make_domain, tmp_path, monkeypatch):
    lab = make_domain(state="running", size="64M", seed="16M")
    before = capture(lab)
    job_id, last = run_job(lab, tmp_path, Mode.LIVE, monkeypatch, "abort:blockJobAbort")
    assert last["event"] == "failed", last
    job = get_job(job_id)
    assert job.step("abort:vda").state == "failed"
    assert job.step("copy:vda").state == "undone"  # its undo aborted the copy for real
    assert job.step("delta:vda").state == "undone"
    assert_lab_clean(lab, before, job_id, error_contains=("abort of the block job", "injected"),
                     library=tmp_path / "lib")
    assert lab.dom.blockJobInfo("vda", 0) == {}


def test_failing_thaw_is_retried_by_the_rollback_and_nothing_stays_frozen(
        make_guest, tmp_path, monkeypatch):
    """A real guest with qemu-ga: the freeze is real; the thaw step's fsThaw is refused; the
    rollback's thaw (the freeze step's undo, not injected) must leave the guest thawed."""
    guest = make_guest(agent=True)
    guest.wait_agent()
    job_id, last = run_job(guest, tmp_path, Mode.LIVE, monkeypatch, "thaw:fsThaw")
    assert last["event"] == "failed", last
    job = get_job(job_id)
    assert job.plan["quiesce"] == "auto" and job.step("freeze").state == "undone"
    assert job.step("thaw").state == "failed"
    assert any("frozen" in n for n in notes(job_id)), notes(job_id)  # it really was frozen
    assert not job.facts.get("frozen")
    assert guest.agent("guest-fsfreeze-status") == "thawed"
    assert guest.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


# -- the hook itself (no lab: libvirt's test driver) --------------------------------------------

def test_parse_reads_step_method_and_action() -> None:
    assert faults.parse("") == []
    assert faults.parse("restart:create, abort:vda:blockJobAbort=ok") == [
        faults.Fault("restart", "create", "fail"),
        faults.Fault("abort:vda", "blockJobAbort", "ok")]
    for bad in ("create", ":create", "restart:", "restart:create=maybe"):
        with pytest.raises(ValueError, match="STEP:METHOD"):
            faults.parse(bad)


def test_fault_matches_a_step_by_name_or_kind() -> None:
    by_kind = faults.Fault("abort", "blockJobAbort")
    assert by_kind.matches("abort:vda", "blockJobAbort")
    assert by_kind.matches("abort", "blockJobAbort")
    assert not by_kind.matches("copy:vda", "blockJobAbort")
    assert not by_kind.matches("abort:vda", "blockJobInfo")
    assert not by_kind.matches(None, "blockJobAbort")
    exact = faults.Fault("abort:vdb", "blockJobAbort")
    assert exact.matches("abort:vdb", "blockJobAbort")
    assert not exact.matches("abort:vda", "blockJobAbort")


def test_wrapped_domain_fails_only_the_named_call_in_the_named_step(monkeypatch) -> None:
    conn = libvirt.open("test:///default")
    try:
        dom = conn.lookupByName("test")
        monkeypatch.delenv(faults.ENV, raising=False)
        assert faults.wrap_domain(dom, lambda: "restart") is dom  # unset: libvirt's own object
        step = ["save"]
        monkeypatch.setenv(faults.ENV, "restart:suspend,save:resume=ok")
        wrapped = faults.wrap_domain(dom, lambda: step[0])
        assert wrapped.name() == "test"
        assert wrapped.resume() == 0  # "ok": not passed to libvirt (the guest is not paused)
        step[0] = "restart"
        with pytest.raises(libvirt.libvirtError) as caught:
            wrapped.suspend()
        message = caught.value.get_error_message()
        assert message.startswith("injected fault: suspend") and "restart" in message
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING  # the call never reached libvirt
        step[0] = "other"
        wrapped.suspend()  # another step: the real call
        assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    finally:
        conn.close()
