"""The restore dialog: which image goes back on which guest, what is replaced, and the go.

Opened by `R` on an image (its source domain) or on a domain (its images, newest first, verified
ones marked). Every change runs the restore's preflight in a worker (nothing is touched) and
shows what it would do; Restore dismisses with the request the main screen then launches.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, OptionList, Static
from textual.widgets.option_list import Option

from snaptui.core.errors import SnaptuiError
from snaptui.core.models import ImageRecord
from snaptui.core.present import size_text
from snaptui.core.restore import RestoreRequest, prepare
from snaptui.core.restore.describe import confirmation

VERIFIED = "✓"


def image_label(image: ImageRecord) -> str:
    """One line per image: verified mark, date, name, size."""
    mark = VERIFIED if image.properties.get("snaptui_verified") else " "
    return f"{mark} {(image.created_at or '')[:16]}  {image.name}  {size_text(image.size)}"


def newest_first(images: list[ImageRecord]) -> list[ImageRecord]:
    return sorted(images, key=lambda i: i.created_at or "", reverse=True)


class RestoreDialog(ModalScreen[RestoreRequest | None]):
    """Choose the image (when several), the shutdown options, read the preflight, confirm."""

    DEFAULT_CSS = """
    RestoreDialog { align: center middle; background: $background 60%; }
    RestoreDialog > #restore-box {
        width: 96; max-width: 100%; height: auto; max-height: 100%;
        border: thick $warning; background: $surface; padding: 0 1;
    }
    RestoreDialog #restore-title { text-style: bold; color: $warning; }
    RestoreDialog OptionList { height: auto; max-height: 8; }
    RestoreDialog #restore-preview { color: $text-muted; margin: 1 0 0 0; }
    RestoreDialog #restore-error { color: $error; }
    RestoreDialog #restore-buttons { height: auto; align-horizontal: right; margin: 1 0 0 0; }
    RestoreDialog #restore-buttons Button { margin: 0 0 0 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="restore.cancel"),
    ]

    def __init__(self, domain: str, images: list[ImageRecord], request: RestoreRequest) -> None:
        super().__init__()
        self.domain = domain
        self.images = newest_first(images)
        self.request = replace(request, domain=domain, image=self.images[0].id)
        self.ready = False  # the preflight of the request as it is now passed

    def compose(self) -> ComposeResult:
        with Vertical(id="restore-box"):
            yield Static(f"Restore an image on {self.domain}", id="restore-title",
                         markup=False)
            yield OptionList(*(Option(image_label(i), id=i.id) for i in self.images),
                             id="restore-images")
            with Horizontal(id="restore-options"):
                yield Checkbox("Shut down first", id="shutdown", compact=True)
                yield Checkbox("Power off if it does not stop", id="force", compact=True)
                yield Checkbox("Start after", id="start", compact=True)
            yield Static("checking…", id="restore-preview", markup=False)
            yield Static("", id="restore-error", markup=False)
            with Horizontal(id="restore-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Restore", id="go", variant="warning", compact=True,
                             disabled=True)

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = 0
        self.query_one(OptionList).focus()
        self.check()

    @on(OptionList.OptionHighlighted)
    def _image_chosen(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id and event.option.id != self.request.image:
            self.request = replace(self.request, image=event.option.id)
            self.check()

    @on(Checkbox.Changed)
    def _option_changed(self, event: Checkbox.Changed) -> None:
        key, value = event.checkbox.id, bool(event.value)
        if key == "shutdown":
            self.request = replace(self.request, shutdown=value)
        elif key == "force":
            self.request = replace(self.request, force=value)
        elif key == "start":
            self.request = replace(self.request, start=value)
        else:
            return
        self.check()

    def check(self) -> None:
        self.ready = False
        self.query_one("#go", Button).disabled = True
        self.query_one("#restore-preview", Static).update("checking…")
        self.query_one("#restore-error", Static).update("")
        self.preflight(self.request)

    @work(thread=True, exclusive=True, exit_on_error=False, group="restore-preflight",
          description="check the restore")
    def preflight(self, request: RestoreRequest) -> None:
        try:
            plan, _steps, _store = asyncio.run(prepare(request))
        except SnaptuiError as err:
            self.app.call_from_thread(self._show, request, [], str(err))
            return
        self.app.call_from_thread(self._show, request, confirmation(plan), None)

    def _show(self, request: RestoreRequest, lines: list[str], error: str | None) -> None:
        if request != self.request:
            return  # a later change is being checked
        self.query_one("#restore-preview", Static).update("\n".join(lines))
        self.query_one("#restore-error", Static).update(error or "")
        self.ready = error is None
        self.query_one("#go", Button).disabled = not self.ready

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "go" and self.ready:
            self.dismiss(self.request)
        elif event.button.id == "cancel":
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
