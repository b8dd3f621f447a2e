"""A generic yes/no confirmation modal, used before anything that stops a guest or rolls back."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask one question; dismisses True (confirm button or `y`) or False (Esc, `n`, cancel)."""

    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;
        background: $background 60%;
    }
    ConfirmScreen > #confirm-box {
        width: 70;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $warning;
        background: $surface;
        padding: 0 1;
    }
    ConfirmScreen #confirm-title { text-style: bold; color: $warning; }
    ConfirmScreen #confirm-message { margin: 1 0 0 0; }
    ConfirmScreen #confirm-lines { color: $text-muted; padding: 0 0 0 2; }
    ConfirmScreen #confirm-buttons { height: auto; align-horizontal: right; margin: 1 0 0 0; }
    ConfirmScreen #confirm-buttons Button { margin: 0 0 0 2; }
    """

    BINDINGS = [
        Binding("escape,n", "answer(False)", "No", id="confirm.no"),
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
    ]

    def __init__(self, title: str, message: str, lines: Sequence[str] = (), *,
                 confirm_label: str = "Yes", cancel_label: str = "No") -> None:
        super().__init__()
        self._title = title
        self._message = message
        self._lines = list(lines)
        self._confirm_label = confirm_label
        self._cancel_label = cancel_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self._title, id="confirm-title", markup=False)
            yield Static(self._message, id="confirm-message", markup=False)
            if self._lines:
                yield Static("\n".join(self._lines), id="confirm-lines", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button(self._cancel_label, id="no", compact=True)
                yield Button(self._confirm_label, id="yes", variant="warning", compact=True)

    def on_mount(self) -> None:
        # The confirm button has focus so Enter answers; the warning is on screen above it.
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
