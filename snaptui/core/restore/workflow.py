"""The restore workflows, each a list of steps read like the runbook it automates.

Built from a RestorePlan alone, so ``recover`` rebuilds the same steps to undo them; importing
this module registers the ``restore`` job kind with the engine (core/engine/job_kinds.py).
"""

from __future__ import annotations

from typing import Any, cast

from snaptui.core.engine.context import JobContext
from snaptui.core.engine.job_kinds import JobKind, register
from snaptui.core.engine.plan import Plan
from snaptui.core.engine.runner import Step, downtime
from snaptui.core.restore import steps as do
from snaptui.core.restore.plan import (
    ACTION_NEW,
    ACTION_UNDO,
    KIND,
    RestoreDisk,
    RestoreFact,
    RestorePlan,
)


def _cmd(*argv: object) -> tuple[str, ...]:
    return tuple(str(a) for a in argv)


def _stop(plan: RestorePlan) -> list[Step]:
    if not plan.guest_active:
        return []
    how = ", then power off" if plan.force else ""
    return [Step("shutdown", f"Shut down guest (ACPI/agent, up to "
                 f"{plan.shutdown_timeout_s:g} s{how})", do.stop_guest(), destructive=True,
                 equivalent=_cmd("virsh", "shutdown", plan.domain_name))]


def _start(plan: RestorePlan) -> list[Step]:
    if not plan.start:
        return []
    return [Step("start", "Start guest", do.start_guest(), interruptible=False,
                 destructive=True, equivalent=_cmd("virsh", "start", plan.domain_name))]


def _save_command(plan: RestorePlan, path: str) -> tuple[str, ...]:
    if plan.destination == "library" and plan.library_dir:
        return _cmd("cp", "--sparse=always",
                    f"{plan.library_dir}/{plan.image_id}.{plan.image_format}", path)
    return _cmd("openstack", "image", "save", "--file", path, plan.image_id)


def _new_file(plan: RestorePlan, d: RestoreDisk) -> list[Step]:
    """Download (and convert) the image into the hidden new file beside the disk."""
    partial = d.partial_path(plan.job_id)
    converts = d.converts(plan.image_format)
    got = d.staging_path(plan.job_id) if converts else partial
    steps = [Step(f"download:{d.target}", f"Download image {plan.image_name!r} beside "
                  f"{d.target} ({plan.image_format}, sha512 checked)", do.download_image(d),
                  destructive=True, target=d.target, equivalent=_save_command(plan, got))]
    if d.overlay_base:
        steps += [
            Step(f"overlay:{d.target}", f"Make the new {d.target} a qcow2 overlay over the "
                 "downloaded image", do.overlay_image(d), destructive=True, target=d.target,
                 equivalent=_cmd("qemu-img", "create", "-f", "qcow2", "-b", got, "-F",
                                 plan.image_format, partial)),
            Step(f"rebase:{d.target}", f"Rebase it onto {d.overlay_base}, the base of the "
                 "chain (only what differs is written; the base is only read)",
                 do.rebase_image(d), destructive=True, target=d.target,
                 equivalent=_cmd("qemu-img", "rebase", "-f", "qcow2", "-b", d.overlay_base,
                                 "-F", d.overlay_base_format or "raw", partial)),
        ]
    elif converts:
        steps.append(Step(f"convert:{d.target}",
                          f"Convert {plan.image_format} to {d.format} beside {d.target}",
                          do.convert_image(d), destructive=True, target=d.target))
    return steps


def _restore(plan: RestorePlan) -> list[Step]:
    steps = _stop(plan)
    for d in plan.disks:
        partial = d.partial_path(plan.job_id)
        pre = d.pre_restore_path(plan.job_id)
        steps += _new_file(plan, d) + [
            Step(f"prepare:{d.target}", f"Check the new {d.target}; copy owner, group and "
                 "mode from the old one", do.prepare_file(d), target=d.target,
                 equivalent=_cmd("chown", f"--reference={d.path}", partial)),
            Step(f"keep:{d.target}", f"Keep the old {d.target} as {pre}", do.keep_old(d),
                 interruptible=False, destructive=True, target=d.target,
                 equivalent=_cmd("ln", d.path, pre)),
            Step(f"swap:{d.target}", f"Put the restored {d.target} in place (one rename)",
                 do.swap_in(d), interruptible=False, destructive=True, target=d.target,
                 equivalent=_cmd("mv", partial, d.path)),
        ]
    return steps + _start(plan)


def _undo(plan: RestorePlan) -> list[Step]:
    assert plan.undo_of
    steps = _stop(plan)
    for d in plan.disks:
        held = d.held_path(plan.job_id)
        steps += [
            Step(f"hold:{d.target}", f"Keep the restored {d.target} aside", do.hold_restored(d),
                 interruptible=False, destructive=True, target=d.target,
                 equivalent=_cmd("ln", d.path, held)),
            Step(f"swapback:{d.target}", f"Put the pre-restore {d.target} back (one rename)",
                 do.swap_back(d), interruptible=False, destructive=True, target=d.target,
                 equivalent=_cmd("mv", d.pre_restore_path(plan.undo_of), d.path)),
        ]
    steps += _start(plan)
    for d in plan.disks:
        steps.append(Step(f"drop:{d.target}", f"Remove the restored {d.target} taken out",
                          do.drop_held(d), interruptible=False, destructive=True,
                          target=d.target, equivalent=_cmd("rm", d.held_path(plan.job_id))))
    return steps


def build_restore_steps(plan: RestorePlan) -> list[Step]:
    """The steps of the plan's workflow."""
    if plan.action == ACTION_UNDO:
        return _undo(plan)
    if plan.action == ACTION_NEW:
        from snaptui.core.restore import new_guest

        return new_guest.build_steps(plan, _new_file, _start)
    return _restore(plan)


def summarize(ctx: JobContext) -> dict[str, Any]:
    """The ``done`` event: what was restored where, and what was kept."""
    plan = cast(RestorePlan, ctx.plan)
    disks = [{"target": d.target, "path": d.path,
              "pre_restore": d.pre_restore_path(plan.job_id)
              if plan.action not in (ACTION_UNDO, ACTION_NEW) else None,
              "checksum": ctx.facts.get(RestoreFact.CHECKSUM.of(d.target))}
             for d in plan.disks]
    return {"action": plan.action, "image_id": plan.image_id, "name": plan.image_name,
            "domain": plan.domain_name, "disks": disks, "undo_of": plan.undo_of,
            "mode": plan.mode, "destination": plan.destination,
            "downtime_s": downtime(ctx) or 0.0}


def _load(data: Any, job_id: str | None) -> Plan:
    return cast(Plan, RestorePlan.from_json(data, job_id))


def _steps(plan: Plan) -> list[Step]:
    return build_restore_steps(cast(RestorePlan, plan))


register(JobKind(KIND, _load, _steps, summarize))
