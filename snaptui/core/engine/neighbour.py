"""A job as a good neighbour on its host: where ``--priority`` and ``--bwlimit`` reach the steps.

The choices travel in the plan (so the detached job process and ``recover`` see them); this
module turns them into the job process's priority, qemu-img's ``-r``, the block copy's
bandwidth and the upload's rate limiter. The host-wide job limit and the scratch reservations
are core/engine/reservations.py's.
"""

from __future__ import annotations

from typing import Any

import libvirt

from snaptui.core.engine.plan import Plan
from snaptui.core.errors import BadInput
from snaptui.core.priority import PRIORITIES, apply_priority
from snaptui.core.throttle import MAX_RATE, RateLimiter


def neighbour_fields(priority: str, bwlimit: int | None) -> dict[str, Any]:
    """The plan's priority and bwlimit, checked (one BadInput line for a bad one)."""
    if priority not in PRIORITIES:
        raise BadInput(f"unknown priority {priority!r} (one of {', '.join(PRIORITIES)})")
    if bwlimit is not None and (isinstance(bwlimit, bool) or not isinstance(bwlimit, int)
                                or not 0 < bwlimit <= MAX_RATE):
        raise BadInput(f"--bwlimit must be a positive number of bytes per second up to "
                       f"{MAX_RATE}, not {str(bwlimit)[:40]!r}")
    return {"priority": priority, "bwlimit": bwlimit}


def lower_job_priority(plan: Plan) -> str:
    """Called by the job process before it starts a thread or a child: every one inherits it.
    Returns the journal note."""
    return apply_priority(plan.priority)


def rate_limited_argv(argv: list[str], bwlimit: int | None) -> list[str]:
    """A ``qemu-img convert`` argv (its last two items source and target) with ``-r RATE``
    (bytes per second) when the job is capped."""
    if not bwlimit:
        return argv
    return [*argv[:-2], "-r", str(bwlimit), *argv[-2:]]


def block_copy_params(plan: Plan) -> dict[str, int] | None:
    """virDomainBlockCopy's typed parameters: the bandwidth cap in bytes per second."""
    if not plan.bwlimit:
        return None
    return {libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH: plan.bwlimit}


def virsh_bandwidth_args(plan: Plan) -> list[str]:
    """``virsh blockcopy``'s spelling of the same cap (shown by --dry-run)."""
    return ["--bandwidth", str(plan.bwlimit), "--bytes"] if plan.bwlimit else []


def upload_kwargs(plan: Plan) -> dict[str, Any]:
    """Extra arguments of ``ImageStore.upload`` for the job's cap (none when uncapped, so a
    store without the ``limiter`` argument still works)."""
    return {"limiter": RateLimiter(plan.bwlimit)} if plan.bwlimit else {}
