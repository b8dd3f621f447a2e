"""A domain with Nova's ``<nova:instance>`` metadata is a Nova instance: snaptui is a guest in
Nova's house there.

Nova's libvirt driver delays a STOPPED lifecycle event by 15 s (nova/virt/libvirt/host.py,
``_event_emit_delayed``); when the guest is still down then, the compute manager's
``_sync_instance_power_state`` calls the stop API and Nova powers the instance off, after
snaptui has restarted it. So modes that stop the guest (cold, internal) are refused on a
running Nova instance unless the operator allows it, and then the downtime is kept under that
delay.
"""

from __future__ import annotations

from snaptui.core.models import DomainInfo, DomainState, Mode, NovaMetadata

NOVA_SYNC_DELAY_S = 15.0  # nova/virt/libvirt/host.py: STOPPED events wait this long
RESTART_MARGIN_S = 3.0  # left for the restart from the managed save (0.2 s measured)
DOWNTIME_BUDGET_S = NOVA_SYNC_DELAY_S - RESTART_MARGIN_S
STOPPING_MODES = (Mode.COLD, Mode.INTERNAL)


def is_nova_instance(info: DomainInfo) -> bool:
    return info.nova is not None


def describe(nova: NovaMetadata) -> str:
    """One line for people: "Nova instance NAME (project P, flavor F)"."""
    parts = []
    if nova.owner_project or nova.owner_project_id:
        parts.append(f"project {nova.owner_project or nova.owner_project_id}")
    if nova.flavor:
        parts.append(f"flavor {nova.flavor}")
    inside = f" ({', '.join(parts)})" if parts else ""
    return f"Nova instance {nova.name or '?'}{inside}"


def stop_refusal(info: DomainInfo, mode: Mode) -> str | None:
    """Why ``mode`` may not stop this guest (None: it may): only a running or paused Nova
    instance in a mode that stops it."""
    if info.nova is None or mode not in STOPPING_MODES:
        return None
    if info.state not in (DomainState.RUNNING, DomainState.PAUSED):
        return None
    return (f"{info.name} is a Nova instance and {mode} mode stops it; Nova's power-state sync "
            f"powers it off when it stays down {NOVA_SYNC_DELAY_S:.0f} s "
            "(use live or backup, or --allow-nova-downtime)")


def downtime_warning() -> str:
    return (f"--allow-nova-downtime: the guest must be back within {NOVA_SYNC_DELAY_S:.0f} s or "
            f"Nova stops it; snaptui aborts and restarts it after {DOWNTIME_BUDGET_S:.0f} s down")
