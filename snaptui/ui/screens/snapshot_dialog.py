"""The snapshot dialog (`s`): mode, disk, format, image name and destination, keyboard only.

Dismisses with a SnapshotRequest, or None on Esc. Modes that stop the guest say so and ask for
a second, explicit confirmation before the request is returned. Which modes can run, what auto
becomes and whether it streams are preflight's own answers (core/engine/preflight/mode_decision.py),
asked again each time the form changes: the dialog never offers what preflight would refuse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    Collapsible,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Static,
    TextArea,
)

from snaptui.core.engine.plan import QUIESCE_CHOICES, Mode, SnapshotRequest
from snaptui.core.engine.preflight import mode_decision
from snaptui.core.engine.preflight.checks import validate_image_name
from snaptui.core.engine.preflight.mode_decision import (
    ModeDecision,
    ModeFacts,
    decide,
    mode_reasons,
)
from snaptui.core.errors import BadInput
from snaptui.core.images.properties import OperatorMetadata, parse_properties, validate_operator
from snaptui.core.images.store import VISIBILITIES
from snaptui.core.models import DiskInfo, DomainInfo
from snaptui.core.priority import DEFAULT_PRIORITY, PRIORITIES
from snaptui.core.throttle import parse_rate
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.mode_picker import ModePicker, guard_line
from snaptui.ui.widgets.form_widgets import Choices, FormCheckbox

ALL_DISKS = "__all__"
BWLIMIT_HINT = "bytes/s, e.g. 50M (extraction and upload)"
STOP_WARNING = "the guest will be stopped for the duration of the extraction"
clock: Callable[[], float] = time.time  # the default name's time; tests freeze it


def default_image_name(domain: str, now: float | None = None) -> str:
    """``<domain>-<UTC time>``, e.g. ``web01-20250101T120000Z``."""
    stamp = time.gmtime(clock() if now is None else now)
    return f"{domain}-{time.strftime('%Y%m%dT%H%M%SZ', stamp)}"


def _decision(mode: Mode, domain: DomainInfo, modes: dict[Mode, str | None]) -> ModeDecision:
    request = SnapshotRequest(domain=domain.name, name="-", mode=mode, destination="library")
    return decide(request, "library", domain, modes, ModeFacts())


def resolved_mode(mode: Mode, domain: DomainInfo, modes: dict[Mode, str | None]) -> Mode | None:
    """The mode ``mode`` becomes to the library (preflight's decision), None when refused."""
    return _decision(mode, domain, modes).mode


def stops_guest(mode: Mode, domain: DomainInfo, modes: dict[Mode, str | None]) -> bool:
    """True when the mode stops a running or paused guest while its disk is extracted."""
    return mode_decision.stops_guest(_decision(mode, domain, modes), domain)


class SnapshotDialog(ModalScreen[SnapshotRequest | None]):
    """Ask how to snapshot one domain; dismisses a SnapshotRequest or None."""

    DEFAULT_CSS = """
    SnapshotDialog { align: center middle; background: $background 60%; }
    SnapshotDialog > #dialog {
        width: 78; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; border-title-style: bold; background: $surface; padding: 0 1;
    }
    SnapshotDialog #form { height: auto; max-height: 1fr; }
    SnapshotDialog .row { height: auto; }
    SnapshotDialog .label { width: 13; padding: 0 1 0 0; color: $text-muted; }
    SnapshotDialog Choices { width: 1fr; background: $surface; }
    SnapshotDialog Choices.across { layout: horizontal; width: auto; }
    SnapshotDialog Choices.across > RadioButton { width: auto; margin: 0 2 0 0; }
    SnapshotDialog Choices > RadioButton.-unavailable { color: $text-disabled; }
    SnapshotDialog #mode-hint, SnapshotDialog #name-error { padding: 0 0 0 13; }
    SnapshotDialog #mode-hint, SnapshotDialog .hint { color: $text-muted; }
    SnapshotDialog #name-error { color: $error; }
    SnapshotDialog #compress, SnapshotDialog #verify { margin: 0 0 0 2; }
    SnapshotDialog Input { width: 1fr; }
    SnapshotDialog Input.-invalid { border: tall $error 60%; }
    SnapshotDialog #stop-warning { color: $warning; text-style: bold; margin: 1 0 0 0; }
    SnapshotDialog #props { padding: 0; border: none; background: $surface; }
    SnapshotDialog #props > Contents { padding: 0; height: auto; }
    SnapshotDialog #properties { height: 4; width: 1fr; }
    SnapshotDialog .small { width: 12; }
    SnapshotDialog #props-error { color: $error; padding: 0 0 0 13; display: none; }
    SnapshotDialog #bwlimit-hint { width: 1fr; padding: 0 0 0 1; }
    SnapshotDialog #bwlimit-hint.-error { color: $error; }
    SnapshotDialog #load { padding: 0; border: none; background: $surface; }
    SnapshotDialog #load > Contents { padding: 0; height: auto; }
    SnapshotDialog #nova { color: $accent; }
    SnapshotDialog #buttons { height: auto; align-horizontal: right; margin: 1 0 0 0; }
    SnapshotDialog #buttons Button { margin: 0 0 0 2; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="snapshot_dialog.cancel"),
        Binding("ctrl+s", "submit", "Snapshot", id="snapshot_dialog.submit"),
    ]

    def __init__(self, domain: DomainInfo, modes: ModeFacts | dict[Mode, str | None],
                 destination: str, library_path: str | None, *, uri: str | None = None,
                 cloud: str | None = None, glance_available: bool | None = None,
                 stream_blocked: str | None = "not checked") -> None:
        """``modes``: the host's facts (mode_decision.mode_facts: the reasons follow the disk
        chosen), or fixed reasons per mode (preflight.available_modes). ``stream_blocked``
        (with fixed reasons): why the host cannot stream, None when it can."""
        super().__init__()
        self.domain = domain
        if isinstance(modes, ModeFacts):
            self.facts, self.fixed_reasons = modes, None
        else:
            self.facts = ModeFacts(stream_blocked=lambda: stream_blocked)
            self.fixed_reasons = {m: modes.get(m) for m in Mode}
            # direct needs Glance's and the cluster's word (preflight asks them)
            if Mode.DIRECT not in modes:
                self.fixed_reasons[Mode.DIRECT] = self.facts.direct_blocked
        # The app's default destination (images.factory.resolve_destination); glance can also be
        # chosen when a cloud is configured though the default is the library (--library DIR).
        self.destination = destination
        self.glance_available = (destination == "glance" if glance_available is None
                                 else glance_available or destination == "glance")
        self.library_path = library_path
        self.uri = uri
        self.cloud = cloud
        self.disks = list(domain.snapshot_disks)
        self._ready = False  # the form is composed and mounted: decisions read it
        self.decision = self.decisions()[Mode.AUTO]

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = f"Snapshot {self.domain.name} ({self.domain.state})"
            with VerticalScroll(id="form", can_focus=False):
                yield ModePicker(self.domain, self.decisions(), id="modes")
                with Horizontal(classes="row"):
                    yield Label("Disk", classes="label")
                    yield Choices(*self._disk_buttons(), id="disk", classes="across")
                with Horizontal(classes="row"):
                    yield Label("Format", classes="label")
                    yield Choices(RadioButton("qcow2", value=True, name="qcow2"),
                                  RadioButton("raw", name="raw"), id="format", classes="across")
                    yield FormCheckbox("compress", id="compress", compact=True)
                with Horizontal(classes="row"):
                    yield Label("Image name", classes="label")
                    yield Input(default_image_name(self.domain.name), id="name",
                                placeholder="image name")
                yield Static("", id="name-error", markup=False)
                with Horizontal(classes="row"):
                    yield Label("Destination", classes="label")
                    yield Choices(*self._destination_buttons(), id="destination",
                                  classes="across")
                yield from self._checks_row()
                yield from self._property_rows()
                yield from self._load_rows()
                yield Static("", id="stop-warning", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Snapshot", id="submit", variant="primary", compact=True)

    def _property_rows(self) -> ComposeResult:
        """The "Image properties" section (core/images/properties.py checks what it gives)."""
        with Collapsible(title="Image properties", collapsed=True, id="props"):
            with Horizontal(classes="row"):
                yield Label("Properties", classes="label")
                yield TextArea("", id="properties", soft_wrap=True, show_line_numbers=False,
                               placeholder="KEY=VALUE, one a line")
            with Horizontal(classes="row"):
                yield Label("Tags", classes="label")
                yield Input("", id="tags", placeholder="comma-separated")
            with Horizontal(classes="row"):
                yield Label("Visibility", classes="label")
                yield Choices(RadioButton("default", value=True, name=""),
                              *(RadioButton(v, name=v) for v in VISIBILITIES),
                              id="visibility", classes="across")
            with Horizontal(classes="row"):
                yield Label("Min disk GiB", classes="label")
                yield Input("", id="min-disk", type="integer", classes="small",
                            placeholder="auto")
                yield Label(" Min RAM MiB", classes="label")
                yield Input("", id="min-ram", type="integer", classes="small",
                            placeholder="auto")
            with Horizontal(classes="row"):
                yield Label("", classes="label")
                yield FormCheckbox("protected", id="protected", compact=True)
                yield FormCheckbox("hw_* from XML", value=True, id="derive", compact=True)
        yield Static("", id="props-error", markup=False)

    def _load_rows(self) -> ComposeResult:
        """The "Host load" section: the job's priority and bandwidth cap (snapshot --priority,
        --bwlimit; core/priority.py, core/throttle.py)."""
        with Collapsible(title="Host load", collapsed=True, id="load"):
            with Horizontal(classes="row"):
                yield Label("Priority", classes="label")
                yield Choices(*(RadioButton(p, value=p == DEFAULT_PRIORITY, name=p)
                                for p in PRIORITIES), id="priority", classes="across")
            with Horizontal(classes="row"):
                yield Label("Bandwidth", classes="label")
                yield Input("", id="bwlimit", classes="small", placeholder="no cap")
                yield Label(BWLIMIT_HINT, id="bwlimit-hint", classes="hint", markup=False)

    def _load(self) -> dict[str, Any]:
        """The "Host load" section as SnapshotRequest fields; BadInput for a bad rate."""
        text = self.query_one("#bwlimit", Input).value.strip()
        return {"priority": self.query_one("#priority", Choices).chosen or DEFAULT_PRIORITY,
                "bwlimit": parse_rate(text, "Bandwidth") if text else None}

    def _checks_row(self) -> ComposeResult:
        """Quiesce (auto/require/off) and the verify-boot choice (snapshot --verify)."""
        with Horizontal(classes="row"):
            yield Label("Quiesce", classes="label")
            yield Choices(*(RadioButton(q, value=q == "auto", name=q) for q in QUIESCE_CHOICES),
                          id="quiesce", classes="across")
            yield FormCheckbox("verify boot", id="verify", compact=True)

    def _checks(self) -> dict[str, Any]:
        return {"quiesce": self.query_one("#quiesce", Choices).chosen or "auto",
                "verify": self.query_one("#verify", FormCheckbox).value}

    def _disk_buttons(self) -> list[RadioButton]:
        buttons = [RadioButton(f"{d.target} ({d.format or '?'})", value=i == 0, name=d.target)
                   for i, d in enumerate(self.disks)]
        if len(self.disks) > 1:
            buttons.append(RadioButton("all disks", name=ALL_DISKS))
        if not buttons:
            buttons.append(RadioButton("no disk", name="", disabled=True))
        return buttons

    def _destination_buttons(self) -> list[RadioButton]:
        glance_label = "glance" if self.glance_available else "glance (no cloud)"
        library = self.library_path or "default"
        if len(library) > 36:
            library = "…" + library[-35:]
        return [
            RadioButton(glance_label, name="glance", value=self.destination == "glance",
                        disabled=not self.glance_available),
            RadioButton(f"library ({library})", name="library",
                        value=self.destination != "glance"),
        ]

    def on_mount(self) -> None:
        self._ready = True
        self.query_one("#mode", Choices).focus()
        self._refresh_hints()
        self._fit_form()

    def on_resize(self, event: events.Resize) -> None:
        self._fit_form()

    def _fit_form(self) -> None:
        """Keep the buttons on screen: the form scrolls within what the dialog's border (2
        lines) and the buttons row (2) leave of the terminal."""
        self.query_one("#form").styles.max_height = max(self.size.height - 4, 3)

    # -- state -------------------------------------------------------------------------------

    def _chosen_disks(self) -> list[DiskInfo]:
        """The disks the form takes now (the reasons of internal and live depend on them)."""
        if not self._ready:  # the form's default: the first disk
            return self.disks[:1]
        disk = self.query_one("#disk", Choices).chosen
        if disk == ALL_DISKS:
            return self.disks
        return [d for d in self.disks if d.target == disk]

    def _form_request(self, mode: Mode) -> SnapshotRequest:
        """What decides the mode, as the form has it (before compose: its defaults)."""
        if not self._ready:
            return SnapshotRequest(domain=self.domain.name, name="-", mode=mode,
                                   disk=self.disks[0].target if self.disks else None,
                                   destination=self.destination)
        return replace(self._base_request(), mode=mode)

    def decisions(self) -> dict[Mode, ModeDecision]:
        """Preflight's decision for each mode the form could ask for, the rest as it is."""
        reasons = (self.fixed_reasons if self.fixed_reasons is not None
                   else mode_reasons(self.domain, self._chosen_disks(), self.facts))
        out = {}
        for mode in Mode:
            request = self._form_request(mode)
            out[mode] = decide(request, request.destination or self.destination, self.domain,
                               reasons, self.facts)
        return out

    @property
    def mode(self) -> Mode:
        return self.query_one(ModePicker).mode

    def _refresh_hints(self) -> None:
        self.decision = self.query_one(ModePicker).show(self.decisions())
        warning = f"⚠ {self.mode} mode: {STOP_WARNING}" if self.stops_guest else ""
        self.query_one("#stop-warning", Static).update(warning)
        self.query_one("#stop-warning").display = bool(warning)
        self.query_one("#submit", Button).disabled = self.decision.mode is None
        raw = self.query_one("#format", Choices).chosen == "raw"
        compress = self.query_one("#compress", FormCheckbox)
        if raw:
            compress.value = False
        compress.disabled = raw

    @property
    def stops_guest(self) -> bool:
        return mode_decision.stops_guest(self.decision, self.domain)

    def _name_error(self) -> str | None:
        try:
            validate_image_name(self.query_one("#name", Input).value)
        except BadInput as err:
            return str(err)
        return None

    def _metadata(self) -> dict[str, Any]:
        """The image-properties section as SnapshotRequest fields; BadInput when wrong."""
        glance = (self.query_one("#destination", Choices).chosen or self.destination) == "glance"
        lines = [line for line in self.query_one("#properties", TextArea).text.splitlines()
                 if line.strip()]
        tags = tuple(t.strip() for t in self.query_one("#tags", Input).value.split(",")
                     if t.strip())

        def number(widget: str) -> int | None:
            text = self.query_one(widget, Input).value.strip()
            return int(text) if text else None

        meta = OperatorMetadata(
            properties=parse_properties(lines, glance=glance), tags=tags,
            visibility=self.query_one("#visibility", Choices).chosen or None,
            protected=self.query_one("#protected", FormCheckbox).value,
            min_disk=number("#min-disk"), min_ram=number("#min-ram"))
        validate_operator(meta, glance=glance)
        return {"properties": meta.properties, "tags": meta.tags, "visibility": meta.visibility,
                "protected": meta.protected, "min_disk": meta.min_disk,
                "min_ram": meta.min_ram, "derive": self.query_one("#derive", FormCheckbox).value}

    def _show_metadata_error(self) -> str | None:
        error = _error_of(self._metadata)
        self.query_one("#props-error", Static).update(error or "")
        self.query_one("#props-error").display = error is not None
        return error

    def _show_load_error(self) -> str | None:
        """A bad bandwidth is said beside its field, in place of the field's hint."""
        error = _error_of(self._load)
        hint = self.query_one("#bwlimit-hint", Label)
        hint.update(error or BWLIMIT_HINT)
        hint.set_class(error is not None, "-error")
        self.query_one("#bwlimit", Input).set_class(error is not None, "-invalid")
        return error

    def _show_name_error(self) -> str | None:
        error = self._name_error()
        self.query_one("#name-error", Static).update(error or "")
        self.query_one("#name", Input).set_class(error is not None, "-invalid")
        return error

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self._refresh_hints()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._refresh_hints()  # compress, verify boot and Nova downtime decide the mode

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "bwlimit":
            self._show_load_error()
        elif event.input.id == "name":
            self._show_name_error()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.action_cancel()

    def _base_request(self) -> SnapshotRequest:
        """The form's request without its metadata and load sections (never raises)."""
        disk = self.query_one("#disk", Choices).chosen
        destination = self.query_one("#destination", Choices).chosen or self.destination
        fmt = self.query_one("#format", Choices).chosen or "qcow2"
        picker = self.query_one(ModePicker)
        return SnapshotRequest(
            domain=self.domain.name,
            name=self.query_one("#name", Input).value,
            mode=picker.mode,
            disk=None if disk in (None, "", ALL_DISKS) else disk,
            all_disks=disk == ALL_DISKS,
            out_format=fmt,
            compress=fmt == "qcow2" and self.query_one("#compress", FormCheckbox).value,
            destination=destination,
            uri=self.uri,
            cloud=self.cloud,
            library_dir=self.library_path if destination == "library" else None,
            allow_nova_downtime=picker.allow_nova_downtime,
            **self._checks(),
        )

    def build_request(self) -> SnapshotRequest:
        """The request the form describes now (the name is not validated here)."""
        return replace(self._base_request(), **self._metadata(), **self._load())

    # -- actions -----------------------------------------------------------------------------

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        self._refresh_hints()
        if self.decision.mode is None:  # the hint says why, and what would make one possible
            self.app.bell()
            return
        if self._show_name_error():
            self.query_one("#name", Input).focus()
            return
        if self._show_metadata_error():
            self.query_one("#props", Collapsible).collapsed = False
            self.query_one("#properties", TextArea).focus()
            return
        if self._show_load_error():
            self.query_one("#load", Collapsible).collapsed = False
            self.query_one("#bwlimit", Input).focus()
            return
        request = self.build_request()
        if not self.stops_guest:
            self.dismiss(request)
            return
        mode = self.decision.mode
        guard = f" {guard_line()}" if request.allow_nova_downtime and \
            self.domain.nova is not None else ""

        def confirmed(yes: bool | None) -> None:
            # Not a lambda returning dismiss()'s awaitable: the callback may run in this
            # screen's own message pump, where awaiting its dismissal is a ScreenError.
            if yes:
                self.dismiss(request)

        self.app.push_screen(
            ConfirmScreen(
                f"Stop {self.domain.name}?",
                f"{mode} mode: {STOP_WARNING}. The guest is saved (managed save) and restarted "
                f"as it was once the image is extracted.{guard}",
                confirm_label="Stop guest and snapshot", cancel_label="Back",
            ),
            confirmed,
        )


def _error_of(check: Callable[[], object]) -> str | None:
    """The one-line BadInput (or ValueError) ``check`` raises, or None."""
    try:
        check()
    except (BadInput, ValueError) as err:
        return str(err)
    return None
