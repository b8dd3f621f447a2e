"""The snapshot dialog's mode section: the modes preflight would accept, what ``auto`` will do,
and, for a running Nova instance, the choice to allow its downtime under the guard.

Nothing here decides: each ``show`` is given preflight/mode_decision.py's answers (the ones
preflight acts on) for the form as it is now.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, RadioButton, Static

from snaptui.core.engine.plan import Mode
from snaptui.core.engine.preflight.mode_decision import ModeDecision, no_mode_line
from snaptui.core.libvirt.nova_instance import (
    DOWNTIME_BUDGET_S,
    NOVA_SYNC_DELAY_S,
    STOPPING_MODES,
    describe,
    stop_refusal,
)
from snaptui.core.models import DomainInfo
from snaptui.ui.widgets.form_widgets import Choices, FormCheckbox

ALLOW_HINT = f"guard: aborted at {DOWNTIME_BUDGET_S:.0f} s down"
NOVA_SHORT = "a Nova instance: Nova's power-state sync would stop it (allow Nova downtime)"
STREAM_HINT = "auto will stream: a pull-mode backup read over NBD into Glance (no copy)"


def guard_line() -> str:
    """The Nova downtime guard, as the confirmation names it."""
    return (f"Nova downtime guard: if the guest is still down after {DOWNTIME_BUDGET_S:.0f} s, "
            f"snaptui aborts the job and restarts it (Nova powers off an instance that stays "
            f"down {NOVA_SYNC_DELAY_S:.0f} s).")


class ModePicker(Vertical):
    """Mode radio buttons (unavailable ones disabled, with preflight's reason), the hint line
    (what auto will do, or why nothing can run), and the "Allow Nova downtime" choice."""

    DEFAULT_CSS = """
    ModePicker { height: auto; }
    ModePicker #mode-hint.-refused { color: $error; }
    ModePicker #nova { padding: 0 0 0 13; }
    ModePicker #allow-nova-hint { width: 1fr; padding: 0 0 0 1; }
    """

    def __init__(self, domain: DomainInfo, decisions: dict[Mode, ModeDecision],
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.domain = domain
        self.decisions = decisions
        # A running or paused Nova instance: cold and internal need its downtime allowed.
        self.nova_guarded = stop_refusal(domain, Mode.COLD) is not None

    def compose(self) -> ComposeResult:
        # direct is offered on RBD disks only (elsewhere it never applies)
        modes = [m for m in Mode if m != Mode.DIRECT or any(d.rbd for d in self.domain.disks)]
        first = next((m for m in modes if self.decisions[m].mode is not None), Mode.AUTO)
        with Horizontal(classes="row"):
            yield Label("Mode", classes="label")
            yield Choices(*(RadioButton(str(m), value=m == first, name=str(m)) for m in modes),
                          id="mode")
        yield Static("", id="mode-hint", markup=False)
        if self.domain.nova is not None:
            yield Static(f"{describe(self.domain.nova)}: Nova powers it off when it stays "
                         f"down {NOVA_SYNC_DELAY_S:.0f} s", id="nova", markup=False)
        if self.nova_guarded:
            with Horizontal(classes="row"):
                yield Label("", classes="label")
                yield FormCheckbox("Allow Nova downtime", id="allow-nova", compact=True)
                yield Label(ALLOW_HINT, id="allow-nova-hint", classes="hint", markup=False)

    @property
    def mode(self) -> Mode:
        return Mode(self.query_one("#mode", Choices).chosen or Mode.AUTO)

    @property
    def allow_nova_downtime(self) -> bool:
        return self.nova_guarded and self.query_one("#allow-nova", FormCheckbox).value

    def _reason(self, mode: Mode) -> str | None:
        """Why ``mode`` cannot run now, in the words of its button (None: it can)."""
        decision = self.decisions[mode]
        if decision.mode is not None:
            return None
        reason = decision.reasons.get(mode) if mode != Mode.AUTO else decision.why
        if mode in STOPPING_MODES and reason == stop_refusal(self.domain, mode):
            return NOVA_SHORT
        return reason or decision.why

    def show(self, decisions: dict[Mode, ModeDecision]) -> ModeDecision:
        """Show ``decisions`` (one for each mode the form could ask for); return the chosen
        mode's."""
        self.decisions = decisions
        for button in self.query("#mode RadioButton").results(RadioButton):
            mode = Mode(button.name or Mode.AUTO)
            reason = self._reason(mode)
            button.disabled = reason is not None
            button.set_class(reason is not None, "-unavailable")
            button.label = str(mode) if reason is None else f"{mode} (unavailable: {reason})"
            button.tooltip = reason
        chosen = decisions[self.mode]
        hint = self.query_one("#mode-hint", Static)
        hint.update(self.hint(chosen))
        hint.set_class(chosen.mode is None, "-refused")
        return chosen

    def hint(self, decision: ModeDecision) -> str:
        """What the chosen mode will do (for auto), or why it cannot and what can."""
        if decision.mode is None:
            possible = decision.possible if self.decisions[Mode.AUTO].mode is None else \
                [Mode.AUTO, *decision.possible]
            if not possible:
                return no_mode_line(self.domain, decision, self.allow_nova_downtime)
            return f"{decision.why}; possible: {', '.join(possible)}"
        if self.mode != Mode.AUTO:
            return ""
        if decision.stream:
            return STREAM_HINT
        return "auto will use " + decision.why.removeprefix("auto chose ")
