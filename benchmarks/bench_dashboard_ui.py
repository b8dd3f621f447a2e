"""The measuring side of benchmarks/dashboard.py: runs in its own process (so ru_maxrss is the
dashboard's), builds the app like ``snaptui.ui.launch.build_app``, runs it headless with
``app.run_test(size=(120, 40))`` and writes what it measured as JSON.

    bench_dashboard_ui.py --uri test:///…/node.xml --library DIR --domains N --images M --out F

How a repaint is seen: the screen's compositor hands every frame to ``App._display``; headless
Textual drops it there. A probe replaces ``app._display`` on the instance: it calls the original
and then ``CompositorUpdate.render_segments(app.console)`` -- the escape-sequence string a
terminal would get -- so a measured frame costs what a real one does, minus the write itself.

Per key three times are kept: ``first_ms`` (the first frame painted after the key was posted:
the key's own effect, e.g. the cursor row moving), ``ms`` (the last frame before the app is idle
again: every repaint the key caused in cascade -- detail pane, footer bindings), and
``settled_ms`` (also waiting for the workers the key started: the detail's qemu-img info);
``cpu_ms`` is the event-loop thread's CPU time until idle (contention-free cost of the key),
``wait_ms`` the time it was runnable but waiting for a CPU meanwhile (other load's share).

How "idle again" is seen: polled every 1 ms on the event loop -- every message queue of the app
and of the current screen's widgets is empty, no widget has a pending repaint/layout/scroll/
style refresh, and the screen has no dirty widgets, layout or repaint pending (that is what
Screen._on_idle checks before it resumes its 60 fps update timer).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

IMPORT_T0 = time.perf_counter()
# snaptui.ui before textual, as in the snaptui command: it sets Textual's frame rate.
from snaptui.ui.launch import build_app  # noqa: E402

IMPORT_S = time.perf_counter() - IMPORT_T0
from textual import events  # noqa: E402
from textual._compositor import CompositorUpdate  # noqa: E402
from textual.app import App  # noqa: E402
from textual.keys import _character_to_key  # noqa: E402
from textual.worker import Worker, WorkerState  # noqa: E402

# Workers that live as long as their screen: never waited for.
LONG_LIVED = {"jobs-poll", "follow", "images"}
KEY_TIMEOUT_S = 5.0

CHARS = {"slash": "/", "space": " "}


class PaintProbe:
    """Counts frames the app really paints (and renders them to terminal output)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.frames = 0
        self.last = 0.0
        self.times: list[float] = []  # when each frame was painted
        self.render_s = 0.0
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            if renderable is None or app._batch_count:
                return
            t0 = time.perf_counter()
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(app.console)
            now = time.perf_counter()
            self.render_s += now - t0
            self.frames += 1
            self.last = now
            self.times.append(now)

        app._display = display  # type: ignore[method-assign]


def busy(app: App) -> bool:
    """True while the app still has work queued or a repaint pending (see module doc)."""
    if app._batch_count or app._message_queue.qsize():
        return True
    screen = app.screen
    if (screen._layout_required or screen._scroll_required or screen._repaint_required
            or screen._recompose_required or screen._dirty_widgets):
        return True
    for node in screen.walk_children(with_self=True):
        if (node._message_queue.qsize() or node._repaint_required or node._layout_required
                or node._scroll_required or node._refresh_styles_required):
            return True
    return False


async def until_idle(app: App, probe: PaintProbe, t0: float,
                     timeout: float = KEY_TIMEOUT_S) -> tuple[float, bool]:
    """Wait until idle; return (time of the last frame painted since t0, or of idle if none;
    whether it timed out)."""
    deadline = t0 + timeout
    frames = probe.frames
    while True:
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        if not busy(app):
            return (probe.last if probe.frames > frames else now), False
        if now > deadline:
            return now, True


async def workers_done(app: App, before: set[Worker], timeout: float) -> None:
    """Wait for the workers started since ``before`` (not the long-lived pollers)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        fresh = [w for w in app.workers if w not in before and w.group not in LONG_LIVED
                 and w.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        if not fresh:
            return
        await asyncio.sleep(0.002)


def runqueue_wait_s() -> float:
    """Seconds the calling thread (the event loop) has spent runnable but waiting for a CPU
    (/proc/thread-self/schedstat, second field): what other load costs a key, as opposed to
    the key's own CPU time."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def key_event(key: str) -> events.Key:
    """The Key event a terminal sends for ``key`` (a key name or one printable character)."""
    if len(key) == 1:
        return events.Key(_character_to_key(key), key)
    return events.Key(key, CHARS.get(key))


def key_round(filter_domains: str, filter_images: str) -> Iterator[tuple[str, str]]:
    """One round of (kind, key): what an operator does, in the order they would."""
    for key in ["down"] * 25 + ["pagedown"] * 3 + ["up"] * 10 + ["pageup"] * 2:
        yield "domains: move", key
    yield "tab", "tab"
    for key in ["down"] * 10 + ["pagedown"] * 2 + ["up"] * 3:
        yield "images: move", key
    yield "images: / filter", "slash"
    for ch in filter_images:
        yield "images: filter typing", ch
    yield "images: close filter (all rows back)", "escape"
    yield "tab", "tab"
    yield "domains: / filter", "slash"
    for ch in filter_domains:
        yield "domains: filter typing", ch
    yield "domains: filter typing", "backspace"
    yield "domains: close filter (all rows back)", "escape"
    yield "jobs screen: open", "j"
    yield "jobs screen: move", "down"
    yield "jobs screen: move", "up"
    yield "jobs screen: close", "escape"


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    app_args = argparse.Namespace(demo=args.demo, uri=args.uri, cloud=None,
                                  library=args.library, theme=None)
    demo_base = Path(args.demo_base) if args.demo else None
    app = build_app(app_args, demo_base=demo_base)
    t_built = time.perf_counter()
    probe = PaintProbe(app)
    notes: list[str] = []
    notify = app.notify

    def record(message: str, *a: Any, **kw: Any) -> None:
        notes.append(f"{kw.get('severity', 'information')}: {kw.get('title', '')} {message}")
        notify(message, *a, **kw)

    app.notify = record  # type: ignore[method-assign]
    out: dict[str, Any] = {"import_s": IMPORT_S, "build_app_s": t_built - t_start,
                           "notifications": notes}
    stop_file = Path(args.stop_file) if args.stop_file else None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            domains, images = app.main.domains_pane.table, app.main.images_pane.table
            deadline = time.perf_counter() + 60
            while (domains.row_count < args.domains or images.row_count < args.images) \
                    and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            t_rows = time.perf_counter()
            frames = probe.frames
            t_idle, _ = await until_idle(app, probe, t_rows, timeout=30)
            t_paint = probe.last if probe.frames > frames else t_idle
            out.update(rows_s=t_rows - t_built, paint_s=t_paint - t_built,
                       total_paint_s=t_paint - t_start, rows=[domains.row_count, images.row_count],
                       screen_text_ok=_screen_shows(app, args))
            await _settle(app)
            out["store_kind"] = app.store.kind
            if args.ready_file:
                Path(args.ready_file).touch()
            if args.idle_s:
                await asyncio.sleep(args.idle_s)
            samples = []
            if args.keys:
                samples = await _keys(app, probe, pilot, args, stop_file)
            out["keys"] = samples
            out["frames"] = probe.frames
            out["render_segments_s"] = probe.render_s
    finally:
        app.host.close()
    out["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out


def _screen_shows(app: App, args: argparse.Namespace) -> bool:
    """The painted screen has both panes' row counts in their subtitles."""
    text = app.export_screenshot().replace("&#160;", " ")
    return f"{args.images}/{args.images}" in text and f" {args.domains} " in text


async def _settle(app: App) -> None:
    await workers_done(app, set(), timeout=30)


async def _keys(app: App, probe: PaintProbe, pilot: Any, args: argparse.Namespace,
                stop_file: Path | None) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    rounds = 0
    while True:
        for kind, key in key_round(args.filter_domains, args.filter_images):
            before = set(app.workers)
            frames = probe.frames
            wait0 = runqueue_wait_s()
            cpu0 = time.thread_time()
            t0 = time.perf_counter()
            app.post_message(key_event(key))
            t_paint, timed_out = await until_idle(app, probe, t0)
            cpu = time.thread_time() - cpu0
            wait = runqueue_wait_s() - wait0
            await workers_done(app, before, timeout=KEY_TIMEOUT_S)
            t_settled, _ = await until_idle(app, probe, t0)
            first = probe.times[frames] if probe.frames > frames else t_paint
            samples.append({"kind": kind, "key": key, "ms": (t_paint - t0) * 1000,
                            "first_ms": (first - t0) * 1000, "cpu_ms": cpu * 1000,
                            "wait_ms": wait * 1000,
                            "settled_ms": (max(t_settled, t_paint) - t0) * 1000,
                            "frames": probe.frames - frames, "timed_out": timed_out,
                            "screen": type(app.screen).__name__, "t": time.time()})
        rounds += 1
        enough = len(samples) >= args.keys and rounds >= 1
        if enough and (stop_file is None or stop_file.exists()):
            return samples
        if len(samples) > args.max_keys:
            return samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri")
    parser.add_argument("--library")
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--demo-base")
    parser.add_argument("--domains", type=int, default=0, help="rows to wait for")
    parser.add_argument("--images", type=int, default=0, help="rows to wait for")
    parser.add_argument("--keys", type=int, default=200, help="at least this many keypresses")
    parser.add_argument("--max-keys", type=int, default=5000)
    parser.add_argument("--stop-file", help="keep pressing keys until this file exists")
    parser.add_argument("--ready-file", help="touched once the first paint is measured")
    parser.add_argument("--idle-s", type=float, default=0.0, help="sit idle before the keys")
    parser.add_argument("--filter-domains", default="db-pr")
    parser.add_argument("--filter-images", default="web-pr")
    parser.add_argument("--profile", help="write a cProfile of the whole run here")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    result = asyncio.run(measure(args))
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    result["pid"] = os.getpid()
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
