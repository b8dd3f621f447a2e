"""Preflight of ``--quiesce`` and ``--verify``: checked while the guest is still untouched."""

from __future__ import annotations

import math
import os
import re
from typing import Any

from snaptui.core.engine.plan import QUIESCE_CHOICES, VERIFY_ACCELS, SnapshotRequest
from snaptui.core.engine.steps.quiesce import agent_answers
from snaptui.core.errors import BadInput
from snaptui.core.libvirt import qemu_access
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DomainInfo, DomainState
from snaptui.core.paths import scratch_dir

# A boot check that has not answered in a day never will (and nan or inf never times out).
MAX_VERIFY_TIMEOUT_S = 24 * 3600.0


def check_verify_options(console: str | None, timeout: float, accel: str | None) -> None:
    """BadInput for a verify option that cannot work (also used by ``snaptui verify``)."""
    if console is not None:
        try:
            re.compile(console)
        except re.error as err:
            raise BadInput(f"--verify-console: not a regular expression ({err})") from None
    if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
            or not math.isfinite(timeout) or not 0 < timeout <= MAX_VERIFY_TIMEOUT_S):
        raise BadInput(f"--verify-timeout must be more than 0 seconds and at most "
                       f"{MAX_VERIFY_TIMEOUT_S:.0f}, not {str(timeout)[:40]}")
    if accel is not None and accel not in VERIFY_ACCELS:
        raise BadInput(f"--verify-accel must be one of {', '.join(VERIFY_ACCELS)}")
    if accel == "kvm" and not os.path.exists("/dev/kvm"):
        raise BadInput("--verify-accel kvm: this host has no /dev/kvm; use tcg")


def quiesce_and_verify(request: SnapshotRequest, host: LibvirtHost,
                       info: DomainInfo) -> dict[str, Any]:
    """The plan's quiesce and verify fields; ``--quiesce require`` is refused here when the
    guest agent does not answer (a shut-off guest has nothing to freeze and passes)."""
    if request.quiesce not in QUIESCE_CHOICES:
        raise BadInput(f"--quiesce must be one of {', '.join(QUIESCE_CHOICES)}")
    if request.verify:
        check_verify_options(request.verify_console, request.verify_timeout,
                             request.verify_accel)
        # The throwaway domain's overlay and its backing image are in scratch.
        qemu_access.refuse_unless_reachable(scratch_dir(), host.qemu_identity(),
                                            "--verify boots the image from the scratch dir")
    answered = False
    if request.quiesce != "off" and info.state in (DomainState.RUNNING, DomainState.PAUSED):
        why = "the guest is paused" if info.state == DomainState.PAUSED else \
            agent_answers(host.lookup(info.uuid))
        answered = why is None
        if request.quiesce == "require" and not answered:
            raise BadInput(f"--quiesce require: the guest agent of {info.name} does not answer "
                           f"({why}); nothing was changed")
    return {
        "quiesce": request.quiesce, "agent_answered": answered, "verify": request.verify,
        "verify_console": request.verify_console, "verify_timeout": request.verify_timeout,
        "verify_accel": request.verify_accel, "keep_unverified": request.keep_unverified,
    }
