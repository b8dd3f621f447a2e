"""SnaptuiApp: the dashboard. Services are built by ``launch.py`` and injected here; the app
never reads the environment itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Protocol

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.theme import Theme
from textual.worker import Worker

from snaptui.core.errors import SnaptuiError
from snaptui.core.image_store import ImageStore
from snaptui.core.libvirt_host import LibvirtHost
from snaptui.ui import messages
from snaptui.ui.commands import SnaptuiCommands
from snaptui.ui.config import UiConfig
from snaptui.ui.main_screen import IMAGE_REFRESH_S, MainScreen
from snaptui.ui.themes import DEFAULT_THEME
from snaptui.ui.worker_failures import is_failure, report_failure


class Watcher(Protocol):
    """What the app needs of a DomainEventWatcher."""

    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...


WatcherFactory = Callable[[Callable[[Any], None]], Watcher]


class SnaptuiApp(App[int]):
    """Domains and images side by side; snapshots, jobs, themes and the command palette."""

    CSS_PATH = "app.tcss"
    TITLE = "snaptui"
    COMMANDS = App.COMMANDS | {SnaptuiCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+p", "command_palette", "Palette", id="palette", show=False),
    ]

    def __init__(self, *, host: LibvirtHost, store: ImageStore,
                 watcher_factory: WatcherFactory | None = None, demo: bool = False,
                 config: UiConfig | None = None, themes: Sequence[Theme] = (),
                 theme: str | None = None, image_refresh_s: float = IMAGE_REFRESH_S,
                 cloud: str | None = None, library: str | None = None,
                 demo_speed: float = 0.0, glance_available: bool | None = None) -> None:
        super().__init__()
        self.host = host
        self.store = store
        # What the app was started with (-c/--os-cloud/--library): every job it launches
        # goes to the same hypervisor, cloud and library, whatever the environment says.
        self.uri = host.uri
        self.cloud = cloud
        self.library = library
        # Whether the snapshot dialog may offer Glance (default: only when it is the store).
        self.glance_available = (store.kind == "glance" if glance_available is None
                                 else glance_available)
        self.demo = demo
        self.demo_speed = demo_speed  # demo jobs paced like a real host at this speed (0: not)
        self.config = config or UiConfig()
        self.image_refresh_s = image_refresh_s
        self._watcher_factory = watcher_factory
        self._watcher: Watcher | None = None
        self.snaptui_themes = [t.name for t in themes]
        for item in themes:
            self.register_theme(item)
        name = theme or self.config.theme or DEFAULT_THEME
        if name not in self.available_themes:  # e.g. a theme file removed since it was saved
            name = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = name
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        self.sub_title = ("demo lab · libvirt test driver" if demo
                          else f"{host.uri} · {store.kind}")
        self.main = MainScreen()

    @classmethod
    def binding_ids(cls) -> set[str]:
        """Every remappable binding id (config ``[keymap]`` keys)."""
        ids = {b.id for b in MainScreen.BINDINGS if isinstance(b, Binding) and b.id}
        return ids | {b.id for b in cls.BINDINGS if isinstance(b, Binding) and b.id}

    def get_default_screen(self) -> Screen:
        return self.main

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self._watcher_factory is not None:
            self._watcher = self._watcher_factory(self._libvirt_event)
            self._watcher.start()

    def on_unmount(self) -> None:
        if self._watcher is not None:
            self._watcher.stop(timeout=2.0)

    def _libvirt_event(self, event: Any) -> None:
        """Runs on the watcher's thread: post_message is thread-safe."""
        self.main.post_message(messages.DomainEvent(event))

    def on_job_finished(self, message: messages.JobFinished) -> None:
        self.main.job_finished(message.job_id)

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place a failed worker becomes a notification: the app's own, and every
        screen's (forwarded by ``ForwardsWorkerFailures``)."""
        if is_failure(event):
            report_failure(self, event)

    # -- themes --------------------------------------------------------------------------------

    def _theme_changed(self, theme: Theme) -> None:
        for pane in (self.main.domains_pane, self.main.images_pane):
            pane.table.recolor()
        if theme.name != self.config.theme:
            self.config.theme = theme.name
            try:
                self.config.save()
            except (OSError, SnaptuiError) as err:
                self.notify(f"cannot save config: {err}", severity="warning", markup=False)

    def theme_cycle(self) -> list[str]:
        """Themes `t` steps through: snaptui's own, then Textual's dark and light."""
        return [*self.snaptui_themes, "textual-dark", "textual-light"]

    def action_cycle_theme(self) -> None:
        cycle = self.theme_cycle()
        index = cycle.index(self.theme) + 1 if self.theme in cycle else 0
        self.theme = cycle[index % len(cycle)]
        self.notify(f"theme {self.theme}", timeout=1.5)

    # -- help and palette ----------------------------------------------------------------------

    def action_help(self) -> None:
        from snaptui.ui.help_screen import HelpScreen

        self.push_screen(HelpScreen(self.binding_rows()))

    def binding_rows(self) -> list[tuple[str, str, str]]:
        """(key as shown, binding id, description) of every main binding, with remaps."""
        rows = []
        for binding in [*MainScreen.BINDINGS, *self.BINDINGS]:
            if not isinstance(binding, Binding):
                continue
            keys = self._keymap.get(binding.id or "", binding.key)
            shown = ", ".join(self.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))
            help_text = MainScreen.ACTIONS_HELP.get(binding.id or "", binding.description)
            rows.append((shown, binding.id or "", help_text))
        rows.append(("escape", "", "Close the filter, a dialog or this help"))
        rows.append(("tab", "", "Move between Domains and Images"))
        return rows

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Next theme", "Cycle to the next snaptui theme",
                            self.action_cycle_theme)
        yield SystemCommand("Help", "Show keys and what they do", self.action_help)
