"""Pilot helpers shared by the dashboard tests: read the screen, record notifications, let
workers settle, wait for a condition (never for a fixed time)."""

from __future__ import annotations

import argparse
import html
import re
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App
from textual.command import CommandList
from textual.message import Message
from textual.notifications import Notification, Notify
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from snaptui.ui.app import SnaptuiApp
from snaptui.ui.launch import build_app

# One run of text in the SVG that App.export_screenshot writes: its x (in pixels), its length
# in pixels, the terminal line it sits on (from its clip path) and the escaped text.
_SVG_TEXT = re.compile(r'<text class="[^"]*" x="([0-9.]+)" y="[^"]*" textLength="([0-9.]+)" '
                       r'clip-path="url\(#[^)]*-line-(\d+)\)">(.*?)</text>')


def demo_args(**overrides: object) -> argparse.Namespace:
    """The options of ``snaptui --demo`` (no cloud, no library, default theme), ``overrides``
    laid over them (``uri=[...]`` for a fleet, ``demo_speed=0`` for as fast as it goes)."""
    values = {"demo": True, "uri": None, "cloud": None, "library": None, "theme": None}
    return argparse.Namespace(**{**values, **overrides})


def demo_app(base: Path, **overrides: object) -> SnaptuiApp:
    """The dashboard on its embedded demo lab, built under ``base`` as ``snaptui --demo``."""
    return build_app(demo_args(**overrides), demo_base=base)


def screen_text(app: App) -> str:
    """What the terminal shows now, as plain text, one line per terminal row.

    Read from ``App.export_screenshot`` (public API) rather than the screen's compositor: the
    SVG places each run of text at its cell, so the columns come back as they were drawn.
    """
    rows: dict[int, list[str]] = {}
    for x, length, line, escaped in _SVG_TEXT.findall(app.export_screenshot(simplify=True)):
        text = html.unescape(escaped).replace("\xa0", " ")  # the SVG writes spaces as &#160;
        cell = float(length) / len(text)
        column = round(float(x) / cell)
        row = rows.setdefault(int(line), [])
        drawn = sum(len(part) for part in row)
        row.append(" " * max(0, column - drawn) + text)
    height = app.size.height
    return "\n".join("".join(rows.get(y, [])).rstrip() for y in range(height))


class Notes:
    """Every notification the app posted, for ``run_test(message_hook=notes)``.

    ``App.notify`` posts a ``Notify`` message; recording those keeps the ones a toast already
    timed out, so "no second notification" really means none was posted.
    """

    def __init__(self) -> None:
        self.posted: list[Notification] = []
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)
        if isinstance(message, Notify):
            self.posted.append(message.notification)

    def errors(self, title: str | None = None) -> list[Notification]:
        return [n for n in self.posted
                if n.severity == "error" and (title is None or n.title == title)]

    def seen(self, kind: type[Message]) -> list[Message]:
        return [m for m in self.messages if isinstance(m, kind)]


async def settle(pilot: Pilot) -> None:
    for _ in range(3):
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive refresh replaced by a newer one
            pass
        await pilot.pause()


async def wait_for(pilot: Pilot, condition: Callable[[], object], timeout: float,
                   what: str, each: Callable[[], None] | None = None) -> None:
    """Poll ``condition`` (calling ``each`` between polls); fail with the screen's text."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n"
                                 + screen_text(pilot.app))
        if each is not None:
            each()
        await pilot.pause(0.05)


def palette_hit(app: App) -> str | None:
    """The command palette's highlighted hit as text (None: no palette, or no hit yet)."""
    lists = app.screen.query(CommandList)
    if not lists:
        return None
    hits = lists.first()
    if hits.highlighted is None:
        return None
    return str(hits.get_option_at_index(hits.highlighted).prompt)


async def wait_palette_hit(pilot: Pilot, text: str, timeout: float = 10) -> None:
    """Wait until the palette highlights a hit naming ``text`` (hits arrive in batches, the
    best first once a batch lands): pressing enter then runs that command."""
    await wait_for(pilot, lambda: text in (palette_hit(pilot.app) or ""), timeout,
                   f"the palette to highlight {text!r}")
