"""Snapshots of a real guest that writes all the time: every mode × raw/qcow2 boots (--verify),
its filesystem is clean, its records are an unbroken checksummed sequence, and the guest kept
writing; and the faults of the freeze and the verification, on the same guest.

One BIOS guest (TCG) is shared by the module and destroyed when it ends; each case is one job.
Run with ``-s`` for the table of measured freeze and verify times.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import lab_guests  # noqa: E402
from fault_tools import (  # noqa: E402
    QemuImgFault,
    assert_lab_clean,
    capture,
    journal_events,
    kill_job,
    wait_until,
)
from lab_guests import Guest, lab_guest_check  # noqa: E402

from snaptui.core.engine.jobs import follow, get_job, launch, prepare  # noqa: E402
from snaptui.core.engine.plan import Mode, SnapshotRequest  # noqa: E402
from snaptui.core.engine.recover import recover  # noqa: E402
from snaptui.core.errors import BadInput  # noqa: E402
from snaptui.core.images.library import ImageLibrary  # noqa: E402
from snaptui.core.images.store import add_image

guest_artefacts = lab_guests.guest_artefacts
module_guests = lab_guests.module_guests
make_guest = lab_guests.make_guest

MODES = ("cold", "internal", "live", "backup")
FORMATS = ("raw", "qcow2")
TABLE: list[str] = []


@dataclass
class GuestLab:
    """The shape fault_tools' checker expects (``dom``, ``name``, ``disks``)."""

    guest: Guest

    @property
    def dom(self) -> libvirt.virDomain:
        return self.guest.dom

    @property
    def name(self) -> str:
        return self.guest.name

    @property
    def disks(self) -> list[tuple[str, str, str]]:
        return [("vda", str(self.guest.disk), "qcow2")]


def _live_conn(guest: Guest) -> None:
    """Reopen the guest's connection when libvirtd restarted under it (other tests on the
    shared lab do that); the QEMU process, and so the guest, survives the restart."""
    try:
        alive = guest.conn.isAlive()
    except libvirt.libvirtError:
        alive = False
    if not alive:
        guest.conn = libvirt.open(os.environ["LIBVIRT_DEFAULT_URI"])


@pytest.fixture(scope="module")
def writer(module_guests) -> Guest:
    guest = module_guests()
    guest.wait_agent()
    yield guest
    _live_conn(guest)  # module_guests removes it through this connection
    print("\n\nverify/quiesce on a writing guest:\n  " + "\n  ".join(TABLE))


@pytest.fixture
def lab(writer: Guest) -> GuestLab:
    _live_conn(writer)
    writer.wait_agent()  # a restored guest's agent reconnects a moment after the restart
    return GuestLab(writer)


def request(lab: GuestLab, tmp_path: Path, mode: str, **extra) -> SnapshotRequest:
    return SnapshotRequest(domain=lab.name, name=f"snaptui-test-verify-{mode}", mode=Mode(mode),
                           destination="library", library_dir=str(tmp_path / "lib"), **extra)


def run(req: SnapshotRequest) -> tuple[str, dict]:
    plan, steps = asyncio.run(prepare(req))
    job_id = launch(plan, req, steps)
    events = list(follow(job_id, timeout_s=400))
    return job_id, events[-1]


def notes(job_id: str) -> list[str]:
    return [ev["text"] for ev in journal_events(job_id) if ev.get("event") == "note"]


def note_number(job_id: str, prefix: str) -> float | None:
    """The seconds in the first note starting with ``prefix`` ("filesystems frozen in 0.08 s")."""
    for text in notes(job_id):
        if text.startswith(prefix):
            return float(text[len(prefix):].split()[0])
    return None


def step_seconds(job_id: str, step: str) -> float:
    job = get_job(job_id)
    s = job.step(step)
    return round((s.finished or 0) - (s.started or 0), 1)


def freeze_status(guest: Guest) -> str:
    guest.wait_agent()
    return guest.agent("guest-fsfreeze-status")


def hang_agent(guest: Guest, seconds: int) -> None:
    """Stop the guest's qemu-ga (SIGSTOP) for ``seconds``, from a process it started."""
    script = (f"kill -STOP $(cat /run/qemu-ga.pid); sleep {seconds}; "
              "kill -CONT $(cat /run/qemu-ga.pid)")
    guest.agent("guest-exec", {"path": "/bin/sh", "arg": ["-c", script]})

    def silent() -> bool:
        try:
            guest.agent("guest-ping", timeout=1)
        except libvirt.libvirtError:
            return True
        return False

    wait_until(silent, 10, "the guest agent to stop answering after SIGSTOP", poll=0.2)


# ---------------------------------------------------------------- every mode × format

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES)
def test_snapshot_of_a_writing_guest_boots_is_clean_and_the_guest_kept_writing(
        lab, tmp_path, mode, fmt):
    before = capture(lab)
    first = lab.guest.records()
    assert first.ok, first.problem
    job_id, last = run(request(lab, tmp_path, mode, out_format=fmt, verify=True))
    assert last["event"] == "done", (last, notes(job_id))
    image = ImageLibrary(tmp_path / "lib").show(last["image_id"])
    assert image.properties["snaptui_verified"] == "agent"
    assert image.properties["snaptui_verified_at"].endswith("Z")
    assert image.disk_format == fmt

    check = lab_guest_check.check_image(Path(image.location))
    assert check.fs_clean, check.fsck_output
    assert check.records.ok, check.records.problem
    # frozen through the agent: the copy needs no journal replay
    assert not check.needs_recovery
    frozen = note_number(job_id, "filesystems frozen in ")
    thawed = note_number(job_id, "filesystems thawed after ")
    assert frozen is not None and thawed is not None, notes(job_id)

    lab.guest.wait_agent()
    after = lab.guest.records()
    assert after.ok, after.problem  # no record lost or garbled in the running guest either
    assert first.last <= check.last_record < after.last  # kept writing through the job
    assert freeze_status(lab.guest) == "thawed"
    assert_lab_clean(lab, before, job_id, statuses=("done",), library=tmp_path / "lib")
    TABLE.append(f"{mode:8} {fmt:5}: job {last.get('downtime_s', 0):.2f} s downtime, frozen "
                 f"{thawed:.2f} s, verify step {step_seconds(job_id, 'verify:vda'):.1f} s "
                 f"(agent after {note_number(job_id, 'verified: guest agent answered ')} s), "
                 f"records {first.last} <= {check.last_record} < {after.last}")


# ---------------------------------------------------------------- the verification's faults

@pytest.mark.parametrize("keep", [False, True], ids=["rolled-back", "keep-unverified"])
def test_verification_that_times_out_deletes_the_image_and_leaves_the_guest_alone(
        lab, tmp_path, keep):
    before = capture(lab)
    first = lab.guest.records()
    job_id, last = run(request(lab, tmp_path, "live", out_format="raw", verify=True,
                               verify_timeout=1, verify_console="never printed",
                               keep_unverified=keep))
    said = notes(job_id)
    assert any(n.startswith("verification failed: verification timed out") for n in said), said
    library = ImageLibrary(tmp_path / "lib")
    if keep:
        assert last["event"] == "done", last
        kept = library.show(last["image_id"])
        assert "snaptui_verified" not in kept.properties
        assert_lab_clean(lab, before, job_id, statuses=("done",), library=tmp_path / "lib")
    else:
        assert last["event"] == "failed" and "timed out" in last["error"], last
        assert get_job(job_id).step("image:vda").state == "undone"
        assert list(library.iter_images()) == []  # the image was deleted
        assert_lab_clean(lab, before, job_id, error_contains=("timed out",),
                         library=tmp_path / "lib")
    assert lab.guest.records().last > first.last  # the source guest ran on, untouched
    TABLE.append(f"verify timeout ({'kept' if keep else 'rolled back'}): "
                 f"{sum(n.startswith('console: ') for n in said)} console lines in the log")


def test_snaptui_verify_boots_a_glance_image_and_marks_it(lab, tmp_path, store, own_images):
    job_id, last = run(request(lab, tmp_path, "live", out_format="qcow2"))
    assert last["event"] == "done", last
    local = ImageLibrary(tmp_path / "lib").show(last["image_id"])
    added = add_image(store, Path(local.location), name="snaptui-test-verify-glance",
                      disk_format="qcow2", properties={"snaptui_domain": lab.name})
    own_images.append(added.id)
    from test_security import snaptui  # the CLI as an operator runs it

    t0 = time.monotonic()
    proc = snaptui("verify", added.id, "--json")
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["event"] == "verified" and outcome["method"] == "agent"
    assert store.show(added.id).properties["snaptui_verified"] == "agent"
    failed = snaptui("verify", added.id, "--verify-timeout", "1", "--verify-console", "zzz")
    assert failed.returncode == 1 and "timed out" in failed.stderr
    assert len(failed.stderr.strip().splitlines()[-1].split("\n")) == 1
    TABLE.append(f"snaptui verify (Glance, download + boot): {seconds:.1f} s")


def test_uefi_guest_is_verified_with_its_firmware_and_a_copy_of_its_variable_store(
        make_guest, tmp_path):
    # The verify domain always has an agent channel, and the guest's /init starts qemu-ga
    # when it finds one, so the agent can answer before "userspace up" is printed (CI saw the
    # mark say "agent" once). "init started" is printed before the modules load and the agent
    # starts, and boot_and_wait reads the console again when the agent answers: the console
    # wins every time, which makes the mark deterministic.
    guest = make_guest(uefi=True, agent=False)
    job_id, last = run(SnapshotRequest(
        domain=guest.name, name="snaptui-test-verify-uefi", mode=Mode.LIVE,
        destination="library", library_dir=str(tmp_path / "lib"), verify=True,
        verify_console="snaptui-guest: init started"))
    assert last["event"] == "done", (last, notes(job_id))
    image = ImageLibrary(tmp_path / "lib").show(last["image_id"])
    assert image.properties["snaptui_verified"] == "console"
    # QEMU's own log of the verify domain: OVMF, q35, the scratch copy of the variable store,
    # the overlay on the image, and no network device
    qemu_log = Path(f"/var/log/libvirt/qemu/snaptui-verify-{job_id}.log").read_text()
    command = qemu_log[qemu_log.rindex("starting up"):].split("terminating on signal")[0]
    assert "OVMF_CODE" in command and "-machine pc-q35" in command
    assert f"{job_id}-vda.verify-VARS.fd" in command and str(guest.spec.nvram) not in command
    assert f"{job_id}-vda.verify.qcow2" in command
    assert "-netdev" not in command and "-nic " not in command
    TABLE.append(f"UEFI verify step: {step_seconds(job_id, 'verify:vda'):.1f} s")


# ---------------------------------------------------------------- the freeze's faults

def test_quiesce_require_is_refused_in_preflight_when_the_agent_does_not_answer(
        lab, tmp_path):
    before = capture(lab)
    hang_agent(lab.guest, 8)
    with pytest.raises(BadInput, match="--quiesce require: the guest agent"):
        asyncio.run(prepare(request(lab, tmp_path, "live", quiesce="require")))
    assert_lab_clean(lab, before)  # no journal, nothing touched
    lab.guest.wait_agent(timeout=60)


@pytest.mark.parametrize("quiesce", ["auto", "require"])
def test_agent_hung_during_freeze_is_thawed_and_the_job_goes_as_quiesce_says(
        lab, tmp_path, quiesce):
    before = capture(lab)
    req = request(lab, tmp_path, "live", out_format="qcow2", quiesce=quiesce)
    plan, steps = asyncio.run(prepare(req))  # the agent answers here
    hang_agent(lab.guest, 25)
    t0 = time.monotonic()
    job_id = launch(plan, req, steps)
    last = list(follow(job_id, timeout_s=300))[-1]
    said = notes(job_id)
    if quiesce == "auto":
        assert last["event"] == "done", (last, said)
        assert any(n.startswith("filesystems not frozen") and "crash-consistent" in n
                   for n in said), said
        image = ImageLibrary(tmp_path / "lib").show(last["image_id"])
        check = lab_guest_check.check_image(Path(image.location))
        assert check.fs_clean and check.records.ok, (check.fsck_output, check.records)
        assert_lab_clean(lab, before, job_id, statuses=("done",), library=tmp_path / "lib")
    else:
        assert last["event"] == "failed", last
        assert get_job(job_id).step("freeze").state in ("failed", "undone")
        assert_lab_clean(lab, before, job_id, error_contains=("--quiesce require",),
                         library=tmp_path / "lib")
    assert freeze_status(lab.guest) == "thawed"
    assert lab.guest.records().ok
    TABLE.append(f"hung agent, --quiesce {quiesce}: job {last['event']} in "
                 f"{time.monotonic() - t0:.0f} s, thawed")


def test_sigkill_while_frozen_then_recover_thaws_the_guest(lab, tmp_path, monkeypatch):
    before = capture(lab)
    gate = QemuImgFault(tmp_path, "convert", "gate")
    req = request(lab, tmp_path, "cold", out_format="qcow2")
    plan, steps = asyncio.run(prepare(req))
    assert [s.name for s in steps][:2] == ["freeze", "save"]
    monkeypatch.setenv("SNAPTUI_QEMU_IMG", str(gate.path))
    job_id = launch(plan, req, steps)
    try:
        gate.wait_arrived(job_id, timeout=120)
        assert get_job(job_id).facts.get("frozen_at"), "the guest was not frozen"
        kill_job(job_id)
    finally:
        gate.release()
    outcome = dict(recover())[job_id]
    assert outcome.startswith("rolled back") and "problems" not in outcome, outcome
    assert get_job(job_id).step("freeze").state == "undone"
    assert freeze_status(lab.guest) == "thawed"
    assert lab.guest.records().ok
    assert_lab_clean(lab, before, job_id, library=tmp_path / "lib", recovered=True)

