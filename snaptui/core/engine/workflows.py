"""The workflows, each a list of steps read like the runbook it automates.

Built from a Plan alone (``build_steps``), so ``recover`` rebuilds the same steps to undo them.
"""

from __future__ import annotations

import asyncio

from snaptui.core.engine.context import JobContext
from snaptui.core.engine.facts import DiskFact, Fact
from snaptui.core.engine.neighbour import virsh_bandwidth_args
from snaptui.core.engine.owned_jobs import foreign_domain_job
from snaptui.core.engine.plan import DiskPlan, Mode, Plan
from snaptui.core.engine.runner import Action, Step
from snaptui.core.engine.steps import (
    disk,
    guest,
    live,
    quiesce,
    rbd,
    rbd_export,
    rbd_verify,
    upload,
    verify,
)
from snaptui.core.engine.steps import stream as streamed
from snaptui.core.libvirt import nbd_export


def _cmd(*argv: object) -> tuple[str, ...]:
    """The by-hand equivalent of a step that calls an API (shown by --dry-run)."""
    return tuple(str(a) for a in argv)


def _freeze_step(plan: Plan) -> Step:
    return Step("freeze", "Freeze guest filesystems (agent)", quiesce.freeze(),
                interruptible=False, destructive=True,
                equivalent=_cmd("virsh", "domfsfreeze", plan.domain_name))


def _thaw_step(plan: Plan) -> Step:
    return Step("thaw", "Thaw guest filesystems", quiesce.thaw(), interruptible=False,
                destructive=True, equivalent=_cmd("virsh", "domfsthaw", plan.domain_name))


def _save_steps(plan: Plan) -> list[Step]:
    if not plan.guest_active:
        return []
    frozen = [_freeze_step(plan)] if plan.freezes_before_save else []
    return frozen + [Step("save", "Save guest state (managedSave)", guest.save(),
                          interruptible=False, destructive=True,
                          equivalent=_cmd("virsh", "managedsave", plan.domain_name))]


def _restart_steps(plan: Plan) -> list[Step]:
    if not plan.guest_active:
        return []
    start = ["virsh", "start", plan.domain_name]
    if plan.original_state == "paused":
        start.append("--paused")
    thawed = [_thaw_step(plan)] if plan.freezes_before_save else []
    return [Step("restart", "Restart guest (restore managed save)", guest.restart(),
                 interruptible=False, destructive=True, equivalent=_cmd(*start))] + thawed


def _cold(plan: Plan) -> list[Step]:
    steps = _save_steps(plan)
    for d in plan.disks:
        steps.append(Step(f"convert:{d.target}", f"Convert {d.target} to {plan.out_format}",
                          disk.convert_disk(plan, d), target=d.target))
    return steps + _restart_steps(plan)


def _rbd_snapshot_steps(plan: Plan) -> list[Step]:
    """Cold on RBD disks: a snapshot of each disk while the guest is saved (or off)."""
    steps = []
    for d in plan.disks:
        spec = rbd.RbdPlan.of(d)
        at = f"{spec.source.pool}/{spec.source.image}@{spec.snapshot}"
        steps.append(Step(f"rbd-snap:{d.target}", f"RBD snapshot of {d.target} ({at})",
                          rbd.snapshot_disk(d), interruptible=False, destructive=True,
                          target=d.target, equivalent=_cmd("rbd", "snap", "create", at)))
    return steps


def _cold_rbd(plan: Plan) -> list[Step]:
    """Cold on RBD disks: the guest is down for the save, the snapshots and the restore only;
    each image is read from its snapshot once the guest runs again."""
    steps = _save_steps(plan) + _rbd_snapshot_steps(plan) + _restart_steps(plan)
    for d in plan.disks:
        spec = rbd.RbdPlan.of(d)
        at = f"{spec.source.pool}/{spec.source.image}@{spec.snapshot}"
        steps += [
            Step(f"convert:{d.target}", f"Export {at} to {plan.out_format}",
                 rbd_export.export_snapshot(plan, d), target=d.target,
                 equivalent=rbd_export.equivalent(plan, d)),
            Step(f"rbd-unsnap:{d.target}", f"Remove {at}", rbd.remove_disk_snapshot(d),
                 interruptible=False, destructive=True, target=d.target,
                 equivalent=_cmd("rbd", "snap", "rm", at)),
        ]
    return steps


def _internal(plan: Plan) -> list[Step]:
    steps = _save_steps(plan)
    tag = plan.snapshot_name
    for d in plan.disks:
        steps += [
            Step(f"snapshot:{d.target}", f"Create internal snapshot on {d.target}",
                 disk.create_internal_snapshot(d), interruptible=False, destructive=True,
                 target=d.target, equivalent=_cmd("qemu-img", "snapshot", "-c", tag,
                                                  d.source_path)),
            Step(f"convert:{d.target}", f"Convert snapshot of {d.target}",
                 disk.convert_internal_snapshot(plan, d), target=d.target),
            Step(f"unsnapshot:{d.target}", f"Delete internal snapshot on {d.target}",
                 disk.delete_internal_snapshot(d), interruptible=False, destructive=True,
                 target=d.target, equivalent=_cmd("qemu-img", "snapshot", "-d", tag,
                                                  d.source_path)),
        ]
    return steps + _restart_steps(plan)


def _live(plan: Plan) -> list[Step]:
    steps: list[Step] = []
    name = plan.domain_name
    for d in plan.disks:
        fmt = plan.copy_format(d)
        create_args = ["qemu-img", "create", "-f", fmt]
        if d.backing_file:
            create_args += ["-b", d.backing_file, "-F", d.backing_format or "qcow2"]
        steps.append(Step(f"delta:{d.target}", f"Create {fmt} delta for {d.target}",
                          live.create_delta(d), interruptible=False, target=d.target,
                          equivalent=_cmd(*create_args, d.delta_path, d.virtual_size)))
    for d in plan.disks:
        steps.append(Step(f"copy:{d.target}", f"Block copy {d.target} (shallow, transient job)",
                          live.block_copy(d), destructive=True, target=d.target,
                          equivalent=_cmd("virsh", "blockcopy", name, d.target, d.delta_path,
                                          "--shallow", "--reuse-external", "--wait",
                                          "--transient-job", *virsh_bandwidth_args(plan))))
    steps.append(_freeze_step(plan))
    for d in plan.disks:
        steps.append(Step(f"abort:{d.target}", f"Abort copy of {d.target} without pivot",
                          live.abort_copy(d), interruptible=False, destructive=True,
                          target=d.target,
                          equivalent=_cmd("virsh", "blockjob", name, d.target, "--abort")))
    steps.append(_thaw_step(plan))
    for d in plan.disks:
        if plan.copy_is_output(d):
            steps.append(_adopt(d, str(d.delta_path), DiskFact.DELTA, "delta"))
            continue
        steps += [
            Step(f"convert:{d.target}", f"Convert delta of {d.target}",
                 live.convert_delta(plan, d), target=d.target),
            Step(f"undelta:{d.target}", f"Delete delta of {d.target}", live.remove_delta(d),
                 target=d.target, equivalent=_cmd("rm", "-f", d.delta_path)),
        ]
    return steps


def _adopt(d: DiskPlan, copy_path: str, fact: DiskFact, what: str) -> Step:
    return Step(f"adopt:{d.target}", f"Use the {what} of {d.target} as the image (no convert)",
                live.adopt_copy(d, copy_path, fact), interruptible=False, target=d.target,
                equivalent=_cmd("mv", copy_path, d.output_path))


def _backup(plan: Plan, all_targets: list[str]) -> list[Step]:
    steps = [Step("backup", "Back up disks (libvirt backup, push mode)",
                  live.backup_disks(plan.disks, all_targets), destructive=True,
                  equivalent=_cmd("virsh", "backup-begin", plan.domain_name, "backup.xml"))]
    for d in plan.disks:
        if plan.copy_is_output(d):
            steps.append(_adopt(d, str(d.backup_path), DiskFact.BACKUP_FILE, "backup"))
            continue
        steps += [
            Step(f"convert:{d.target}", f"Convert backup of {d.target}",
                 live.convert_backup(plan, d), target=d.target),
            Step(f"unbackup:{d.target}", f"Delete backup file of {d.target}",
                 live.remove_backup_file(d), target=d.target,
                 equivalent=_cmd("rm", "-f", d.backup_path)),
        ]
    return steps


def _stream(plan: Plan, all_targets: list[str]) -> list[Step]:
    """Backup in pull mode: export over NBD, each disk read once into its Glance upload."""
    assert plan.nbd_socket
    name, sock = plan.domain_name, plan.nbd_socket
    steps = [Step("export", "Export disks over NBD (libvirt backup, pull mode)",
                  _own_export_only(streamed.export(all_targets)), interruptible=False,
                  destructive=True,
                  equivalent=_cmd("virsh", "backup-begin", name, "backup-pull.xml",
                                  "--reuse-external"))]
    for d in plan.disks:
        url = f"nbd+unix:///{d.target}?socket={sock}"
        steps += [
            _image_step(plan, d),
            Step(f"stream:{d.target}", f"Stream {d.target} to Glance ({plan.out_format}, "
                 "sha512 on the way)", streamed.stream(d), destructive=True, target=d.target,
                 equivalent=_cmd("nbdcopy", url, "-") if plan.out_format == "raw" else
                 _cmd("qemu-img", "convert", "-O", "qcow2", url, "/dev/stdout")),
        ]
    steps.append(Step("unexport", "End the NBD export (backup job)", streamed.unexport(),
                      interruptible=False, destructive=True,
                      equivalent=_cmd("virsh", "domjobabort", name)))
    return steps


def _direct(plan: Plan) -> list[Step]:
    """RBD disks: a snapshot cloned and flattened inside the cluster, handed to Glance by its
    location (as Nova's direct_snapshot); only the snapshot itself is inside the freeze."""
    specs = {d.target: rbd.RbdPlan.of(d) for d in plan.disks}

    def src(d: DiskPlan) -> str:
        return f"{specs[d.target].source.pool}/{specs[d.target].source.image}"

    def snap(d: DiskPlan) -> str:
        return f"{src(d)}@{specs[d.target].snapshot}"

    def clone(d: DiskPlan) -> str:
        return f"{specs[d.target].clone_pool}/{specs[d.target].clone_name}"

    steps = [_freeze_step(plan)] if plan.original_state == "running" else []
    steps += [Step(f"rbd-snap:{d.target}", f"RBD snapshot of {d.target} ({snap(d)})",
                   rbd.snapshot_disk(d), interruptible=False, destructive=True,
                   target=d.target, equivalent=_cmd("rbd", "snap", "create", snap(d)))
              for d in plan.disks]
    if plan.original_state == "running":
        steps.append(_thaw_step(plan))
    for d in plan.disks:
        spec = specs[d.target]
        steps += [
            Step(f"protect:{d.target}", f"Protect {snap(d)}", rbd.protect_snapshot(d),
                 interruptible=False, destructive=True, target=d.target,
                 equivalent=_cmd("rbd", "snap", "protect", snap(d))),
            Step(f"clone:{d.target}", f"Clone {d.target} into Glance's pool ({clone(d)})",
                 rbd.clone_into_glance_pool(d), interruptible=False, destructive=True,
                 target=d.target, equivalent=_cmd("rbd", "clone", snap(d), clone(d))),
            Step(f"flatten:{d.target}", f"Flatten {clone(d)} (inside the cluster)",
                 rbd.flatten_clone(d), interruptible=False, destructive=True,
                 target=d.target, equivalent=_cmd("rbd", "flatten", clone(d))),
            Step(f"clone-snap:{d.target}", f"Snapshot and protect {clone(d)}@{rbd.CLONE_SNAP}",
                 rbd.snapshot_clone(d), interruptible=False, destructive=True,
                 target=d.target,
                 equivalent=_cmd("rbd", "snap", "create", f"{clone(d)}@{rbd.CLONE_SNAP}")),
            Step(f"image:{d.target}", f"Create image {d.image_name!r} at {spec.location}",
                 rbd.create_located_image(d), interruptible=False, destructive=True,
                 target=d.target,
                 equivalent=_cmd("openstack", "image", "create", "--id", spec.clone_name,
                                 "--disk-format", "raw", "--container-format", "bare",
                                 "--property", "image_type=snapshot", d.image_name)),
        ]
        if plan.verify and d is plan.disks[0]:  # the boot disk (the first chosen)
            steps.append(_verify_rbd_step(plan, d))
        steps.append(Step(f"rbd-unsnap:{d.target}", f"Remove {snap(d)}",
                          rbd.remove_disk_snapshot(d), interruptible=False, destructive=True,
                          target=d.target, equivalent=_cmd("rbd", "snap", "rm", snap(d))))
    return steps


def _verify_rbd_step(plan: Plan, d: DiskPlan) -> Step:
    how = f"console /{plan.verify_console}/" if plan.verify_console else "guest agent"
    spec = rbd.RbdPlan.of(d)
    clone = rbd_verify.verify_clone(d, plan.job_id).name
    return Step(f"verify:{d.target}", f"Verify boot of {d.target} from a clone of its "
                f"image ({clone}, {how}, no network)", rbd_verify.verify_rbd_image(d),
                destructive=True, target=d.target,
                equivalent=_cmd("rbd", "clone",
                                f"{spec.clone_pool}/{spec.clone_name}@{rbd.CLONE_SNAP}", clone))


def _own_export_only(action: Action) -> Action:
    """The export's undo ends the domain's backup job only when it is this job's (its scratch
    files are the plan's CoW files): an operator's backup begun since is left, and noted;
    this job's own files are removed either way."""
    assert action.undo is not None
    own_undo = action.undo

    def foreign(ctx: JobContext) -> str | None:
        dom = ctx.domain()
        if not dom.isActive():
            return None
        return foreign_domain_job(dom, [str(d.cow_path) for d in ctx.plan.disks if d.cow_path])

    async def undo(ctx: JobContext) -> None:
        why = await asyncio.to_thread(foreign, ctx)
        if why is None:
            await own_undo(ctx)
            return
        ctx.note(why)
        await quiesce.thaw_guest(ctx)
        await asyncio.to_thread(nbd_export.remove_files, streamed.export_paths(ctx.plan))
        ctx.forget(Fact.BACKUP_JOB)
    return Action(action.run, undo, action.argv)


def _image_step(plan: Plan, d: DiskPlan) -> Step:
    return Step(f"image:{d.target}", f"Create image {d.image_name!r}", upload.create_image(d),
                interruptible=False, destructive=True, target=d.target,
                equivalent=_cmd("openstack", "image", "create", "--disk-format",
                                plan.out_format, "--container-format", "bare", "--property",
                                f"image_type={'backup' if plan.backup_type else 'snapshot'}",
                                "--property",
                                f"instance_uuid={plan.domain_uuid}", d.image_name))


def _publish(plan: Plan) -> list[Step]:
    steps: list[Step] = []
    for d in plan.disks:
        keep = _keep_path(plan, d)
        verb = "Upload to Glance" if plan.destination == "glance" else "Copy to library"
        steps += [
            _image_step(plan, d),
            Step(f"upload:{d.target}", f"{verb} ({d.target})", upload.upload_image(d),
                 destructive=True, target=d.target,
                 equivalent=_cmd("glance", "image-upload", "--file", d.output_path, "IMAGE_ID")),
        ]
        if plan.verify and d is plan.disks[0]:  # the boot disk (the first chosen)
            steps.append(_verify_step(plan, d))
        steps += [
            Step(f"finish:{d.target}", "Keep local copy" if keep else "Remove scratch output",
                 disk.finish_output(d, keep), interruptible=False, destructive=True,
                 target=d.target,
                 equivalent=_cmd("mv", d.output_path, keep) if keep else _cmd("rm", d.output_path)),
        ]
    return steps


def _verify_step(plan: Plan, d: DiskPlan) -> Step:
    how = f"console /{plan.verify_console}/" if plan.verify_console else "guest agent"
    return Step(f"verify:{d.target}", f"Verify boot of {d.target} ({how}, no network)",
                verify.verify_image(d), destructive=True, target=d.target,
                equivalent=_cmd("virsh", "create", "verify.xml"))


def _keep_path(plan: Plan, d: DiskPlan) -> str | None:
    if not plan.keep_local:
        return None
    if len(plan.disks) == 1:
        return plan.keep_local
    return f"{plan.keep_local.rstrip('/')}/{d.image_name}.{plan.out_format}"


def build_steps(plan: Plan) -> list[Step]:
    """The steps of the plan's workflow, extraction first, then publishing."""
    if plan.mode == Mode.COLD and any(d.rbd for d in plan.disks):
        steps = _cold_rbd(plan)
    elif plan.mode == Mode.COLD:
        steps = _cold(plan)
    elif plan.mode == Mode.INTERNAL:
        steps = _internal(plan)
    elif plan.mode == Mode.LIVE:
        steps = _live(plan)
    elif plan.mode == Mode.DIRECT:
        return _direct(plan)
    elif plan.mode == Mode.BACKUP and plan.stream:
        return _stream(plan, plan.domain_targets or [d.target for d in plan.disks])
    elif plan.mode == Mode.BACKUP:
        steps = _backup(plan, plan.domain_targets or [d.target for d in plan.disks])
    else:
        raise ValueError(f"unresolved mode {plan.mode}")
    return steps + _publish(plan)
