"""SnaptuiApp: the dashboard. Services are built by ``launch.py`` and injected here; the app
never reads the environment itself."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, ClassVar, Protocol

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.signal import Signal
from textual.theme import Theme
from textual.worker import Worker

from snaptui.core.errors import SnaptuiError
from snaptui.core.fleet.hosts import LOCAL_NAME, HostSpec
from snaptui.core.fleet.inventory import Fleet
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.settings import Settings
from snaptui.ui import messages
from snaptui.ui.commands import SnaptuiCommands
from snaptui.ui.screens.main_screen import IMAGE_REFRESH_S, MainScreen
from snaptui.ui.themes import DEFAULT_THEME
from snaptui.ui.worker_failures import is_failure, report_failure

log = logging.getLogger(__name__)


class Watcher(Protocol):
    """What the app needs of a DomainEventWatcher."""

    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...


# One watcher per host (None: that host has no events to watch, e.g. the demo's test driver).
WatcherFactory = Callable[[HostSpec, Callable[[Any], None]], Watcher | None]


class SnaptuiApp(App[int]):
    """Domains and images side by side; snapshots, jobs, themes and the command palette."""

    CSS_PATH = "app.tcss"
    TITLE = "snaptui"
    COMMANDS = App.COMMANDS | {SnaptuiCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+p", "command_palette", "Palette", id="palette", show=False),
    ]

    def __init__(self, *, store: ImageStore, host: LibvirtHost | None = None,
                 fleet: Fleet | None = None, watcher_factory: WatcherFactory | None = None,
                 demo: bool = False,
                 config: Settings | None = None, themes: Sequence[Theme] = (),
                 theme: str | None = None, image_refresh_s: float = IMAGE_REFRESH_S,
                 cloud: str | None = None, library: str | None = None,
                 demo_speed: float = 0.0, glance_available: bool | None = None) -> None:
        super().__init__()
        if fleet is None:
            if host is None:
                raise ValueError("SnaptuiApp needs a host or a fleet")
            fleet = Fleet.of([(HostSpec(LOCAL_NAME, host.uri), host)])
        self.fleet = fleet
        self.remote_jobs: dict[str, messages.RemoteJobUpdated] = {}  # HOST:JOB -> latest
        # Published for each update; the Jobs screen subscribes while it is shown.
        self.remote_job_updates: Signal[messages.RemoteJobUpdated] = Signal(self, "remote-jobs")
        self.store = store
        # What the app was started with (-c/--os-cloud/--library): every job it launches
        # goes to the same hypervisors, cloud and library, whatever the environment says.
        self.cloud = cloud
        self.library = library
        # Whether the snapshot dialog may offer Glance (default: only when it is the store).
        self.glance_available = (store.kind == "glance" if glance_available is None
                                 else glance_available)
        self.demo = demo
        self.demo_speed = demo_speed  # demo jobs paced like a real host at this speed (0: not)
        self.config = config or Settings()
        self.image_refresh_s = image_refresh_s
        self._watcher_factory = watcher_factory
        # host → its running watcher (None: the factory has none for that host)
        self._watchers: dict[str, Watcher | None] = {}
        self._watching: set[str] = set()  # hosts whose watcher is starting
        self._watch_lock = threading.Lock()
        self._watch_closed = False
        self.snaptui_themes = [t.name for t in themes]
        for item in themes:
            self.register_theme(item)
        name = theme or self.config.theme or DEFAULT_THEME
        if name not in self.available_themes:  # e.g. a theme file removed since it was saved
            name = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = name
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        several = len(fleet) > 1
        where = f"{len(fleet)} hosts" if several else self.uri
        self.sub_title = (("demo lab · libvirt test driver" + (f" · {where}" if several else ""))
                          if demo else f"{where} · {store.kind}")
        self.main = MainScreen(hosts=fleet.names)

    @property
    def host(self) -> LibvirtHost:
        """The first host's connection (what is not fleet-aware yet works on it)."""
        return self.fleet.first.libvirt

    @host.setter
    def host(self, host: LibvirtHost) -> None:
        self.fleet.first.libvirt = host

    @property
    def uri(self) -> str:
        """The first host's URI."""
        return self.fleet.first.libvirt.uri

    @classmethod
    def binding_ids(cls) -> set[str]:
        """Every remappable binding id (config ``[keymap]`` keys)."""
        ids = {b.id for b in MainScreen.BINDINGS if isinstance(b, Binding) and b.id}
        return ids | {b.id for b in cls.BINDINGS if isinstance(b, Binding) and b.id}

    def get_default_screen(self) -> Screen:
        return self.main

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        for host in self.fleet.hosts:
            self.watch_host(host.name)

    def on_unmount(self) -> None:
        with self._watch_lock:
            self._watch_closed = True
            watchers, self._watchers = list(self._watchers.values()), {}
        for watcher in watchers:
            if watcher is not None:
                watcher.stop(timeout=2.0)

    # -- libvirt events, one watcher per host ---------------------------------------------------

    def watch_host(self, name: str) -> None:
        """Start watching the host's events unless a watcher runs or is starting (a host that
        was down gets its watcher when a listing finds it up)."""
        if self._watcher_factory is None:
            return
        with self._watch_lock:
            if self._watch_closed or name in self._watchers or name in self._watching:
                return
            self._watching.add(name)
        self._start_watcher(name)

    @work(thread=True, exit_on_error=False, group="watch", description="watch libvirt events")
    def _start_watcher(self, name: str) -> None:
        """Connects (blocking: a thread, so a slow host holds up nothing)."""
        assert self._watcher_factory is not None
        watcher = self._watcher_factory(self.fleet[name].spec, partial(self._libvirt_event, name))
        try:
            if watcher is not None:
                watcher.start()
        except SnaptuiError as err:  # down: the listing says so; watch when it is back
            log.info("no events from %s: %s", name, err)
            with self._watch_lock:
                self._watching.discard(name)
            return
        with self._watch_lock:
            self._watching.discard(name)
            if not self._watch_closed:
                self._watchers[name] = watcher
                return
        if watcher is not None:  # the app closed while it connected
            watcher.stop(timeout=2.0)

    def watching(self, name: str) -> bool:
        """True while a watcher delivers the host's events."""
        with self._watch_lock:
            return self._watchers.get(name) is not None

    def _libvirt_event(self, host: str, event: Any) -> None:
        """Runs on the host's watcher thread: post_message is thread-safe."""
        self.main.post_message(messages.DomainEvent(event, host))

    def on_remote_job_updated(self, message: messages.RemoteJobUpdated) -> None:
        """A fleet host's job moved on: kept for the Jobs screen, forwarded to it if open."""
        self.remote_jobs[message.key] = message
        if message.note:
            self.notify(message.note, severity="warning", markup=False)
        self.remote_job_updates.publish(message)

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
                self.config.save_dashboard()
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
        from snaptui.ui.screens.help_screen import HelpScreen

        self.push_screen(HelpScreen(self.binding_rows()))

    def binding_rows(self) -> list[tuple[str, str, str]]:
        """(key as shown, binding id, description) of every main binding, with remaps."""
        from snaptui.ui.screens.help_screen import key_rows

        rows = key_rows(self, [*MainScreen.BINDINGS, *self.BINDINGS], MainScreen.ACTIONS_HELP)
        rows.append(("escape", "", "Close the filter, a dialog or this help"))
        rows.append(("tab", "", "Move between Domains and Images"))
        return rows

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Next theme", "Cycle to the next snaptui theme",
                            self.action_cycle_theme)
        yield SystemCommand("Help", "Show keys and what they do", self.action_help)
