"""The snapshot dialog (`s`): mode, disk, format, image name and destination, keyboard only.

Dismisses with a SnapshotRequest, or None on Esc. Modes that stop the guest say so and ask for
a second, explicit confirmation before the request is returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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

from snaptui.core.choices import auto_mode, snapshot_disks
from snaptui.core.engine.plan import QUIESCE_CHOICES, Mode, SnapshotRequest
from snaptui.core.engine.preflight import validate_image_name
from snaptui.core.errors import BadInput
from snaptui.core.image_properties import OperatorMetadata, parse_properties, validate_operator
from snaptui.core.image_store import VISIBILITIES
from snaptui.core.models import DomainInfo, DomainState
from snaptui.core.nova_instance import STOPPING_MODES, describe, stop_refusal
from snaptui.core.priority import DEFAULT_PRIORITY, PRIORITIES
from snaptui.core.throttle import parse_rate
from snaptui.ui.confirm import ConfirmScreen
from snaptui.ui.form_widgets import Choices, FormCheckbox

ALL_DISKS = "__all__"
BWLIMIT_HINT = "bytes/s, e.g. 50M (extraction and upload)"
STOP_WARNING = "the guest will be stopped for the duration of the extraction"
clock: Callable[[], float] = time.time  # the default name's time; tests freeze it


def default_image_name(domain: str, now: float | None = None) -> str:
    """``<domain>-<UTC time>``, e.g. ``web01-20250101T120000Z``."""
    stamp = time.gmtime(clock() if now is None else now)
    return f"{domain}-{time.strftime('%Y%m%dT%H%M%SZ', stamp)}"


def resolved_mode(mode: Mode, domain: DomainInfo, modes: dict[Mode, str | None]) -> Mode:
    """The mode ``mode`` becomes: itself, or for ``auto`` what preflight will choose."""
    return mode if mode != Mode.AUTO else auto_mode(domain, modes)[0]


def stops_guest(mode: Mode, domain: DomainInfo, modes: dict[Mode, str | None]) -> bool:
    """True when the mode stops a running or paused guest while its disk is extracted."""
    active = domain.state in (DomainState.RUNNING, DomainState.PAUSED)
    return active and resolved_mode(mode, domain, modes) in (Mode.COLD, Mode.INTERNAL)


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

    def __init__(self, domain: DomainInfo, modes: dict[Mode, str | None], destination: str,
                 library_path: str | None, *, uri: str | None = None,
                 cloud: str | None = None, glance_available: bool | None = None,
                 stream_blocked: str | None = "not checked") -> None:
        super().__init__()
        # Why this host cannot stream (core/nbd_export.py), None when it can: auto then streams
        # a running guest to Glance (a pull-mode backup over NBD; engine/preflight_stream.py).
        self.stream_blocked = stream_blocked
        self.domain = domain
        self.modes = {m: modes.get(m) for m in Mode}
        # The app's default destination (core.choices.resolve_destination); glance can also be
        # chosen when a cloud is configured though the default is the library (--library DIR).
        self.destination = destination
        self.glance_available = (destination == "glance" if glance_available is None
                                 else glance_available or destination == "glance")
        self.library_path = library_path
        self.uri = uri
        self.cloud = cloud
        self.disks = snapshot_disks(domain)
        for mode in STOPPING_MODES:  # the dashboard never makes Nova stop an instance
            self.modes[mode] = self.modes[mode] or _short_nova_refusal(domain, mode)

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        first_mode = next((m for m in Mode if self.modes[m] is None), Mode.AUTO)
        with Vertical(id="dialog") as dialog:
            dialog.border_title = f"Snapshot {self.domain.name} ({self.domain.state})"
            with VerticalScroll(id="form", can_focus=False):
                with Horizontal(classes="row"):
                    yield Label("Mode", classes="label")
                    yield Choices(*self._mode_buttons(first_mode), id="mode")
                yield Static("", id="mode-hint", markup=False)
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
        """The "Image properties" section (core/image_properties.py checks what it gives)."""
        if self.domain.nova is not None:
            yield Static(describe(self.domain.nova) + ": cold and internal would let Nova "
                         "stop it", id="nova", markup=False)
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

    def _mode_buttons(self, first: Mode) -> list[RadioButton]:
        buttons = []
        for mode in Mode:
            reason = self.modes[mode]
            label = str(mode) if reason is None else f"{mode} (unavailable: {reason})"
            button = RadioButton(label, value=mode == first, name=str(mode),
                                 disabled=reason is not None)
            if reason is not None:
                button.add_class("-unavailable")
                button.tooltip = reason
            buttons.append(button)
        return buttons

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

    def _auto_hint(self) -> str:
        chosen, why = auto_mode(self.domain, self.modes)
        if chosen == Mode.LIVE and self.modes[Mode.BACKUP] is None and \
                self.stream_blocked is None and self._streams():
            return "auto will stream: a pull-mode backup read over NBD into Glance (no copy)"
        return "auto will use live" if chosen == Mode.LIVE else f"auto will use {chosen}: {why}"

    def _streams(self) -> bool:
        """The form's choices allow streaming (preflight_stream.stream_refusal's own rules)."""
        destination = self.query_one("#destination", Choices).chosen or self.destination
        fmt = self.query_one("#format", Choices).chosen or "qcow2"
        compress = fmt == "qcow2" and self.query_one("#compress", FormCheckbox).value
        return destination == "glance" and not compress and not self._checks()["verify"]

    @property
    def mode(self) -> Mode:
        return Mode(self.query_one("#mode", Choices).chosen or Mode.AUTO)

    def _refresh_hints(self) -> None:
        mode = self.mode
        hint = ""
        if mode == Mode.AUTO:
            hint = self._auto_hint()
        self.query_one("#mode-hint", Static).update(hint)
        warning = f"⚠ {mode} mode: {STOP_WARNING}" if self.stops_guest else ""
        self.query_one("#stop-warning", Static).update(warning)
        self.query_one("#stop-warning").display = bool(warning)
        raw = self.query_one("#format", Choices).chosen == "raw"
        compress = self.query_one("#compress", FormCheckbox)
        if raw:
            compress.value = False
        compress.disabled = raw

    @property
    def stops_guest(self) -> bool:
        return stops_guest(self.mode, self.domain, self.modes)

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
        self._refresh_hints()  # compress and verify boot decide whether auto streams

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

    def build_request(self) -> SnapshotRequest:
        """The request the form describes now (the name is not validated here)."""
        disk = self.query_one("#disk", Choices).chosen
        destination = self.query_one("#destination", Choices).chosen or self.destination
        fmt = self.query_one("#format", Choices).chosen or "qcow2"
        return SnapshotRequest(
            domain=self.domain.name,
            name=self.query_one("#name", Input).value,
            mode=self.mode,
            disk=None if disk in (None, "", ALL_DISKS) else disk,
            all_disks=disk == ALL_DISKS,
            out_format=fmt,
            compress=fmt == "qcow2" and self.query_one("#compress", FormCheckbox).value,
            destination=destination,
            uri=self.uri,
            cloud=self.cloud,
            library_dir=self.library_path if destination == "library" else None,
            **self._metadata(),
            **self._checks(),
            **self._load(),
        )

    # -- actions -----------------------------------------------------------------------------

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
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
        mode = resolved_mode(request.mode, self.domain, self.modes)

        def confirmed(yes: bool | None) -> None:
            # Not a lambda returning dismiss()'s awaitable: the callback may run in this
            # screen's own message pump, where awaiting its dismissal is a ScreenError.
            if yes:
                self.dismiss(request)

        self.app.push_screen(
            ConfirmScreen(
                f"Stop {self.domain.name}?",
                f"{mode} mode: {STOP_WARNING}. The guest is saved (managed save) and restarted "
                "as it was once the image is extracted.",
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


def _short_nova_refusal(domain: DomainInfo, mode: Mode) -> str | None:
    """Why the dialog does not offer a stopping mode on a running Nova instance."""
    if stop_refusal(domain, mode) is None:
        return None
    return "a Nova instance: Nova's power-state sync would stop it (CLI: --allow-nova-downtime)"
