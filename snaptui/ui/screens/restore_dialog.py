"""The restore dialog: which image goes back on which guest, what is replaced, and the go.

Opened by `R` on an image (its source domain) or on a domain (its images, newest first, verified
ones marked); a new guest's name makes it a ``--as`` restore instead of replacing the disk. The
Jobs screen opens it on a finished restore job to undo it (``--undo``). Every change runs the
restore's preflight in a worker (nothing is touched) and shows what it would do; the go button
dismisses with the request the caller then launches.
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
from textual.widgets import Button, Checkbox, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from snaptui.core.engine.journal import JobRecord
from snaptui.core.engine.states import JobStatus
from snaptui.core.errors import SnaptuiError
from snaptui.core.models import ImageRecord
from snaptui.core.present import size_text
from snaptui.core.restore import RestoreRequest, prepare
from snaptui.core.restore.describe import confirmation
from snaptui.core.restore.plan import ACTION_RESTORE, KIND

VERIFIED = "✓"


def image_label(image: ImageRecord) -> str:
    """One line per image: verified mark, date, name, size."""
    mark = VERIFIED if image.properties.get("snaptui_verified") else " "
    return f"{mark} {(image.created_at or '')[:16]}  {image.name}  {size_text(image.size)}"


def newest_first(images: list[ImageRecord]) -> list[ImageRecord]:
    return sorted(images, key=lambda i: i.created_at or "", reverse=True)


def undoable(job: JobRecord) -> bool:
    """A finished restore in place (a new guest has nothing to put back)."""
    return (job.kind == KIND and job.plan.get("action") == ACTION_RESTORE
            and job.status == JobStatus.DONE)


def undo_request(job: JobRecord, cloud: str | None) -> RestoreRequest:
    """What `snaptui restore --undo JOB` asks, for the undo dialog."""
    return RestoreRequest(undo_job=job.job_id, uri=job.plan.get("uri"), cloud=cloud,
                          priority=job.plan.get("priority", "low"))


class RestoreDialog(ModalScreen[RestoreRequest | None]):
    """Choose the image (when several), a new guest's name or the shutdown options, read the
    preflight, confirm; or, for ``request.undo_job``, confirm that restore's undo."""

    DEFAULT_CSS = """
    RestoreDialog { align: center middle; background: $background 60%; }
    RestoreDialog > #restore-box {
        width: 96; max-width: 100%; height: auto; max-height: 100%;
        border: thick $warning; background: $surface; padding: 0 1;
    }
    RestoreDialog #restore-title { text-style: bold; color: $warning; }
    RestoreDialog OptionList { height: auto; max-height: 8; }
    RestoreDialog #restore-as { height: auto; margin: 1 0 0 0; }
    RestoreDialog #restore-as Label { padding: 0 1 0 0; }
    RestoreDialog #as-name { width: 1fr; }
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
        self.undo = bool(request.undo_job)
        self.request = request if self.undo else \
            replace(request, domain=domain, image=self.images[0].id)
        self.ready = False  # the preflight of the request as it is now passed

    @property
    def heading(self) -> str:
        if self.undo:
            return f"Undo restore {self.request.undo_job} on {self.domain}"
        if self.request.as_name:
            return f"A new guest {self.request.as_name} from an image of {self.domain}"
        return f"Restore an image on {self.domain}"

    @property
    def go_label(self) -> str:
        return ("Undo restore" if self.undo else
                "Create guest" if self.request.as_name else "Restore")

    def compose(self) -> ComposeResult:
        with Vertical(id="restore-box"):
            yield Static(self.heading, id="restore-title", markup=False)
            if not self.undo:
                yield OptionList(*(Option(image_label(i), id=i.id) for i in self.images),
                                 id="restore-images")
                with Horizontal(id="restore-as"):
                    yield Label("As a new guest:")
                    yield Input(placeholder="its name (empty: replace the disk)",
                                id="as-name", compact=True, max_length=64)
            with Horizontal(id="restore-options"):
                yield Checkbox("Shut down first", id="shutdown", compact=True)
                yield Checkbox("Power off if it does not stop", id="force", compact=True)
                yield Checkbox("Start after", id="start", compact=True)
            yield Static("checking…", id="restore-preview", markup=False)
            yield Static("", id="restore-error", markup=False)
            with Horizontal(id="restore-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button(self.go_label, id="go", variant="warning", compact=True,
                             disabled=True)

    def on_mount(self) -> None:
        if self.undo:
            self.query_one("#shutdown", Checkbox).focus()
        else:
            self.query_one(OptionList).highlighted = 0
            self.query_one(OptionList).focus()
        self.check()

    @on(Input.Changed, "#as-name")
    def _name_changed(self, event: Input.Changed) -> None:
        name = event.value.strip() or None
        if name == self.request.as_name:
            return
        self.request = replace(self.request, as_name=name)
        self.query_one("#restore-title", Static).update(self.heading)
        self.query_one("#go", Button).label = self.go_label
        for key in ("shutdown", "force"):  # a new guest leaves the source guest alone
            self.query_one(f"#{key}", Checkbox).disabled = name is not None
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
