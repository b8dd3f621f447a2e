"""Build the dashboard's services from the command line and run it (the one factory)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from textual.app import App
from textual.theme import BUILTIN_THEMES

from snaptui.core.errors import BadInput
from snaptui.core.fleet.hosts import HostSpec, resolve_hosts
from snaptui.core.fleet.inventory import Fleet
from snaptui.core.images.factory import open_store, resolve_destination
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.paths import config_dir
from snaptui.ui.themes import check_theme_name, load_themes, shipped_theme_dir

log = logging.getLogger(__name__)

DEMO_HOST = "demo"  # the demo lab's host name (shown when --demo -c adds hosts)


def demo_speed(args: argparse.Namespace) -> float:
    """--demo-speed N: demo jobs paced like a real host (1), N times faster, or not at all (0)."""
    from snaptui.core.demo.pace import DEFAULT_SPEED

    speed = getattr(args, "demo_speed", None)
    speed = DEFAULT_SPEED if speed is None else speed
    if not speed >= 0:  # also NaN
        raise BadInput(f"--demo-speed must be 0 (no pacing) or more, not {speed}")
    return float(speed)


def uri_list(args: argparse.Namespace) -> list[str]:
    """``-c`` as given: None, one URI (str) or several (a list, once ``-c`` is repeatable)."""
    uri = getattr(args, "uri", None)
    if not uri:
        return []
    return [uri] if isinstance(uri, str) else [u for u in uri if u]


def _demo_connect(demo_uri: str | None) -> Callable[[HostSpec], LibvirtHost]:
    """The fleet's connections: the demo lab's simulates push-mode backup (core/demo/backup.py),
    so its Nova instance is snapshotted as on a compute node, never stopped."""
    from snaptui.core.demo.backup import DemoHost

    return lambda spec: DemoHost(spec.uri) if spec.uri == demo_uri else LibvirtHost(spec.uri)


def build_app(args: argparse.Namespace, *, demo_base: Path | None = None):  # -> SnaptuiApp
    """Parse config and themes, open libvirt and the image store, return the app (not run).

    The hosts: ``-c`` URIs, else config.toml's ``[[hosts]]``, else the default URI. One host
    is connected here (a wrong URI fails at once, in one line); several are connected by the
    dashboard's workers, each on its own thread, so a down host does not hold up the start.
    The demo is its own host ("demo"); ``--demo -c URI`` adds hosts beside it.
    """
    from snaptui.core.libvirt.events import DomainEventWatcher
    from snaptui.core.settings import load_settings
    from snaptui.ui.app import SnaptuiApp

    speed = demo_speed(args)
    settings = load_settings(binding_ids=SnaptuiApp.binding_ids())
    themes = load_themes([shipped_theme_dir(), config_dir() / "themes"])
    theme = None
    if getattr(args, "theme", None):
        theme = check_theme_name(args.theme, {t.name for t in themes} | set(BUILTIN_THEMES))
        settings.theme = theme  # chosen on the command line: remembered
        settings.save_dashboard()
    watcher_factory = None
    library: str | None
    glance_available = False
    if getattr(args, "demo", False):
        from snaptui.core.demo.lab import build_demo_lab
        from snaptui.core.engine.recover import recover

        lab = build_demo_lab(demo_base)
        destination, library = "library", str(lab.library_dir)
        extra = resolve_hosts(uri_list(args), settings) if uri_list(args) else []
        hosts = [HostSpec(DEMO_HOST, lab.uri), *(h for h in extra if h.name != DEMO_HOST)]

        def watcher_factory(spec, callback):  # type: ignore[no-redef]
            # The demo's test driver lives in this process, per connection: no events.
            return None if spec.uri == lab.uri else DomainEventWatcher(spec.uri, callback)

        # The demo's jobs keep their journal, locks, scratch and audit log under the demo,
        # never in the operator's state (and recover here sees only the demo's jobs).
        os.environ["SNAPTUI_STATE_DIR"] = str(lab.state_dir)
        os.environ.pop("SNAPTUI_SCRATCH_DIR", None)  # scratch too: <demo state>/scratch
        for job_id, outcome in recover():
            log.warning("recovered job %s: %s", job_id, outcome)
    else:
        from snaptui.core.cloud.config import cloud_configured

        hosts = resolve_hosts(uri_list(args), settings)
        library = getattr(args, "library", None)
        # The rule `snaptui images` and `snaptui snapshot` use: --library without --os-cloud
        # is the library even when OS_CLOUD is set.
        destination = resolve_destination(None, getattr(args, "cloud", None), library)
        glance_available = destination == "glance" or cloud_configured(getattr(args, "cloud", None))

        def watcher_factory(spec, callback):  # type: ignore[no-redef]
            return DomainEventWatcher(spec.uri, callback)

    fleet = Fleet(hosts, connect=_demo_connect(hosts[0].uri) if getattr(args, "demo", False)
                  else None)
    if len(fleet) == 1:
        fleet.first.libvirt.connect()
    try:
        store = open_store(destination, cloud=getattr(args, "cloud", None), library=library)
    except BaseException:
        fleet.close()
        raise
    return SnaptuiApp(fleet=fleet, store=store, watcher_factory=watcher_factory,
                      demo=bool(getattr(args, "demo", False)), config=settings, themes=themes,
                      demo_speed=speed,
                      theme=theme, cloud=getattr(args, "cloud", None), library=library,
                      glance_available=glance_available)


class NotifyHandler(logging.Handler):
    """While the dashboard runs, core's warnings (a login about to go to a host whose SSH key
    is not checked, a scratch dir others can write into) are notifications: a line written to
    stderr would land in the middle of the screen."""

    def __init__(self, app: App) -> None:
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the dashboard
            return
        # notify only posts a message, which Textual queues thread-safely and never waits on
        # (a worker logging while the app shuts down cannot hang on it)
        self.app.notify(message, severity="warning", markup=False)


def run_dashboard(args: argparse.Namespace) -> int:
    """Entry point for ``snaptui`` without a subcommand; returns the exit code."""
    app = build_app(args)
    root = logging.getLogger()
    stderr_handlers = root.handlers[:]
    root.handlers = [NotifyHandler(app)]
    try:
        app.run()
    finally:
        root.handlers = stderr_handlers
        app.fleet.close()
    if app.return_code:
        print(f"snaptui: dashboard exited with code {app.return_code}", file=sys.stderr)
    return app.return_code or 0
