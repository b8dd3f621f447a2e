"""One measured run of each kind: the bare cold sequence, a ``snaptui snapshot`` CLI run, and
the throughput floor (raw disk read/write, loopback Glance upload)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_lab import (
    REPO,
    EventLog,
    Glance,
    ScratchSampler,
    allocated,
    evict,
    read_buffered_cold,
    read_direct,
    write_content,
    write_direct,
)
from lab_domains import LabDomain

SNAPTUI = REPO / ".venv" / "bin" / "snaptui"


@dataclass(frozen=True)
class Variant:
    """What one run does: ``tool`` bare|snaptui, snaptui ``mode``, output format, compression."""

    tool: str
    mode: str
    out_format: str
    compress: bool = False

    @property
    def fmt_label(self) -> str:
        return "qcow2+c" if self.compress else self.out_format

    @property
    def key(self) -> str:
        return f"{self.tool} {self.mode} {self.fmt_label}"


@dataclass
class Run:
    variant: Variant
    wall_s: float
    downtime_s: float  # from libvirt lifecycle events
    pauses: int
    peak_scratch: int
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    progress: dict[str, int] = field(default_factory=dict)  # step -> progress events
    journal_downtime_s: float | None = None
    output_bytes: int | None = None
    events: list[str] = field(default_factory=list)


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} {argv[1]} failed: {proc.stderr.strip()}")


def bare_cold(variant: Variant, lab: LabDomain, scratch: Path, glance: Glance, events: EventLog,
              compression_type: str) -> Run:
    """``virsh managedsave; qemu-img convert; openstack image create --file; virsh start``,
    exactly in that order (the guest stays down through the upload), timed per step."""
    src = lab.disk_path()
    evict(src)
    out = scratch / f"bare-{uuid.uuid4().hex[:8]}.{variant.out_format}"
    convert = ["qemu-img", "convert", "-f", "qcow2", "-O", variant.out_format]
    if variant.compress:
        convert += ["-c", "-o", f"compression_type={compression_type}"]
    convert += [str(src), str(out)]
    steps: dict[str, float] = {}
    image_id = None
    try:
        with ScratchSampler(scratch) as sampler:
            t0 = time.monotonic()
            _run(["virsh", "managedsave", lab.name])
            steps["save"] = time.monotonic() - t0
            t = time.monotonic()
            _run(convert)
            steps["convert"] = time.monotonic() - t
            output_bytes = out.stat().st_size
            t = time.monotonic()
            # `openstack image create --file` logs in to Keystone every time it runs: a fresh
            # session, timed (the shared one only cleans up).
            image_id, steps["upload"] = Glance.connect().create_upload(
                f"snaptui-bench-bare-{uuid.uuid4().hex[:6]}", out, variant.out_format)
            steps["image"] = time.monotonic() - t - steps["upload"]
            t = time.monotonic()
            _run(["virsh", "start", lab.name])
            steps["restart"] = time.monotonic() - t
            t1 = time.monotonic()
    finally:
        out.unlink(missing_ok=True)
        glance.delete(image_id)
    win = events.window(lab.name, t0, t1)
    return Run(variant, t1 - t0, win["downtime_s"], win["pauses"], sampler.peak, steps,
               output_bytes=output_bytes, events=win["events"])


def snaptui_cli(variant: Variant, lab: LabDomain, state: Path, glance: Glance,
                events: EventLog) -> Run:
    """``.venv/bin/snaptui snapshot DOMAIN --mode M --format F [--compress] --to glance --json``
    as a subprocess; step times and progress counts from its JSON events."""
    evict(lab.disk_path())
    scratch = state / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    for directory in (state.parent, state, scratch):  # QEMU (libvirt-qemu) must enter scratch
        directory.chmod(directory.stat().st_mode | 0o711)
    argv = [str(SNAPTUI), "snapshot", lab.name, "--name", f"snaptui-bench-{uuid.uuid4().hex[:6]}",
            "--mode", variant.mode, "--format", variant.out_format, "--to", "glance", "--json"]
    if variant.compress:
        argv.append("--compress")
    env = {**os.environ, "SNAPTUI_STATE_DIR": str(state), "SNAPTUI_SCRATCH_DIR": str(scratch)}
    evs: list[dict[str, Any]] = []
    with ScratchSampler(scratch) as sampler:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                text=True, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                evs.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        err = proc.stderr.read() if proc.stderr else ""
        rc = proc.wait()
        t1 = time.monotonic()
    last = evs[-1] if evs else {}
    glance.delete(last.get("image_id"))
    if rc != 0 or last.get("event") != "done":
        raise RuntimeError(f"snaptui {variant.key} failed (rc {rc}): {last} {err.strip()}")
    steps = {e["step"]: e["seconds"] for e in evs if e.get("event") == "step_finished"}
    progress: dict[str, int] = {}
    for e in evs:
        if e.get("event") == "progress":
            progress[e["step"]] = progress.get(e["step"], 0) + 1
    win = events.window(lab.name, t0, t1)
    sizes = last.get("sizes") or {}
    return Run(variant, t1 - t0, win["downtime_s"], win["pauses"], sampler.peak, steps,
               progress, journal_downtime_s=last.get("downtime_s"),
               output_bytes=sizes.get("uploaded"), events=win["events"])


def floor(lab: LabDomain, scratch: Path, glance: Glance, data: int) -> dict[str, float]:
    """Physical limits: O_DIRECT and cold buffered read of the source file, O_DIRECT write of
    the same size into scratch, and a glanceclient upload of that many random bytes."""
    src = lab.disk_path()
    out: dict[str, float] = {}
    n, secs = read_direct(src)
    out["read_direct"] = n / secs
    n, secs = read_buffered_cold(src)
    out["read_cold"] = n / secs
    size = allocated(src)
    out["write_direct"] = size / write_direct(scratch / "floor-write.bin", size)
    blob = scratch / "floor-upload.bin"
    image_id = None
    try:
        write_content(blob, size, "random")
        image_id, secs = glance.create_upload(f"snaptui-bench-floor-{uuid.uuid4().hex[:6]}",
                                              blob, "raw")
        out["glance_upload"] = size / secs
    finally:
        blob.unlink(missing_ok=True)
        glance.delete(image_id)
    return out


def clean_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
