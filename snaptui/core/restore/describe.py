"""What a restore will do, in the words its confirmation shows (the CLI's and the dialog's)."""

from __future__ import annotations

from snaptui.core.present import size_text
from snaptui.core.restore.plan import ACTION_NEW, ACTION_UNDO, RestorePlan


def confirmation(plan: RestorePlan) -> list[str]:
    """What the operator agrees to: what is replaced by what, sizes, and what goes with it."""
    lines = []
    if plan.action == ACTION_UNDO:
        for d in plan.disks:
            lines.append(f"put back {d.path} as it was before restore {plan.undo_of} "
                         f"(from {d.pre_restore_path(str(plan.undo_of))}); the restored file "
                         "is removed")
    elif plan.action == ACTION_NEW:
        for d in plan.disks:
            lines.append(f"define new guest {plan.domain_name} on a new disk {d.path} from "
                         f"image {plan.image_name!r} ({size_text(plan.image_size)})")
    else:
        for d in plan.disks:
            lines.append(f"replace {d.target} of {plan.domain_name} ({d.path}, {d.format}, "
                         f"{size_text(d.virtual_size)} virtual) with image "
                         f"{plan.image_name!r} ({plan.image_id}, {plan.image_format}, "
                         f"{size_text(plan.image_size)}, {size_text(plan.image_virtual_size)} "
                         "virtual)")
            lines.append(f"the old disk is kept as {d.pre_restore_path(plan.job_id)} until "
                         f"`snaptui cleanup` (undo: snaptui restore --undo {plan.job_id})")
    if plan.guest_active:
        lines.append(f"{plan.domain_name} is {plan.original_state}: it is shut down first"
                     + (" (powered off if it does not stop)" if plan.force else ""))
    return lines + plan.notes
