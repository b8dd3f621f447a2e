"""The four workflows, each a list of steps read like the runbook it automates.

Built from a Plan alone (``build_steps``), so ``recover`` rebuilds the same steps to undo them.
"""

from __future__ import annotations

import shlex

from snaptui.core.engine import disk_steps as disk
from snaptui.core.engine import guest_steps as guest
from snaptui.core.engine import live_steps as live
from snaptui.core.engine import upload_steps as upload
from snaptui.core.engine.plan import DiskPlan, Mode, Plan
from snaptui.core.engine.runner import Step


def _sh(*argv: object) -> str:
    return shlex.join(str(a) for a in argv)


def _convert_cmd(plan: Plan, src: str, dst: str, *, snapshot: str | None = None,
                 force_share: bool = False) -> str:
    argv: list[object] = ["qemu-img", "convert", "-p", "-O", plan.out_format]
    if force_share:
        argv.append("-U")
    if snapshot:
        argv += ["-l", f"snapshot.name={snapshot}"]
    if plan.compress:
        argv += ["-c", "-o", f"compression_type={plan.compression_type}", "-W"]
    return _sh(*argv, src, dst)


def _save_steps(plan: Plan) -> list[Step]:
    if not plan.guest_active:
        return []
    return [Step("save", "Save guest state (managedSave)", guest.save_guest, guest.restore_guest,
                 interruptible=False, command=_sh("virsh", "managedsave", plan.domain_name))]


def _restart_steps(plan: Plan) -> list[Step]:
    if not plan.guest_active:
        return []
    start = ["virsh", "start", plan.domain_name]
    if plan.original_state == "paused":
        start.append("--paused")
    return [Step("restart", "Restart guest (restore managed save)", guest.restore_guest,
                 interruptible=False, command=_sh(*start))]


def _cold(plan: Plan) -> list[Step]:
    steps = _save_steps(plan)
    for d in plan.disks:
        steps.append(Step(f"convert:{d.target}", f"Convert {d.target} to {plan.out_format}",
                          disk.convert_disk(d), disk.remove_output(d),
                          command=_convert_cmd(plan, d.source_path, d.output_path)))
    return steps + _restart_steps(plan)


def _internal(plan: Plan) -> list[Step]:
    steps = _save_steps(plan)
    tag = plan.snapshot_name
    for d in plan.disks:
        delete = disk.delete_internal_snapshot(d)
        steps += [
            Step(f"snapshot:{d.target}", f"Create internal snapshot on {d.target}",
                 disk.create_internal_snapshot(d), delete, interruptible=False,
                 command=_sh("qemu-img", "snapshot", "-c", tag, d.source_path)),
            Step(f"convert:{d.target}", f"Convert snapshot of {d.target}",
                 disk.convert_internal_snapshot(d), disk.remove_output(d),
                 command=_convert_cmd(plan, d.source_path, d.output_path, snapshot=tag)),
            Step(f"unsnapshot:{d.target}", f"Delete internal snapshot on {d.target}", delete,
                 interruptible=False,
                 command=_sh("qemu-img", "snapshot", "-d", tag, d.source_path)),
        ]
    return steps + _restart_steps(plan)


def _live(plan: Plan) -> list[Step]:
    steps: list[Step] = []
    for d in plan.disks:
        fmt = plan.copy_format(d)
        create_args = ["qemu-img", "create", "-f", fmt]
        if d.backing_file:
            create_args += ["-b", d.backing_file, "-F", d.backing_format or "qcow2"]
        steps.append(Step(f"delta:{d.target}", f"Create {fmt} delta for {d.target}",
                          live.create_delta(d), live.remove_delta(d), interruptible=False,
                          command=_sh(*create_args, d.delta_path, d.virtual_size)))
    for d in plan.disks:
        run, undo = live.block_copy(d)
        steps.append(Step(f"copy:{d.target}", f"Block copy {d.target} (shallow, transient job)",
                          run, undo,
                          command=_sh("virsh", "blockcopy", plan.domain_name, d.target,
                                      d.delta_path, "--shallow", "--reuse-external", "--wait",
                                      "--transient-job")))
    steps.append(Step("freeze", "Freeze guest filesystems (agent)", live.freeze, live.thaw,
                      interruptible=False, command=_sh("virsh", "domfsfreeze", plan.domain_name)))
    for d in plan.disks:
        steps.append(Step(f"abort:{d.target}", f"Abort copy of {d.target} without pivot",
                          live.abort_copy(d), interruptible=False,
                          command=_sh("virsh", "blockjob", plan.domain_name, d.target,
                                      "--abort")))
    steps.append(Step("thaw", "Thaw guest filesystems", live.thaw, interruptible=False,
                      command=_sh("virsh", "domfsthaw", plan.domain_name)))
    for d in plan.disks:
        if plan.copy_is_output(d):
            steps.append(_adopt(d, str(d.delta_path), "delta", "delta"))
            continue
        steps += [
            Step(f"convert:{d.target}", f"Convert delta of {d.target}", live.convert_delta(d),
                 disk.remove_output(d),
                 command=_convert_cmd(plan, str(d.delta_path), d.output_path)),
            Step(f"undelta:{d.target}", f"Delete delta of {d.target}", live.remove_delta(d),
                 command=_sh("rm", "-f", d.delta_path)),
        ]
    return steps


def _adopt(d: DiskPlan, copy_path: str, fact: str, what: str) -> Step:
    return Step(f"adopt:{d.target}", f"Use the {what} of {d.target} as the image (no convert)",
                live.adopt_copy(d, copy_path, fact), disk.remove_output(d), interruptible=False,
                command=_sh("mv", copy_path, d.output_path))


def _backup(plan: Plan, all_targets: list[str]) -> list[Step]:
    run, undo = live.backup_disks(plan.disks, all_targets)
    steps = [Step("backup", "Back up disks (libvirt backup, push mode)", run, undo,
                  command=_sh("virsh", "backup-begin", plan.domain_name, "backup.xml"))]
    for d in plan.disks:
        if plan.copy_is_output(d):
            steps.append(_adopt(d, str(d.backup_path), "backup_file", "backup"))
            continue
        steps += [
            Step(f"convert:{d.target}", f"Convert backup of {d.target}", live.convert_backup(d),
                 disk.remove_output(d),
                 command=_convert_cmd(plan, str(d.backup_path), d.output_path)),
            Step(f"unbackup:{d.target}", f"Delete backup file of {d.target}",
                 live.remove_backup_file(d), command=_sh("rm", "-f", d.backup_path)),
        ]
    return steps


def _publish(plan: Plan) -> list[Step]:
    steps: list[Step] = []
    for d in plan.disks:
        keep = _keep_path(plan, d)
        run, undo = upload.create_image(d)
        verb = "Upload to Glance" if plan.destination == "glance" else "Copy to library"
        steps += [
            Step(f"image:{d.target}", f"Create image {d.image_name!r}", run, undo,
                 interruptible=False,
                 command=_sh("openstack", "image", "create", "--disk-format", plan.out_format,
                             "--container-format", "bare", "--property", "image_type=snapshot",
                             "--property", f"instance_uuid={plan.domain_uuid}", d.image_name)),
            Step(f"upload:{d.target}", f"{verb} ({d.target})", upload.upload_image(d),
                 command=_sh("glance", "image-upload", "--file", d.output_path, "IMAGE_ID")),
            Step(f"finish:{d.target}", "Keep local copy" if keep else "Remove scratch output",
                 disk.finish_output(d, keep), interruptible=False,
                 command=_sh("mv", d.output_path, keep) if keep else _sh("rm", d.output_path)),
        ]
    return steps


def _keep_path(plan: Plan, d: DiskPlan) -> str | None:
    if not plan.keep_local:
        return None
    if len(plan.disks) == 1:
        return plan.keep_local
    return f"{plan.keep_local.rstrip('/')}/{d.image_name}.{plan.out_format}"


def build_steps(plan: Plan) -> list[Step]:
    """The steps of the plan's workflow, extraction first, then publishing."""
    if plan.mode == Mode.COLD:
        steps = _cold(plan)
    elif plan.mode == Mode.INTERNAL:
        steps = _internal(plan)
    elif plan.mode == Mode.LIVE:
        steps = _live(plan)
    elif plan.mode == Mode.BACKUP:
        steps = _backup(plan, plan.domain_targets or [d.target for d in plan.disks])
    else:
        raise ValueError(f"unresolved mode {plan.mode}")
    return steps + _publish(plan)
