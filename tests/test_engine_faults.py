"""Fault injection against the real lab: every fault ends with the lab as it was.

Each test starts a real detached job as the CLI does (prepare, launch, follow), injects one
fault (a failing qemu-img, a full tmpfs, Glance or libvirtd gone, a cancel, a SIGKILL of the job
process), and then the shared checker (tests/fault_tools.py) asserts that the guest, its XML,
its disks, the scratch dir, the image store and the journal are as they should be.
Run with ``-s`` to see the case → outcome table at the end.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import libvirt
import pytest
from fault_tools import (
    MID_STEP_BWLIMIT,
    assert_lab_clean,
    capture,
    ensure_libvirtd,
    fill,
    group_members,
    image_ids_made,
    journal_events,
    kill_glance,
    kill_job,
    lab_up,
    qemu_img_wrapper,
    step_running,
    stop_libvirtd,
    timeline,
    tmpfs,
    wait_for,
    wait_terminal,
)

from snaptui.core.engine.jobs import cancel_job, follow, get_job, launch, prepare
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.recover import recover
from snaptui.core.errors import BadInput, NotFound
from snaptui.core.images.glance import GlanceImages
from snaptui.core.images.library import ImageLibrary

BIG = {"size": "1G", "seed": "768M"}  # with PACED, ~6 s a step: time to act mid-step
PACED = {"bwlimit": MID_STEP_BWLIMIT}


# -- outcome table -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table():
    rows: list[tuple[str, str]] = []
    yield rows
    width = max((len(case) for case, _ in rows), default=4)
    print("\n\nfault injection: case → outcome")
    for case, outcome in rows:
        print(f"  {case:<{width}}  {outcome}")


def outcome(job_id: str) -> str:
    job = get_job(job_id)
    undone = [s.name for s in job.steps if s.state == "undone"]
    text = f"{job.status}{' (recovered)' if job.recovered else ''}: {job.error}"
    return text + (f"; undone {', '.join(undone)}" if undone else "")


def request_for(lab, tmp_path: Path, mode: Mode, **kwargs) -> SnapshotRequest:
    kwargs.setdefault("destination", "library")
    kwargs.setdefault("library_dir", str(tmp_path / "lib"))
    return SnapshotRequest(domain=lab.name, name=f"snaptui-test-fault-{mode}", mode=mode,
                           **kwargs)


def start(request: SnapshotRequest) -> str:
    plan, steps = asyncio.run(prepare(request))
    return launch(plan, request, steps)


def finish(job_id: str, timeout: float = 120) -> dict:
    events = list(follow(job_id, timeout_s=timeout))
    assert events, f"job {job_id} wrote nothing"
    return events[-1]


# -- 1. qemu-img failure -----------------------------------------------------------------------

def test_convert_failure_rolls_back_cold_job(make_domain, tmp_path, monkeypatch, table):
    lab = make_domain(state="running", size="64M", seed="32M")
    before = capture(lab)
    wrapper = qemu_img_wrapper(tmp_path, message="injected fault: convert refused")
    monkeypatch.setenv("SNAPTUI_QEMU_IMG", str(wrapper))
    job_id = start(request_for(lab, tmp_path, Mode.COLD))
    last = finish(job_id)
    assert last["event"] == "failed"
    job = get_job(job_id)
    assert job.step("save").state == "undone"
    assert job.step("convert:vda").state == "undone"
    assert_lab_clean(lab, before, job_id, error_contains=("injected fault: convert refused",),
                     library=tmp_path / "lib")
    table.append(("1 qemu-img convert fails (cold, running)", outcome(job_id)))


# -- 2. ENOSPC in scratch ----------------------------------------------------------------------

def test_enospc_in_scratch_rolls_back(make_domain, tmp_path, monkeypatch, table):
    lab = make_domain(state="running", size="128M", seed="64M")
    before = capture(lab)
    with tmpfs(tmp_path / "scratch", "80M") as scratch:
        monkeypatch.setenv("SNAPTUI_SCRATCH_DIR", str(scratch))
        request = request_for(lab, tmp_path, Mode.COLD)
        plan, steps = asyncio.run(prepare(request))  # 64 MiB allocated fits in 80 MiB
        filler = fill(scratch, 8 << 20)
        job_id = launch(plan, request, steps)
        last = finish(job_id)
        filler.unlink()
        assert last["event"] == "failed"
        assert_lab_clean(lab, before, job_id, error_contains=("No space left",),
                         library=tmp_path / "lib")
    table.append(("2 ENOSPC in scratch tmpfs (cold, running)", outcome(job_id)))


def test_too_little_scratch_is_refused_before_the_guest_is_touched(make_domain, tmp_path,
                                                                   monkeypatch, table):
    lab = make_domain(state="running", size="128M", seed="64M")
    before = capture(lab)
    with tmpfs(tmp_path / "scratch", "32M") as scratch:
        monkeypatch.setenv("SNAPTUI_SCRATCH_DIR", str(scratch))
        with pytest.raises(BadInput, match="not enough space") as err:
            asyncio.run(prepare(request_for(lab, tmp_path, Mode.COLD)))
        assert_lab_clean(lab, before, None)
    table.append(("2 scratch too small from the start", f"refused by prepare: {err.value}"))


# -- 3. Glance stopped mid-upload --------------------------------------------------------------

@pytest.mark.timeout(180)
def test_glance_killed_mid_upload_then_recover_deletes_image(make_domain, tmp_path, table):
    lab = make_domain(state="shut off", **BIG)
    before = capture(lab)
    request = request_for(lab, tmp_path, Mode.COLD, destination="glance", out_format="raw",
                          library_dir=None, **PACED)
    job_id = start(request)
    try:
        wait_for(job_id, step_running("upload:vda", min_done=1), timeout=60,
                 what="upload progress")
        kill_glance()
        job = wait_terminal(job_id, timeout=60)
        assert job.status == "failed"
        states = {s.name: s.state for s in job.steps}
        assert states["upload:vda"] == "failed"
    finally:
        lab_up()
    made = image_ids_made(job_id)
    assert made, "the job never created a Glance image"
    undo_state = states["image:vda"]  # undo-failed while Glance was down
    outcomes = dict(recover())
    glance = GlanceImages.from_cloud()
    assert_lab_clean(lab, before, job_id, glance=glance)
    for image_id in made:
        with pytest.raises(NotFound):
            glance.show(image_id)
    table.append(("3 Glance SIGKILLed mid-upload (raw 1G)",
                  f"{outcome(job_id)}; image undo {undo_state}; "
                  f"recover: {outcomes.get(job_id, 'nothing to do')}"))


# -- 4. libvirtd restarted mid-copy ------------------------------------------------------------

@pytest.mark.timeout(180)
def test_libvirtd_restart_mid_block_copy(make_domain, tmp_path, libvirt_uri, table):
    lab = make_domain(state="running", **BIG)
    before = capture(lab)
    job_id = start(request_for(lab, tmp_path, Mode.LIVE, **PACED))
    try:
        wait_for(job_id, step_running("copy:vda", min_done=1), timeout=60,
                 what="block copy progress")
        stopped_at = time.time()
        stop_libvirtd()
        gone_after = time.time() - stopped_at
    finally:
        ensure_libvirtd(libvirt_uri)
    back_after = time.time() - stopped_at
    lab.conn = libvirt.open(libvirt_uri)  # the fixture's connection died with libvirtd
    block_jobs_after_restart = lab.dom.blockJobInfo("vda", 0)
    job = wait_terminal(job_id, timeout=90)
    outcomes = dict(recover())
    status = get_job(job_id).status
    if status == "done":
        image = ImageLibrary(tmp_path / "lib").show(job.result["image_id"])
        assert image.status == "active"
    assert_lab_clean(lab, before, job_id, statuses=("failed", "done"),
                     library=tmp_path / "lib")
    table.append(("4 libvirtd restarted mid block copy (live)",
                  f"{outcome(job_id)}; recover: {outcomes.get(job_id, 'nothing to do')}; "
                  f"libvirtd exited after {gone_after:.1f} s, "
                  f"answered again after {back_after:.1f} s;"
                  f" block job right after: {block_jobs_after_restart or 'none'}; "
                  f"timeline from SIGTERM: {timeline(job_id, stopped_at)}"))


# -- 5. cancel ---------------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_cancel_during_convert(make_domain, tmp_path, table):
    lab = make_domain(state="running", **BIG)
    before = capture(lab)
    job_id = start(request_for(lab, tmp_path, Mode.COLD, **PACED))
    wait_for(job_id, step_running("convert:vda", min_done=1), timeout=60, what="convert progress")
    assert cancel_job(job_id) == "cancel requested"
    job = wait_terminal(job_id)
    assert job.status == "cancelled"
    assert job.step("convert:vda").state == "undone"
    assert job.step("save").state == "undone"
    assert_lab_clean(lab, before, job_id, statuses=("cancelled",), error_contains=("cancelled",),
                     library=tmp_path / "lib")
    table.append(("5 cancel during convert (cold, running)", outcome(job_id)))


def test_cancel_during_upload_after_internal_restart(make_domain, tmp_path, table):
    """The guest runs again (and owns its disk) while the image uploads: rolling back must not
    touch the disk, whose internal snapshot is already gone (it used to try and fail on the
    disk's write lock, leaving an undo problem behind)."""
    lab = make_domain(state="running", **BIG)
    before = capture(lab)
    job_id = start(request_for(lab, tmp_path, Mode.INTERNAL, destination="glance", **PACED))
    wait_for(job_id, step_running("upload:vda", min_done=1), timeout=90, what="upload progress")
    assert cancel_job(job_id) == "cancel requested"
    job = wait_terminal(job_id)
    assert job.status == "cancelled", job.error
    assert not job.result.get("undo_problems"), job.result
    assert job.step("restart").state == "done"
    assert_lab_clean(lab, before, job_id, statuses=("cancelled",), error_contains=("cancelled",))
    table.append(("5 cancel during upload (internal, running)", outcome(job_id)))


# -- 6. SIGKILL of the job process, then recover -----------------------------------------------

def _kill_and_recover(job_id: str) -> str:
    """SIGKILL the job's process alone (its qemu-img, if any, lives on as after a crash of the
    job process) and run recover once, as the next CLI or dashboard start would."""
    pid = kill_job(job_id)
    outcomes = dict(recover())
    assert job_id in outcomes, f"recover did not act on {job_id}: {outcomes}"
    # A qemu-img left running by the dead job holds the disk's lock: recover must stop it
    # before undoing, or the guest's restart and `qemu-img snapshot -d` fail on that lock.
    leftover = group_members(pid)
    assert not leftover, (f"processes of the killed job still run: {leftover} "
                          f"(recover: {outcomes[job_id]})")
    events = [ev["event"] for ev in journal_events(job_id)]
    assert "recovering" in events
    return outcomes[job_id]


@pytest.mark.timeout(180)
def test_sigkill_during_cold_convert_then_recover(make_domain, tmp_path, table):
    lab = make_domain(state="running", **BIG)
    before = capture(lab)
    job_id = start(request_for(lab, tmp_path, Mode.COLD, **PACED))
    wait_for(job_id, step_running("convert:vda", min_done=1), timeout=60, what="convert progress")
    assert not lab.dom.isActive()  # saved at this moment
    result = _kill_and_recover(job_id)
    assert_lab_clean(lab, before, job_id, error_contains=("died during convert:vda",),
                     library=tmp_path / "lib", recovered=True)
    table.append(("6a SIGKILL during convert (cold, saved guest)", f"{outcome(job_id)} [{result}]"))


@pytest.mark.timeout(180)
def test_sigkill_during_block_copy_then_recover(make_domain, tmp_path, table):
    lab = make_domain(state="running", **BIG)
    before = capture(lab)
    job_id = start(request_for(lab, tmp_path, Mode.LIVE, **PACED))
    wait_for(job_id, step_running("copy:vda"), timeout=60, what="the block copy")
    result = _kill_and_recover(job_id)
    assert_lab_clean(lab, before, job_id, error_contains=("died during copy:vda",),
                     library=tmp_path / "lib", recovered=True)
    table.append(("6b SIGKILL during block copy (live)", f"{outcome(job_id)} [{result}]"))


@pytest.mark.timeout(180)
def test_sigkill_after_internal_snapshot_then_recover(make_domain, tmp_path, table):
    lab = make_domain(state="running", **BIG)
    before = capture(lab)
    job_id = start(request_for(lab, tmp_path, Mode.INTERNAL, **PACED))
    wait_for(job_id, step_running("convert:vda"), timeout=60, what="convert of the snapshot")
    result = _kill_and_recover(job_id)
    assert_lab_clean(lab, before, job_id, error_contains=("died during convert:vda",),
                     library=tmp_path / "lib", recovered=True)
    table.append(("6c SIGKILL after internal snapshot (internal)",
                  f"{outcome(job_id)} [{result}]"))


# -- 7. one job per domain, domains in parallel ------------------------------------------------

@pytest.mark.timeout(180)
def test_second_job_on_same_domain_is_refused(make_domain, tmp_path, table):
    lab = make_domain(state="running", size="256M", seed="192M")
    before = capture(lab)
    request = request_for(lab, tmp_path, Mode.COLD, **PACED)  # still running when refused
    plan2, steps2 = asyncio.run(prepare(request))  # prepared before the first job holds the lock
    first = start(request)
    wait_for(first, lambda job: job.pid is not None, timeout=30, what="the job's pid")
    with pytest.raises(BadInput, match="already has a snapshot job running") as err:
        asyncio.run(prepare(request))
    second = launch(plan2, request, steps2)
    last2 = finish(second, timeout=30)
    assert last2["event"] == "failed"
    assert "already has a snapshot job running" in last2["error"]
    assert finish(first)["event"] == "done"
    assert get_job(second).status == "failed"
    images = list(ImageLibrary(tmp_path / "lib").iter_images())
    assert [i.status for i in images] == ["active"]
    assert_lab_clean(lab, before, second,
                     error_contains=("already has a snapshot job running",),
                     library=tmp_path / "lib")
    table.append(("7 second job on the same domain",
                  f"prepare refused: {err.value}; launch: {last2['error']}"))


@pytest.mark.timeout(180)
def test_jobs_on_different_domains_run_concurrently(make_domain, tmp_path, table):
    labs = [make_domain(state="running", size="128M", seed="64M") for _ in range(2)]
    befores = [capture(lab) for lab in labs]
    jobs = [start(request_for(lab, tmp_path, Mode.COLD)) for lab in labs]
    lasts = [finish(job_id) for job_id in jobs]
    assert [last["event"] for last in lasts] == ["done", "done"], lasts
    records = [get_job(job_id) for job_id in jobs]
    overlap = min(r.finished for r in records) - max(r.started for r in records)
    assert overlap > 0, "the two jobs did not run at the same time"
    for lab, before, job_id in zip(labs, befores, jobs, strict=True):
        assert_lab_clean(lab, before, job_id, statuses=("done",), library=tmp_path / "lib")
    table.append(("7 two domains at once", f"both done, overlapping {overlap:.1f} s"))


# -- 8. bad input ------------------------------------------------------------------------------

def test_bad_input_is_refused_by_prepare(make_domain, tmp_path, table):
    lab = make_domain(state="running", size="64M", seed="16M")
    raw = make_domain(state="shut off", fmt="raw", size="64M", seed="16M")
    before = capture(lab)
    cases = [
        ("unknown domain", dict(domain="snaptui-test-no-such-domain"), NotFound, "no-such"),
        ("unknown disk", dict(disk="vdz"), NotFound, "vdz"),
        ("raw disk, internal mode", dict(domain=raw.name, mode=Mode.INTERNAL), BadInput,
         "qcow2"),
        ("newline in name", dict(name="two\nlines"), BadInput, "control characters"),
        ("300-char name", dict(name="x" * 300), BadInput, "300 characters"),
    ]
    refused = []
    for label, overrides, exc_type, text in cases:
        fields = {"domain": lab.name, "name": "snaptui-test-bad", "mode": Mode.COLD,
                  "destination": "library", "library_dir": str(tmp_path / "lib"), **overrides}
        with pytest.raises(exc_type) as err:
            asyncio.run(prepare(SnapshotRequest(**fields)))
        assert text in str(err.value)
        assert "\n" not in str(err.value)
        refused.append(label)
    assert_lab_clean(lab, before, None)
    table.append(("8 bad input", "refused: " + ", ".join(refused)))


def test_metacharacters_in_image_name_work_end_to_end(make_domain, tmp_path, table):
    lab = make_domain(state="shut off", size="64M", seed="16M")
    before = capture(lab)
    name = "snap 'q' \"dq\" $(touch /tmp/pwned); rm -rf ~ `id` | ü 快照 ✓"
    request = SnapshotRequest(domain=lab.name, name=name, mode=Mode.COLD,
                              destination="library", library_dir=str(tmp_path / "lib"))
    job_id = start(request)
    last = finish(job_id)
    assert last["event"] == "done", last
    image = ImageLibrary(tmp_path / "lib").show(last["image_id"])
    assert image.name == name
    assert image.status == "active"
    assert not Path("/tmp/pwned").exists()
    assert_lab_clean(lab, before, job_id, statuses=("done",), library=tmp_path / "lib")
    table.append(("8 metacharacters/unicode in name", f"done, library name == {name!r}"))
