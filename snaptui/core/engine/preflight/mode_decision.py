"""One decision, made the same way for the CLI and the dashboard: which snapshot modes can run
on a domain, what ``auto`` becomes, whether the disks are streamed, and why not.

``mode_facts`` asks the host (libvirt calls) once; ``decide`` is pure. Preflight gathers the
facts and raises the decision's refusal; the snapshot dialog gathers them in a worker and asks
``decide`` again each time its form changes, so it never offers what preflight will refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.preflight import image_plan
from snaptui.core.engine.preflight.stream import choose_stream, host_cannot_stream
from snaptui.core.errors import BadInput
from snaptui.core.fleet.hosts import uri_transport
from snaptui.core.libvirt import qemu_access
from snaptui.core.libvirt.hardware import DomainHardware
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.libvirt.nova_instance import DOWNTIME_BUDGET_S, STOPPING_MODES, stop_refusal
from snaptui.core.models import DiskInfo, DomainInfo, DomainState
from snaptui.core.paths import scratch_dir

CONCRETE_MODES = tuple(m for m in Mode if m != Mode.AUTO)
SNAPSHOT_STATES = (DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF,
                   DomainState.SAVED)
STREAMED = ("streamed: pull-mode backup over NBD straight to Glance (no scratch copy, guest "
            "never paused)")


def auto_mode(info: DomainInfo, reasons: dict[Mode, str | None]) -> tuple[Mode, str]:
    """What ``auto`` becomes on ``info`` and why: live when the guest runs and live copy can
    work (``reasons[Mode.LIVE]`` is None); on a running Nova instance, else backup (Nova must
    never see it stop); else cold. ``reasons`` is what
    ``preflight.available_modes`` says of each mode."""
    live_blocked = reasons.get(Mode.LIVE)
    if live_blocked is None and info.state == DomainState.RUNNING:
        if info.nova is not None:
            return Mode.LIVE, ("it is a Nova instance, so the guest must not stop, and it runs "
                               "on file-backed disks")
        return Mode.LIVE, "the guest runs on file-backed disks (never paused)"
    if info.nova is not None and info.state in (DomainState.RUNNING, DomainState.PAUSED) \
            and reasons.get(Mode.BACKUP) is None:
        return Mode.BACKUP, (f"it is a Nova instance, so the guest must not stop "
                             f"(live: {live_blocked or info.state})")
    return Mode.COLD, live_blocked or f"{info.name} is {info.state}"


@dataclass(frozen=True)
class ModeFacts:
    """What the host says about one domain's modes: gathered once, read by ``decide``."""

    driver: str = ""  # libvirt's driver type, named when it cannot do live or backup
    block_copy: bool = True
    backup: bool = True
    scratch_blocked: str | None = None  # why QEMU cannot use the scratch directory
    hardware: DomainHardware | None = None  # host or mediated devices: no managed save
    # Why this host cannot stream at all (None: it can); asked only when it matters.
    stream_blocked: Callable[[], str | None] = field(default=lambda: None, compare=False)
    # Why the RBD disks cannot be snapshotted directly into Glance (None: they can); only
    # preflight asks the cluster and Glance (engine/preflight/rbd.py).
    direct_blocked: str | None = "Glance's rbd store was not checked"


def active(info: DomainInfo) -> bool:
    return info.state in (DomainState.RUNNING, DomainState.PAUSED)


def mode_facts(info: DomainInfo, host: LibvirtHost,
               stream_blocked: Callable[[], str | None] | None = None) -> ModeFacts:
    """Ask ``host`` what decides the modes of ``info`` (blocking: libvirt calls).
    ``stream_blocked``: why the host cannot stream (default: preflight_stream's own check)."""
    block_copy, backup = host.supports_block_copy, host.supports_backup
    running = active(info)
    return ModeFacts(
        driver="" if block_copy and backup else host.conn.getType(),
        block_copy=block_copy, backup=backup,
        scratch_blocked=qemu_scratch_blocked(host, info) if running and (block_copy or backup)
        else None,
        hardware=image_plan.domain_hardware(host, info) if running else None,
        stream_blocked=stream_blocked or (lambda: host_cannot_stream(host)))


def qemu_scratch_blocked(host: LibvirtHost, info: DomainInfo) -> str | None:
    """Why QEMU (as libvirt runs it for this domain) cannot use the scratch dir, where live and
    backup hand it files (delta, backup target, CoW scratch, NBD socket); None when it can. A
    host reached over SSH runs its jobs through its own snaptui, which checks its own."""
    if uri_transport(host.uri) == "ssh":
        return None
    return qemu_access.unreachable(scratch_dir(), host.qemu_identity(info.uuid))


def mode_reasons(info: DomainInfo, disks: list[DiskInfo], facts: ModeFacts,
                 ) -> dict[Mode, str | None]:
    """Each mode with None when it can run on these disks of ``info``, else why it cannot
    (what the host allows; the Nova guard is ``decide``'s)."""
    running = active(info)
    reasons: dict[Mode, str | None] = {m: None for m in Mode}
    not_qcow2 = [d.target for d in disks if d.format != "qcow2"]
    if not_qcow2:
        reasons[Mode.INTERNAL] = f"internal snapshots need qcow2 ({', '.join(not_qcow2)} is not)"
    not_file = [d.target for d in disks if d.source_type != "file"]
    rbd = [d.target for d in disks if d.rbd is not None]
    not_rbd = [d.target for d in disks if d.rbd is None]
    reasons[Mode.DIRECT] = (f"direct snapshots need RBD disks ({', '.join(not_rbd)} is not)"
                            if not_rbd else facts.direct_blocked)
    for mode, supported in ((Mode.LIVE, facts.block_copy), (Mode.BACKUP, facts.backup)):
        if not supported:
            reasons[mode] = f"the {facts.driver} driver cannot do {mode} snapshots"
        elif not running:
            reasons[mode] = f"{mode} needs a running guest ({info.name} is {info.state})"
        elif mode == Mode.LIVE and not_file:
            reasons[mode] = f"live copy needs file-backed disks ({', '.join(not_file)} is not)"
    if rbd:
        on = f"{', '.join(rbd)} is an RBD image"
        reasons[Mode.INTERNAL] = f"internal snapshots are a qcow2 feature ({on})"
        reasons[Mode.LIVE] = (f"live copy of a network disk is not needed: direct and stream "
                              f"take RBD disks without downtime ({on})")
        if not_rbd:
            reasons[Mode.COLD] = reasons[Mode.COLD] or (
                f"cold takes RBD disks and file disks in separate jobs ({on}, "
                f"{', '.join(not_rbd)} is not)")
    if running:
        for mode in (Mode.LIVE, Mode.BACKUP):
            reasons[mode] = reasons[mode] or facts.scratch_blocked
        for mode in STOPPING_MODES:  # host or mediated devices: libvirt cannot save the guest
            reasons[mode] = reasons[mode] or image_plan.save_refusal(info, facts.hardware, mode)
    return reasons


def guarded(info: DomainInfo, reasons: dict[Mode, str | None],
            allow_nova_downtime: bool) -> dict[Mode, str | None]:
    """``reasons`` with Nova's guard: a running Nova instance is not stopped unless allowed."""
    out = dict(reasons)
    if not allow_nova_downtime:
        for mode in STOPPING_MODES:
            out[mode] = out[mode] or stop_refusal(info, mode)
    return out


@dataclass(frozen=True)
class ModeDecision:
    """What a request will run as: ``mode`` (None: refused, ``why`` says why in one line),
    whether it streams, and each mode's reason (None: it can run)."""

    reasons: dict[Mode, str | None]
    mode: Mode | None
    why: str
    stream: bool = False
    not_streamed: str | None = None  # auto could have streamed, and did not: why

    @property
    def refusal(self) -> str | None:
        return self.why if self.mode is None else None

    @property
    def possible(self) -> list[Mode]:
        """The concrete modes that can run (an empty list: none can)."""
        return [m for m in CONCRETE_MODES if self.reasons[m] is None]


def decide(request: SnapshotRequest, destination: str, info: DomainInfo,
           reasons: dict[Mode, str | None], facts: ModeFacts,
           socket: str | None = None) -> ModeDecision:
    """Preflight's choice of mode for ``request`` (never raises: a refusal is returned with
    the line preflight raises). ``socket``: the job's NBD socket, None when not yet known."""
    if info.state not in SNAPSHOT_STATES:  # preflight refuses it first, in these words
        why = f"{info.name} is {info.state}; snapshots need it running, paused or off"
        return ModeDecision({m: why for m in Mode}, None, why)
    reasons = guarded(info, reasons, request.allow_nova_downtime)
    direct = _direct(request, reasons) if any(d.rbd for d in info.snapshot_disks) else None
    if direct is not None:
        return direct
    try:
        stream, not_streamed = choose_stream(request, destination, facts.stream_blocked, info,
                                             reasons[Mode.BACKUP], socket)
    except BadInput as err:
        return ModeDecision(reasons, None, str(err))
    if stream:
        why = f"{'auto chose' if request.stream == 'auto' else 'as requested:'} {STREAMED}"
        if info.nova is not None:
            why += "; it is a Nova instance, so the guest must not stop"
        return ModeDecision(reasons, Mode.BACKUP, why, True, None)
    mode: Mode = request.mode
    if mode != Mode.AUTO:
        why = f"{mode} mode as requested"
    else:
        mode, chose = auto_mode(info, reasons)
        if mode == Mode.COLD and any(d.rbd for d in info.snapshot_disks):
            chose = rbd_cold_reason(info, reasons, not_streamed)
        why = f"auto chose {mode}: {chose}"
    if reasons[mode]:
        return ModeDecision(reasons, None, f"cannot use {mode} mode: {reasons[mode]}",
                            False, not_streamed)
    return ModeDecision(reasons, mode, why, False, not_streamed)


DIRECT = ("direct: an RBD snapshot cloned and flattened inside the cluster into Glance's rbd "
          "store (nothing uploaded, no scratch, guest never paused)")


RBD_COLD = ("managed save, an RBD snapshot of each disk, the guest restarted at once, the "
            "image exported from the snapshot (downtime: the save and the restore only)")


def rbd_cold_reason(info: DomainInfo, reasons: dict[Mode, str | None],
                    not_streamed: str | None) -> str:
    """Why auto takes cold for RBD disks: neither direct nor streaming can take them."""
    direct = reasons.get(Mode.DIRECT) or "not asked"
    if active(info):
        streaming = not_streamed or "--no-stream"
        return f"{RBD_COLD}; direct cannot run ({direct}), nor streaming ({streaming})"
    return (f"{info.name} is {info.state}: an RBD snapshot of each disk, the image exported "
            f"from it; direct cannot run ({direct})")


def _direct(request: SnapshotRequest, reasons: dict[Mode, str | None]) -> ModeDecision | None:
    """Direct mode when asked, or auto's choice when it can run (and streaming was not asked
    for); None: decide as for any other disk."""
    if request.mode == Mode.DIRECT:
        if reasons.get(Mode.DIRECT):
            return ModeDecision(reasons, None, f"cannot use direct mode: {reasons[Mode.DIRECT]}")
        return ModeDecision(reasons, Mode.DIRECT, f"as requested: {DIRECT}")
    if request.mode == Mode.AUTO and request.stream != "on" and reasons.get(Mode.DIRECT) is None:
        return ModeDecision(reasons, Mode.DIRECT, f"auto chose {DIRECT}")
    return None


def stops_guest(decision: ModeDecision, info: DomainInfo) -> bool:
    """True when the decided mode stops a running or paused guest while its disk is read."""
    return active(info) and decision.mode in STOPPING_MODES


def nova_guarded(info: DomainInfo, reasons: dict[Mode, str | None]) -> bool:
    """True when only Nova's guard keeps a stopping mode from running (allowing downtime
    would make it possible)."""
    return any(reasons[m] is None or reasons[m] == stop_refusal(info, m)
               for m in STOPPING_MODES) and stop_refusal(info, Mode.COLD) is not None


def no_mode_line(info: DomainInfo, decision: ModeDecision, allow_nova_downtime: bool) -> str:
    """When no mode can run: why, in one line, and what would make one possible."""
    live = decision.reasons[Mode.LIVE] or decision.reasons[Mode.BACKUP]
    if not allow_nova_downtime and nova_guarded(info, decision.reasons):
        return (f"No mode can run: live and backup cannot ({live}), and cold or internal would "
                f"stop a Nova instance. Allowing Nova downtime makes cold possible (aborted "
                f"after {DOWNTIME_BUDGET_S:.0f} s down).")
    first = next((r for m in CONCRETE_MODES if (r := decision.reasons[m])), decision.why)
    return f"No mode can run: {first}."
