"""The fault matrix: every workflow × its steps × the faults that can be injected there for real.

The cases are generated from the workflows' own step lists (``build_steps`` on a plan of each
mode) crossed with ``FAULTS``, a table of which faults each kind of step can receive and how:

- ``fail``: the step's process fails (a qemu-img on SNAPTUI_QEMU_IMG that refuses once);
- ``enospc``: the scratch (or --keep-local) filesystem is a small tmpfs that fills up;
- ``5xx`` / ``reset`` / ``401``: Glance, through a loopback proxy, answers 503, resets the
  connection mid-body, or answers 401 as for an expired token (tests/glance_proxy.py); on a 401
  keystoneauth gets a new token and retries: the create then succeeds; the upload's retry sends
  the rest of an already half-read stream, Glance refuses the size (400), and snaptui, seeing
  the renewed login, uploads again from byte 0 (a fresh hash, checked against Glance's);
- ``glance-down``: Glance's gunicorn is SIGKILLed while the job talks to it (then restarted);
- ``libvirtd``: libvirtd is stopped and started again while the step runs;
- ``destroy``: someone else runs `virsh destroy` on the guest while the step runs;
- ``cancel``: the operator cancels (SIGTERM to the job, as `snaptui cancel`);
- ``kill``: the job process is SIGKILLed, then `recover` runs as the next snaptui start would;
- ``hup``: the job gets SIGHUP (its terminal went away): it must finish.

The job is held inside the named step by a gate (the qemu-img wrapper waits, or the proxy holds
the request) or caught while the step's progress moves (a 1 GiB disk), so each fault lands in
that step; the journal must name it as the failing step. After each case the shared checker
(fault_tools.lab_problems) compares the guest, its XML, disks, scratch, the image store and the
journal with the state before. Run with ``-s`` for the case → outcome table.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest
from fault_seam import snaptui_faults as faults
from fault_tools import (
    MID_STEP_BWLIMIT,
    STATE_NAMES,
    QemuImgFault,
    capture,
    ensure_libvirtd,
    fill,
    group_members,
    journal_events,
    kill_glance,
    kill_job,
    lab_problems,
    lab_up,
    step_running,
    stop_libvirtd,
    tmpfs,
    wait_for,
    wait_terminal,
)
from glance_proxy import CREATE, FAULT_CLOUD, UPLOAD, ProxiedCloud, Rule, start_proxied_cloud

from snaptui.core.engine.jobs import cancel_job, get_job, job_log_path, launch, prepare
from snaptui.core.engine.plan import DiskPlan, Mode, Plan, SnapshotRequest
from snaptui.core.engine.recover import recover
from snaptui.core.engine.workflows import build_steps
from snaptui.core.images.glance import GlanceImages

ALL = ("cold", "internal", "live", "backup")
# "stream": backup in pull mode, read over NBD straight into Glance (--stream, qcow2)
MODES = (*ALL, "stream")
# step kind -> {fault: modes it runs in}. Glance faults hit the same publish steps in every
# mode, so they are spread over the modes instead of repeated.
FAULTS: dict[str, dict[str, tuple[str, ...]]] = {
    "save": {"destroy": ALL, "kill": ALL, "cancel": ALL},
    "snapshot": {"fail": ALL, "kill": ALL, "cancel": ALL},
    "convert": {"fail": ALL, "enospc": ALL, "kill": ALL, "cancel": ALL, "hup": ("cold",),
                "libvirtd": ("cold",)},
    "unsnapshot": {"fail": ALL, "kill": ALL},
    "delta": {"fail": ALL, "enospc": ALL, "kill": ALL, "cancel": ALL},
    "copy": {"enospc": ALL, "destroy": ALL, "kill": ALL, "cancel": ALL},
    "backup": {"fail": ALL, "enospc": ALL, "destroy": ALL, "kill": ALL, "cancel": ALL,
               "libvirtd": ALL},
    "image": {"5xx": ("cold",), "401": ("live",), "kill": ("internal",),
              "reset": ("backup",)},
    "upload": {"5xx": ("internal", "backup"), "reset": ("cold", "live"), "401": ("cold",),
               "kill": ("live", "backup"), "cancel": ("internal",), "hup": ("live",),
               "glance-down": ("backup",)},
    "finish": {"enospc": ("cold",)},
    "export": {"fail": ("stream",), "kill": ("stream",)},
    "stream": {"cancel": ("stream",), "kill": ("stream",), "5xx": ("stream",),
               "destroy": ("stream",),
               "reset": ("stream",), "libvirtd": ("stream",), "glance-down": ("stream",)},
    # --verify: the lab's domains run no OS, so their image never boots: a short
    # --verify-timeout is a failed verification; kill and cancel land while it waits
    "verify": {"fail": ("cold", "internal"), "kill": ("live",), "cancel": ("backup",)},
    # --quiesce auto: the lab's domains have no agent, so the refusals are injected
    # (SNAPTUI_FAULT); the real guest's hung agent and a SIGKILL while frozen are in
    # tests/test_verify_quiesce.py
    "freeze": {"fail": ("live",)},
    "thaw": {"fail": ("live",)},
}
# step kind -> SNAPTUI_FAULT for its "fail": the freeze refused (auto: crash-consistent, done);
# the freeze "succeeds", the thaw step's thaw fails and the rollback's thaw goes through
AGENT_FAULTS = {"freeze": "freeze:fsFreeze",
                "thaw": "freeze:fsFreeze=ok,thaw:fsThaw,freeze:fsThaw=ok"}
# live and backup convert their copy only when compressing (else the copy is the image)
MODE_OPTIONS: dict[str, dict[str, Any]] = {"live": {"compress": True},
                                           "backup": {"compress": True}}
QEMU_IMG_CALL = {"snapshot": "snapshot -c", "unsnapshot": "snapshot -d", "convert": "convert",
                 "delta": "create", "backup": "create", "export": "create"}
SMALL = {"size": "64M", "seed": "32M"}
BIG = {"size": "1G", "seed": "768M"}  # block copy / backup slow enough to act mid-step
MID_STEP = {("copy", f) for f in ("destroy", "kill", "cancel")} | {
    ("backup", f) for f in ("destroy", "kill", "cancel", "libvirtd")} | {
    ("verify", f) for f in ("kill", "cancel")} | {
    ("stream", f) for f in ("kill", "cancel", "libvirtd", "destroy")}
BIG_KINDS = ("copy", "backup", "stream")
PACED_KINDS = ("copy", "stream")  # the steps --bwlimit reaches (a push backup has no cap)


def workflow_steps(mode: str) -> list[str]:
    """The real step names of ``mode`` for a running guest with one disk."""
    opts = MODE_OPTIONS.get(mode, {})
    streamed = mode == "stream"
    mode = "backup" if streamed else mode
    disk = DiskPlan(target="vda", source_path="/d.qcow2", source_format="qcow2",
                    virtual_size=1 << 26, actual_size=1 << 25, apparent_size=1 << 25,
                    backing_file=None, image_name="x", output_path="/s/o.partial",
                    delta_path="/s/d" if mode == "live" else None,
                    backup_path="/s/b" if mode == "backup" else None)
    plan = Plan(job_id="x", uri="qemu:///system", domain_name="x", domain_uuid="u",
                original_state="running", mode=Mode(mode), mode_reason="", out_format="qcow2",
                compress=bool(opts.get("compress")),
                compression_type="zstd" if opts.get("compress") else None,
                destination="glance", cloud=None, library_dir=None, keep_local=None,
                snapshot_name="s" if mode == "internal" else None, base_image_ref=None,
                host="h", disks=[disk], domain_targets=["vda"], verify=not streamed,
                stream=streamed, nbd_socket="/s/x.sock" if streamed else None)
    return [s.name for s in build_steps(plan)]


@dataclass(frozen=True)
class Case:
    mode: str
    step: str
    fault: str

    @property
    def kind(self) -> str:
        return self.step.split(":")[0]

    @property
    def id(self) -> str:
        return f"{self.mode}-{self.step}-{self.fault}"


def matrix() -> tuple[list[Case], list[str]]:
    cases, uncovered = [], []
    for mode in MODES:
        for step in workflow_steps(mode):
            faults = [f for f, modes in FAULTS.get(step.split(":")[0], {}).items()
                      if mode in modes]
            cases += [Case(mode, step, f) for f in faults]
            if not FAULTS.get(step.split(":")[0]):
                uncovered.append(f"{mode}:{step}")
    return cases, uncovered


CASES, UNCOVERED = matrix()


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table():
    rows: list[tuple[str, str]] = []
    t0 = time.monotonic()
    yield rows
    width = max((len(case) for case, _ in rows), default=4)
    print(f"\n\nfault matrix: {len(rows)} cases in {time.monotonic() - t0:.0f} s; case → outcome")
    for case, outcome in rows:
        print(f"  {case:<{width}}  {outcome}")
    print("  steps with no injectable fault here: " + ", ".join(UNCOVERED))


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory):
    proxied = start_proxied_cloud(tmp_path_factory.mktemp("fault-cloud"))
    yield proxied
    proxied.stop()


@pytest.fixture(scope="module")
def glance(cloud: ProxiedCloud) -> GlanceImages:
    return GlanceImages.from_cloud()  # the lab's cloud, straight to Glance


# -- one case ----------------------------------------------------------------------------------

def outcome_text(job_id: str, state: str) -> str:
    job = get_job(job_id)
    failed = next((ev["step"] for ev in journal_events(job_id)
                   if ev.get("event") == "step_failed"), None)
    undone = [s.name for s in job.steps if s.state == "undone"]
    verdict = {"done": "completed", "failed": "rolled back", "cancelled": "rolled back"}.get(
        job.status, job.status)
    text = f"{verdict} ({job.status}{', recovered' if job.recovered else ''}"
    text += f" at {failed})" if failed else ")"
    if undone:
        text += f"; undone {','.join(undone)}"
    error = " ".join((job.error or "").split())
    return f"{text}; guest {state}" + (f"; {error[:110]}" if error else "")


def glance_leftovers(glance: GlanceImages, name: str, done: bool) -> list[str]:
    """Images named ``name`` that should not be there (any, or all but one active if done);
    they are deleted so that a failing case does not leave them behind."""
    mine = [i for i in glance.iter_images() if i.name == name]
    keep = [i for i in mine if i.status == "active"][:1] if done else []
    bad = [i for i in mine if i not in keep]
    for image in mine:
        with contextlib.suppress(Exception):
            glance.delete(image.id)
    return [f"glance image {i.id} left {i.status}" for i in bad]


class Injector:
    """Sets up a case's fault before the job starts and fires it once the job is in the step."""

    def __init__(self, case: Case, lab: Any, tmp_path: Path, cloud: ProxiedCloud,
                 monkeypatch: pytest.MonkeyPatch, libvirt_uri: str) -> None:
        self.case, self.lab, self.tmp, self.cloud = case, lab, tmp_path, cloud
        self.monkeypatch, self.uri = monkeypatch, libvirt_uri
        self.qemu: QemuImgFault | None = None
        self.rule: Rule | None = None
        self.recover_result: str | None = None
        self.stack = contextlib.ExitStack()

    def request(self) -> SnapshotRequest:
        c = self.case
        glance = c.kind in ("image", "upload") or c.mode == "stream"
        opts = dict(MODE_OPTIONS.get(c.mode, {}))
        if c.mode == "stream":
            opts.update(stream="on")  # the default format, qcow2: written by qcow2_stream
        if c.kind == "finish":
            keep = self.stack.enter_context(tmpfs(self.tmp / "keep", "48M"))
            opts["keep_local"] = str(keep / "image.qcow2")
        if c.kind == "verify":
            opts.update(verify=True, verify_accel="tcg",
                        verify_timeout=2.0 if c.fault == "fail" else 120.0)
        if (c.kind, c.fault) in MID_STEP and c.kind in PACED_KINDS:
            opts["bwlimit"] = MID_STEP_BWLIMIT  # the step lasts while the fault is fired
        return SnapshotRequest(
            domain=self.lab.name, name=f"snaptui-test-fm-{uuid.uuid4().hex[:8]}",
            mode=Mode.BACKUP if c.mode == "stream" else Mode(c.mode),
            destination="glance" if glance else "library",
            cloud=FAULT_CLOUD if glance else None,
            library_dir=None if glance else str(self.tmp / "lib"), **opts)

    def arm(self) -> None:
        """Everything that must be in place before the job starts."""
        c = self.case
        self.monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(self.cloud.config_file))
        if c.fault == "enospc" and c.kind != "finish":
            # inside the test's scratch dir, which QEMU (libvirt-qemu) can enter
            small = Path(os.environ["SNAPTUI_SCRATCH_DIR"]) / "fs"
            scratch = self.stack.enter_context(tmpfs(small, "96M", 0o711))
            self.monkeypatch.setenv("SNAPTUI_SCRATCH_DIR", str(scratch))
        if c.kind in AGENT_FAULTS:
            faults.install_in(self.monkeypatch, AGENT_FAULTS[c.kind])
        call = QEMU_IMG_CALL.get(c.kind)
        if call and (c.kind, c.fault) not in MID_STEP and (
                c.fault != "enospc" or c.kind == "convert"):
            action = "fail" if c.fault == "fail" else "gate"
            self.qemu = QemuImgFault(self.tmp, call, action,
                                     message=f"injected fault: {call} refused")
        if c.kind in ("image", "upload") or (c.kind, c.fault) in (
                ("stream", "5xx"), ("stream", "reset"), ("stream", "glance-down")):
            path, method = (CREATE, "POST") if c.kind == "image" else (UPLOAD, "PUT")
            action = {"5xx": "status", "401": "status", "reset": "reset"}.get(c.fault, "hold")
            self.rule = self.cloud.glance.add(Rule(
                method, path, action, code=401 if c.fault == "401" else 503,
                after=0 if c.kind == "image" else 1 << 20))

    def after_prepare(self) -> None:
        """Preflight has passed (it probes qemu-img and checks space): now break things."""
        if self.qemu is not None:  # for the job process only
            self.monkeypatch.setenv("SNAPTUI_QEMU_IMG", str(self.qemu.path))
        if self.case.kind == "finish":
            fill(self.tmp / "keep", 8 << 20)
        elif self.case.fault == "enospc" and self.case.kind != "convert":
            leave = {"delta": 0}.get(self.case.kind, 4 << 20)
            fill(Path(os.environ["SNAPTUI_SCRATCH_DIR"]), leave)

    def release(self) -> None:
        if self.qemu is not None:
            self.qemu.release()
        if self.rule is not None:
            self.rule.release()

    def wait_in_step(self, job_id: str) -> None:
        c = self.case
        if (c.kind, c.fault) in MID_STEP:
            wait_for(job_id, step_running(c.step, min_done=1), timeout=90,
                     what=f"progress of {c.step}")
        elif self.qemu is not None and c.fault != "fail":
            self.qemu.wait_arrived(job_id)
        elif self.rule is not None and self.rule.action == "hold":
            self.rule.wait_arrived()
        elif c.kind == "save":
            wait_for(job_id, step_running("save"), timeout=60, what="the managed save")
        else:
            return  # the fault is already in place (a failing tool, a full disk, an answer)
        assert get_job(job_id).step(c.step).state == "running", f"job is not in {c.step}"

    def fire(self, job_id: str) -> None:
        """Inject the fault into the running step and let the job go on."""
        fault = self.case.fault
        if fault == "enospc" and self.case.kind == "convert":  # the copy before it had room
            fill(Path(os.environ["SNAPTUI_SCRATCH_DIR"]), 0)
        elif fault == "destroy":
            self.lab.dom.destroy()
        elif fault == "cancel":
            assert cancel_job(job_id) == "cancel requested"
        elif fault == "hup":
            os.kill(get_job(job_id).pid, signal.SIGHUP)  # type: ignore[arg-type]
        elif fault == "kill":
            pid = kill_job(job_id)
            if self.rule is not None:  # the request in flight reaches Glance, as in a crash
                self.rule.release()
                self.rule.finished.wait(30)
            outcomes = dict(recover())
            assert job_id in outcomes, f"recover did not act on {job_id}: {outcomes}"
            self.recover_result = outcomes[job_id]
            assert not group_members(pid), "processes of the killed job survived recover"
        elif fault == "libvirtd":
            try:
                stop_libvirtd()
            finally:
                ensure_libvirtd(self.uri)
            self.lab.conn = libvirt.open(self.uri)
        elif fault == "glance-down":
            try:
                kill_glance()
                self.release()
                wait_terminal(job_id, timeout=120)
            finally:
                lab_up()
        self.release()


def expected(case: Case, original: str) -> tuple[tuple[str, ...], str]:
    """Terminal events allowed and the guest state expected after the case."""
    state = original
    if case.fault == "destroy" and case.mode in ("live", "backup", "stream"):
        state = "shut off"  # the job does not start a guest it did not stop
    if case.fault in ("hup", "401") or (case.kind, case.fault) == ("freeze", "fail"):
        # SIGHUP is ignored; on a 401 keystoneauth logs in again (and an upload whose stream
        # it re-sent half read starts again from byte 0)
        return ("done",), state
    if case.fault == "cancel":
        return ("cancelled",), state
    if case.fault == "libvirtd" or (case.fault, case.kind) == ("destroy", "save"):
        # A destroy that lands as managedSave finishes only stops a guest already saved: the
        # job then completes and restores it, which is as right as rolling back.
        return ("failed", "done"), state
    return ("failed",), state


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, make_domain, tmp_path, monkeypatch, cloud, glance, libvirt_uri,
               table):
    if case.fault in ("libvirtd", "glance-down") and os.environ.get("SNAPTUI_NO_DISRUPT"):
        pytest.skip("SNAPTUI_NO_DISRUPT set: no libvirtd restart or Glance kill")
    big = (case.kind, case.fault) in MID_STEP and case.kind in BIG_KINDS
    lab = make_domain(state="running", **(BIG if big else SMALL))
    before = capture(lab)
    inj = Injector(case, lab, tmp_path, cloud, monkeypatch, libvirt_uri)
    job_id = None
    try:
        with inj.stack:
            inj.arm()
            request = inj.request()
            plan, steps = asyncio.run(prepare(request))
            assert case.step in [s.name for s in steps], f"{case.step} not in the real workflow"
            inj.after_prepare()
            job_id = launch(plan, request, steps)
            inj.wait_in_step(job_id)
            inj.fire(job_id)
            wait_terminal(job_id, timeout=120)
            for filler in Path(os.environ.get("SNAPTUI_SCRATCH_DIR", "/nonexistent")).glob(
                    "filler"):
                filler.unlink()
            later = dict(recover())  # as the next snaptui start would (retries failed undos)
            if job_id in later:
                inj.recover_result = (inj.recover_result or "") + f" then {later[job_id]}"
            statuses, state = expected(case, before.state)
            check_before = dataclasses.replace(before, state=state)
            problems = lab_problems(lab, check_before, job_id, statuses=statuses,
                                    library=tmp_path / "lib",
                                    recovered=True if case.fault == "kill" else None)
            problems += fault_hit_step(case, job_id)
            if (case.kind, case.fault) == ("upload", "401") and "uploading it again from the " \
                    "start" not in job_log_path(job_id).read_text():
                problems.append("the upload was not started again from byte 0")
            if case.kind == "finish":
                left = sorted(p.name for p in (tmp_path / "keep").iterdir() if p.name != "filler")
                problems += [f"--keep-local files left: {left}"] if left else []
            if request.destination == "glance":
                problems += glance_leftovers(glance, request.name, get_job(job_id).status == "done")
            now = STATE_NAMES.get(lab.dom.state()[0], "?")
    finally:
        inj.release()
        cloud.glance.reset_rules()
    row = outcome_text(job_id, now)
    if inj.recover_result:
        row += f" [recover: {inj.recover_result.strip()}]"
    table.append((case.id, row + ("" if not problems else " !! " + "; ".join(problems))))
    assert not problems, f"{case.id} (job {job_id}): " + "; ".join(problems)


def fault_hit_step(case: Case, job_id: str) -> list[str]:
    """The journal names the case's step as the one the fault hit (or the job completed)."""
    job = get_job(job_id)
    if job.status == "done":
        return [] if "done" in expected(case, "")[0] else [
            "job completed despite the fault"]
    if job.recovered:
        return [] if f"during {case.step}" in (job.error or "") else [
            f"recover says {job.error!r}, not during {case.step}"]
    failed = [ev["step"] for ev in journal_events(job_id) if ev.get("event") == "step_failed"]
    if failed[:1] != [case.step]:
        return [f"failing step {failed[:1]}, expected {case.step}"]
    return []
