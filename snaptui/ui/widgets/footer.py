"""A Footer that recomposes only when what it shows changed.

Textual's Footer recomposes (removes and re-mounts every FooterKey: a layout and a restyle)
on each ``bindings_updated`` signal, and a screen publishes that on every ``refresh_bindings()``
and focus change -- in the dashboard, on every cursor move. The keys it shows rarely change, so
this one compares what it would compose with what it last composed and skips equal ones.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.widgets import Footer

if TYPE_CHECKING:
    from textual.binding import Binding
    from textual.screen import Screen

Signature = tuple[Hashable, ...]


def binding_signature(binding: Binding, key_display: str, enabled: bool,
                      tooltip: str) -> Signature:
    """Everything ``Footer.compose`` reads from one active binding."""
    group = binding.group
    group_look = None if group is None else (group.description, group.compact)
    return (binding.key, key_display, binding.description, binding.action, group_look,
            enabled, tooltip, binding.tooltip)


class BindingsFooter(Footer):
    """Footer whose ``bindings_changed`` recomposes only when its keys would look different:
    which bindings are shown, their keys, descriptions, enabled (greyed-out) state and
    tooltips."""

    def __init__(self, *, show_command_palette: bool = True, compact: bool = False) -> None:
        super().__init__(show_command_palette=show_command_palette, compact=compact)
        self._composed: Signature | None = None  # what the current FooterKeys show
        self._recompose_pending = False

    def shown_signature(self, screen: Screen) -> Signature:
        """What ``compose`` would show for ``screen``'s active bindings now."""
        app = self.app
        active = screen.active_bindings
        shown = tuple(binding_signature(binding, app.get_key_display(binding), enabled, tooltip)
                      for _node, binding, enabled, tooltip in active.values() if binding.show)
        palette: Signature | None = None
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            entry = active.get(app.COMMAND_PALETTE_BINDING)
            if entry is not None:
                _node, binding, enabled, tooltip = entry
                palette = binding_signature(binding, app.get_key_display(binding), enabled,
                                            tooltip)
        return (shown, palette)

    def compose(self) -> ComposeResult:
        self._recompose_pending = False
        self._composed = self.shown_signature(self.screen) if self._bindings_ready else None
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if not (self.is_attached and screen is self.screen) or self._recompose_pending:
            return
        if self.shown_signature(screen) == self._composed:
            return
        self._recompose_pending = True
        self.call_after_refresh(self.recompose)
