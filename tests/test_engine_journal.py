"""The job journal and the engine around it, on the real lab: stale recovers, a job process
that starts after recover ended its job, journals of other formats, the guest found paused,
and the dry-run's commands against the argv that really runs."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import libvirt
from cli_tools import snaptui
from fault_tools import REAL_QEMU_IMG, journal_events, wait_terminal

from snaptui.core.engine.execute import make_context
from snaptui.core.engine.jobs import launch, prepare, write_header
from snaptui.core.engine.journal import JournalWriter, journal_path, load_job
from snaptui.core.engine.liveness import active_dir
from snaptui.core.engine.locks import DomainLock
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.recover import recover, recover_job
from snaptui.core.engine.states import JobStatus
from snaptui.core.engine.steps.guest import restore_guest, save_guest
from snaptui.core.images.library import ImageLibrary


def request_for(lab, tmp_path: Path, mode: Mode = Mode.COLD) -> SnapshotRequest:
    return SnapshotRequest(domain=lab.name, name=f"snaptui-test-journal-{mode}", mode=mode,
                           destination="library", library_dir=str(tmp_path / "lib"))


def job_main(job_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snaptui.core.engine.job_main", job_id],
                          capture_output=True, text=True, timeout=120)


def terminal_events(job_id: str) -> list[str]:
    ends = {str(s) for s in JobStatus if s.terminal}
    return [e["event"] for e in journal_events(job_id) if e["event"] in ends]


# -- recover and the job process ---------------------------------------------------------------

def test_recover_with_a_stale_record_leaves_a_finished_job_alone(make_domain, tmp_path):
    """recover() reads a job before taking its lock; by then the job may have finished.
    recover_job must read the journal again under the lock, not roll back what it read."""
    lab = make_domain(state="shut off")
    request = request_for(lab, tmp_path)
    plan, steps = asyncio.run(prepare(request))
    job_id = launch(plan, request, steps)
    stale = load_job(job_id)  # as recover() saw it: nothing run yet
    job = wait_terminal(job_id)
    assert job.status == JobStatus.DONE, job.error
    image_id = job.result["image_id"]

    outcome = recover_job(stale)

    assert outcome.startswith("skipped"), outcome
    assert load_job(job_id).status == JobStatus.DONE
    assert terminal_events(job_id) == ["done"]
    assert "recovering" not in [e["event"] for e in journal_events(job_id)]
    assert ImageLibrary(tmp_path / "lib").show(image_id).name == request.name


def test_job_process_does_not_run_a_job_recover_declared_dead(make_domain, tmp_path):
    """A job whose process never wrote its pid is declared dead by recover after the grace
    time; if that process starts after all, it must not run the job behind recover's back."""
    lab = make_domain(state="running")
    request = request_for(lab, tmp_path)
    plan, steps = asyncio.run(prepare(request))
    write_header(plan, request, steps).close()  # the launcher wrote it; no process came
    dom_id = lab.dom.ID()

    outcomes = dict(recover(now=load_job(plan.job_id).started + 3600))
    assert outcomes.get(plan.job_id, "").startswith("rolled back"), outcomes
    before = journal_events(plan.job_id)

    proc = job_main(plan.job_id)

    assert proc.returncode == 0, proc.stderr
    assert "already" in proc.stderr
    assert journal_events(plan.job_id) == before  # no pid, no step, no second end
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and lab.dom.ID() == dom_id
    assert not (tmp_path / "lib").exists() or not any((tmp_path / "lib").iterdir())


def test_job_process_leaves_the_end_to_recover_holding_the_lock(make_domain, tmp_path):
    """While recover holds the domain lock for this very job, the job's late process neither
    runs nor writes a second end of its own."""
    lab = make_domain(state="shut off")
    request = request_for(lab, tmp_path)
    plan, steps = asyncio.run(prepare(request))
    write_header(plan, request, steps).close()
    before = journal_events(plan.job_id)
    with DomainLock(plan.domain_uuid, f"recover {plan.job_id}").acquire(plan.domain_name):
        proc = job_main(plan.job_id)
    assert proc.returncode == 0, proc.stderr
    assert journal_events(plan.job_id) == before  # no "failed" of its own


# -- journal formats ---------------------------------------------------------------------------

def _rewrite_header(job_id: str, change) -> None:
    path = journal_path(job_id)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    change(events[0])
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def test_journal_of_an_older_snaptui_is_read_and_recovered(make_domain, tmp_path):
    """No format number, fields it did not have, keys it had that are gone now: recover and
    `snaptui jobs` read it all without a traceback, and roll the dead job back."""
    lab = make_domain(state="shut off")
    request = request_for(lab, tmp_path)
    plan, steps = asyncio.run(prepare(request))
    write_header(plan, request, steps).close()

    def older(header: dict) -> None:
        header.pop("format", None)
        for key in ("domain_targets", "base_image_ref", "mode_reason", "host"):
            header["plan"].pop(key)
        header["plan"]["retired_option"] = 3
        for disk in header["plan"]["disks"]:
            disk.pop("backing_format")
            disk["old_disk_key"] = "x"
        header["request"].pop("library_dir")
        header["request"]["retired_flag"] = True
        header["t"] -= 3600  # long past the start-up grace
    _rewrite_header(plan.job_id, older)

    proc = snaptui("recover")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"{plan.job_id}: rolled back" in proc.stdout + proc.stderr
    assert load_job(plan.job_id).status == JobStatus.FAILED
    listed = json.loads(snaptui("jobs", "--json").stdout)
    assert [j["job_id"] for j in listed] == [plan.job_id]


def test_journal_of_an_unknown_format_is_one_line_and_left_alone(make_domain, tmp_path):
    lab = make_domain(state="shut off")
    request = request_for(lab, tmp_path)
    plan, steps = asyncio.run(prepare(request))
    write_header(plan, request, steps).close()
    _rewrite_header(plan.job_id, lambda h: h.update(format=99, t=h["t"] - 3600))
    before = journal_path(plan.job_id).read_bytes()

    proc = snaptui("jobs", "--json")  # recover runs first, as before every command
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if plan.job_id in line]
    assert len(lines) == 1 and "format 99" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert [j["job_id"] for j in json.loads(proc.stdout)] == [plan.job_id]

    cancel = snaptui("cancel", plan.job_id)
    assert cancel.returncode != 0
    errors = [line for line in cancel.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "format 99" in errors[0], cancel.stderr
    assert "Traceback" not in cancel.stderr

    assert journal_path(plan.job_id).read_bytes() == before  # nothing written to it
    assert (active_dir() / plan.job_id).exists()  # left for the snaptui that reads it


# -- the guest found paused --------------------------------------------------------------------

def _context(lab, tmp_path: Path):
    plan, _ = asyncio.run(prepare(request_for(lab, tmp_path)))
    journal = JournalWriter(tmp_path / "journal.jsonl")
    return make_context(plan, journal), journal


def _notes(journal: JournalWriter) -> list[str]:
    return [json.loads(line).get("text", "") for line in journal.path.read_text().splitlines()
            if json.loads(line)["event"] == "note"]


def test_guest_left_paused_by_the_save_is_resumed(make_domain, tmp_path):
    """managedSave pauses the vCPUs; a save that cannot resume them leaves the guest paused.
    The save step records that, and the restart resumes such a guest."""
    lab = make_domain(state="running")
    ctx, journal = _context(lab, tmp_path)
    asyncio.run(save_guest(ctx))
    assert not lab.dom.isActive()
    lab.dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)  # as a save undone half-way
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED

    asyncio.run(restore_guest(ctx))

    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert _notes(journal)[-1] == "guest resumed"
    journal.close()


def test_guest_paused_by_someone_else_is_not_reported_running(make_domain, tmp_path):
    lab = make_domain(state="running")
    ctx, journal = _context(lab, tmp_path)
    lab.dom.suspend()  # the operator paused it; snaptui did not

    asyncio.run(restore_guest(ctx))

    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED  # not ours to resume
    note = _notes(journal)[-1]
    assert "paused" in note and "running" not in note, note
    journal.close()
    lab.dom.resume()


# -- dry run -----------------------------------------------------------------------------------

def test_dry_run_shows_the_convert_argv_that_runs(make_domain, tmp_path):
    """The journal's step commands are what --dry-run prints; the convert's must be the argv
    qemu-img is really called with (a logging wrapper records it)."""
    lab = make_domain(state="shut off")
    calls = tmp_path / "calls"
    wrapper = tmp_path / "qemu-img-logging"
    wrapper.write_text("#!/bin/sh\n"
                       f'if [ "$1" = convert ]; then printf "%s\\0" "$0" "$@" > {calls}; fi\n'
                       f'exec {REAL_QEMU_IMG} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "SNAPTUI_QEMU_IMG": str(wrapper)}
    lib = ["--to", "library", "--library", str(tmp_path / "lib"), "--mode", "cold"]

    dry = snaptui("snapshot", lab.name, "--name", "snaptui-test-argv", *lib, "--dry-run",
                  env=env)
    assert dry.returncode == 0, dry.stderr
    printed = [shlex.split(line) for line in dry.stdout.splitlines() if " convert " in line]
    assert len(printed) == 1 and printed[0][0] == str(wrapper), dry.stdout

    run = snaptui("snapshot", lab.name, "--name", "snaptui-test-argv", *lib, "--json", env=env)
    assert run.returncode == 0, run.stderr
    header = json.loads(run.stdout.splitlines()[0])
    command = next(s["command"] for s in header["steps"] if s["name"] == "convert:vda")
    ran = calls.read_bytes().decode().split("\0")[:-1]
    assert shlex.split(command) == ran
    # the dry run printed the same command, but for its own job's scratch file
    assert printed[0][:-1] == ran[:-1]


# -- one look for every state ------------------------------------------------------------------

def test_every_state_has_one_glyph_and_colour_for_cli_and_dashboard():
    from rich.text import Text

    from snaptui.cli.job_view import render_job
    from snaptui.core.engine.journal import JobRecord, StepRecord
    from snaptui.core.engine.states import UNKNOWN, StepState, look
    from snaptui.ui.screens.jobs_screen import render_steps, state_text

    for state in [*StepState, *JobStatus]:
        assert look(state) != UNKNOWN, state
    assert look("from-a-newer-journal") == UNKNOWN
    job = JobRecord("j", Path("j.jsonl"), steps=[StepRecord(s, f"step {s}", s) for s in StepState])
    cli_rows = render_job(job).renderables[-1].columns[0]._cells
    ui_rows = render_steps(job, 0.0).columns[0]._cells
    for state, cli, ui in zip(StepState, cli_rows, ui_rows, strict=True):
        assert isinstance(cli, Text) and isinstance(ui, Text)
        assert (cli.plain, str(cli.style)) == (ui.plain, str(ui.style)) == look(state)
    assert state_text(JobStatus.LOST).plain == f"{look(JobStatus.LOST)[0]} lost"
