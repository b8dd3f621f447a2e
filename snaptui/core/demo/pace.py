"""Pace the demo's jobs like a real hypervisor: each step takes the time it would on a real host.

On libvirt's ``test:///`` driver a managedsave is instant and the demo's disk files hold only a
small sample of a guest's data, so a job is over in a fraction of a second. ``pace_steps`` wraps
a job's steps so that each one (and each undo) lasts what the same step took on the real lab for
the demo disk's sizes, with the progress events a real one writes (convert: percent; upload:
bytes, rate and ETA), and can be cancelled at any moment as a real one can.

Rates, measured on the real lab (Debian 12, libvirt 9.0, QEMU 7.2, KVM, 2 cores, loopback
Keystone + Glance, 2026-11-30, ``/var/tmp`` on virtio disk):

================  ==========================================  =================================
step              measured                                    model used here
================  ==========================================  =================================
managedsave       no-OS guest, RAM filled with random data    1.6 s + touched RAM / 200 MiB/s
                  through a ``loader`` device: 1 GiB/0 MiB
                  random 1.7 s, 1 GiB/512 MiB 3.0-3.8 s,
                  2 GiB/1.5 GiB 9.3-10.0 s
restore (start)   same guests: 0.4 s, 1.7-3.1 s, 6.5-7.4 s    0.4 s + touched RAM / 230 MiB/s
convert, qcow2    ``qemu-img convert -O qcow2`` of 20 GiB     allocated / 940 MiB/s + 0.05 s
                  virtual / 1 GiB written, source evicted:
                  1.28 s; 40 GiB virtual, nothing written:
                  0.01 s (sparse costs nothing);
                  benchmarks/results/bare_vs_snaptui.md:
                  941 MiB/s (snaptui cold qcow2, mixed data)
convert, zstd     bare_vs_snaptui.md: 365 MiB/s of source,    allocated / 365 MiB/s, output
                  output 0.51x (mixed data, ~2:1)             0.51x allocated
convert, raw      bare_vs_snaptui.md: 961 MiB/s               allocated / 960 MiB/s
backup (push)     not measured apart (benchmarks/results/       data / 940 MiB/s (as a qcow2
                  modes.md: a whole backup job of 768 MiB     convert of the data)
                  to Glance in 7.21 s, upload included)
library copy      ``ImageLibrary.upload`` (copy + sha512) of  256 MiB/s
                  a 1 GiB qcow2: 4.0 s
Glance upload     glanceclient of 384 MiB random (lab         145 MiB/s
                  loaded): 69-79 MiB/s; bare_vs_snaptui.md:
                  144-147 MiB/s (quiet lab)
image create      library: instant; Glance 0.02-0.82 s        0.3 s
                  (0.13-0.23 s in the benchmarks)
qemu-img snapshot ``-c`` 0.007-0.012 s, ``-d`` 0.007-0.008 s  0.3 s (floor, see below)
                  on the 20 GiB / 1 GiB disk
remove scratch    ``ImageLibrary.delete`` of 1 GiB: 0.24 s    0.3 s
================  ==========================================  =================================

A guest's RAM counts as half touched (a long-running guest's page cache fills the rest of its
memory over time). The demo's disk files hold a sample of the data; a step is paced on
``DemoDisk.data_gib``, what a real guest of that size holds. Steps and undos shorter than
``MIN_STEP_S`` are stretched to it so that each one is seen on the jobs screen. ``speed``
divides every duration: 2 is twice as fast, 0 is no pacing at all (the tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from snaptui.core.demo.lab import DOMAINS
from snaptui.core.engine.context import PROGRESS_INTERVAL_S, JobContext
from snaptui.core.engine.facts import Fact
from snaptui.core.engine.plan import DiskPlan, Plan
from snaptui.core.engine.runner import Step, StepFn

MIB = 1024 * 1024
GIB = 1024 * MIB

SAVE_FIXED_S, SAVE_RATE = 1.6, 200 * MIB
RESTORE_FIXED_S, RESTORE_RATE = 0.4, 230 * MIB
CONVERT_FIXED_S = 0.05
CONVERT_RATE = {"qcow2": 940 * MIB, "raw": 960 * MIB, "compressed": 365 * MIB}
COMPRESSED_RATIO = 0.51
UPLOAD_RATE = {"library": 256 * MIB, "glance": 145 * MIB}
IMAGE_CREATE_S = 0.3
MIN_STEP_S = 0.3  # visible on the jobs screen, at speed 1
TOUCHED_RAM = 0.5
DEFAULT_SPEED = 1.0


def _nominal_data(path: str) -> int | None:
    """The bytes a real guest's disk holds (DemoDisk.data_gib) for demo disk file ``path``."""
    for dom in DOMAINS:
        for _target, disk in dom.disks:
            if Path(path).as_posix().endswith("/" + disk.file.removeprefix("../")):
                return int(disk.data_gib * GIB)
    return None


def _memory_bytes(plan: Plan) -> int:
    for dom in DOMAINS:
        if dom.uuid == plan.domain_uuid:
            return dom.memory_mib * MIB
    return 1024 * MIB


def data_bytes(disk: DiskPlan) -> int:
    """The data a real guest's disk of this shape holds (the demo file's own allocation when it
    is not a demo disk)."""
    return max(_nominal_data(disk.source_path) or 0, disk.actual_size or 0)


def output_bytes(plan: Plan, disk: DiskPlan) -> int:
    """The size of the extracted image a real convert of that data makes."""
    if plan.out_format == "raw":
        return disk.virtual_size
    data = data_bytes(disk)
    return int(data * COMPRESSED_RATIO) if plan.compress else data


def convert_seconds(plan: Plan, disk: DiskPlan) -> float:
    kind = "compressed" if plan.compress else ("raw" if plan.out_format == "raw" else "qcow2")
    return CONVERT_FIXED_S + data_bytes(disk) / CONVERT_RATE[kind]


def backup_seconds(plan: Plan) -> float:
    """A push-mode backup of every disk of the plan (the demo simulates it: demo_backup.py)."""
    return sum(CONVERT_FIXED_S + data_bytes(d) / CONVERT_RATE["qcow2"] for d in plan.disks)


def save_seconds(plan: Plan) -> float:
    return SAVE_FIXED_S + _memory_bytes(plan) * TOUCHED_RAM / SAVE_RATE


def restore_seconds(plan: Plan) -> float:
    return RESTORE_FIXED_S + _memory_bytes(plan) * TOUCHED_RAM / RESTORE_RATE


def upload_seconds(plan: Plan, disk: DiskPlan) -> float:
    return output_bytes(plan, disk) / UPLOAD_RATE.get(plan.destination, UPLOAD_RATE["glance"])


def _disk(plan: Plan, name: str) -> DiskPlan | None:
    target = name.partition(":")[2]
    return next((d for d in plan.disks if d.target == target), None)


def step_seconds(plan: Plan, name: str, *, undo: bool = False) -> float:
    """How long step ``name`` (or its undo) of ``plan`` takes on a real host, at speed 1."""
    kind, disk = name.partition(":")[0], _disk(plan, name)
    if undo:  # save is undone by a restore; every other undo removes what its step made
        seconds = restore_seconds(plan) if kind == "save" else 0.0
    elif kind == "save":
        seconds = save_seconds(plan)
    elif kind == "restart":
        seconds = restore_seconds(plan)
    elif kind == "convert" and disk is not None:
        seconds = convert_seconds(plan, disk)
    elif kind == "upload" and disk is not None:
        seconds = upload_seconds(plan, disk)
    elif kind == "backup":
        seconds = backup_seconds(plan)
    elif kind == "image":
        seconds = IMAGE_CREATE_S
    else:  # snapshot, unsnapshot, finish: well under a second on the lab
        seconds = 0.0
    return max(seconds, MIN_STEP_S)


def estimate_seconds(plan: Plan, steps: Sequence[Step]) -> float:
    """The whole job at speed 1 (what the demo shows it taking)."""
    return sum(step_seconds(plan, s.name) for s in steps)


async def _wait(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, PROGRESS_INTERVAL_S))


async def _percent(ctx: JobContext, seconds: float) -> None:
    """Percent progress from 0 to 100 over ``seconds``, like ``qemu-img convert -p``."""
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        ctx.progress(round(100.0 * elapsed / seconds, 2), 100.0, "%")
        await asyncio.sleep(PROGRESS_INTERVAL_S)
    ctx.progress(100.0, 100.0, "%")


async def _bytes(ctx: JobContext, seconds: float, total: int) -> None:
    """Bytes sent of ``total`` over ``seconds``, with the rate and ETA an upload reports."""
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        sent = int(total * elapsed / seconds)
        ctx.progress(sent, total, "bytes", rate=round(total / seconds),
                     eta_s=round(seconds - elapsed, 1))
        await asyncio.sleep(PROGRESS_INTERVAL_S)
    ctx.progress(total, total, "bytes", rate=round(total / seconds), eta_s=0.0)


def pace_note(plan: Plan, speed: float) -> str:
    """The job's note that says what the demo's times stand for."""
    held = ", ".join(f"{d.target} {data_bytes(d) / GIB:.1f} GiB" for d in plan.disks)
    return f"demo: paced like a real host at speed {speed:g}, as if the guest held {held} of data"


def demo_sizes(plan: Plan, disk: DiskPlan) -> dict[str, int]:
    """The size comparison of a paced job: the sizes its times stand for (the data a real
    guest's disk holds, and what a real convert and upload of it give), not the sample's."""
    data, output = data_bytes(disk), output_bytes(plan, disk)
    raw_source = disk.source_format == "raw"
    return {"source_virtual": disk.virtual_size, "source_actual": data,
            "source_apparent": disk.virtual_size if raw_source else data,
            "output_actual": output,
            "output_apparent": disk.virtual_size if plan.out_format == "raw" else output,
            "uploaded": output}


def paced_summary(ctx: JobContext, result: dict[str, Any]) -> dict[str, Any]:
    """The ``done`` event of a paced job: one set of sizes on the jobs screen, the ones the
    pacing used, each image marked ``demo`` (the files hold only a sample of them)."""
    plan = ctx.plan
    for image in result.get("images", []):
        disk = next((d for d in plan.disks if d.target == image.get("target")), None)
        if disk is not None:
            image["sizes"] = demo_sizes(plan, disk)
            image["demo"] = (f"demo sizes: as if {disk.target} held "
                             f"{data_bytes(disk) / GIB:.1f} GiB of data (the file holds a sample)")
    if result.get("images"):
        result["sizes"] = result["images"][0]["sizes"]
    result["demo_sizes"] = True
    return result


def _paced_run(step: Step, speed: float, *, first: bool) -> StepFn:
    kind = step.name.partition(":")[0]

    async def run(ctx: JobContext) -> None:
        plan = ctx.plan
        if first:
            ctx.note(pace_note(plan, speed))
        seconds = step_seconds(plan, step.name) / speed
        if kind == "restart":  # the guest stays down until its restore has finished
            await _wait(seconds)
            await step.run(ctx)
            return
        start = time.monotonic()
        ctx.mute_progress = True  # the sample file's own progress is over in a flash
        try:
            await step.run(ctx)
        finally:
            ctx.mute_progress = False
        # The real work on the sample counts towards the step's time.
        seconds = max(seconds - (time.monotonic() - start), MIN_STEP_S / speed)
        disk = _disk(plan, step.name)
        if kind == "convert":
            await _percent(ctx, seconds)
        elif kind == "upload" and disk is not None:
            await _bytes(ctx, seconds, output_bytes(plan, disk))
        elif kind == "backup":  # libvirt's backup job reports bytes processed
            await _bytes(ctx, seconds, sum(data_bytes(d) for d in plan.disks))
        else:
            await _wait(seconds)
    return run


def _paced_undo(step: Step, speed: float) -> StepFn | None:
    undo = step.undo
    if undo is None:
        return None

    async def run(ctx: JobContext) -> None:
        seconds = step_seconds(ctx.plan, step.name, undo=True) / speed
        if ctx.facts.get(Fact.GUEST_RESUMED_AT):  # restarted already: the undo finds it running
            seconds = MIN_STEP_S / speed
        await _wait(seconds)
        await undo(ctx)
    return run


def pace_steps(steps: Sequence[Step], speed: float = DEFAULT_SPEED) -> list[Step]:
    """``steps`` paced like a real host at ``speed`` (0: unchanged, as fast as possible)."""
    if speed <= 0:
        return list(steps)
    return [replace(s, action=replace(s.action, run=_paced_run(s, speed, first=i == 0),
                                      undo=_paced_undo(s, speed)))
            for i, s in enumerate(steps)]
