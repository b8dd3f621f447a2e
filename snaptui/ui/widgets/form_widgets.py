"""Compact form controls for keyboard-only dialogs: Enter submits the form, space toggles."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.widgets import Checkbox, RadioButton, RadioSet


class Choices(RadioSet):
    """A compact radio set: arrows choose at once, Enter submits the form (space toggles)."""

    BINDINGS = [Binding("enter", "screen.submit", "Snapshot", show=False)]

    def __init__(self, *buttons: RadioButton, **kwargs: Any) -> None:
        super().__init__(*buttons, compact=True, **kwargs)

    def on_mount(self) -> None:
        # RadioSet's own mount handler (run after this one) selects the first available
        # button; the pressed one (the default, e.g. library after glance) is what is meant.
        self.call_after_refresh(self._select_pressed)

    def _select_pressed(self) -> None:
        if self.pressed_index >= 0:
            self._selected = self.pressed_index

    def _press_selected(self) -> None:
        # Not while mounting: RadioSet moves to the first available button then, which must
        # not press it over the default.
        if self._selected is not None and self.is_mounted:
            button = self._nodes[self._selected]
            if isinstance(button, RadioButton) and not button.value:
                button.value = True

    def action_next_button(self) -> None:
        super().action_next_button()
        self._press_selected()

    def action_previous_button(self) -> None:
        super().action_previous_button()
        self._press_selected()

    @property
    def chosen(self) -> str | None:
        """The name of the pressed button (its ``name``), or None."""
        return self.pressed_button.name if self.pressed_button is not None else None


class FormCheckbox(Checkbox):
    """A compact checkbox where Enter submits the form and space toggles."""

    BINDINGS = [Binding("enter", "screen.submit", "Snapshot", show=False)]
