"""Pilot helpers shared by the dashboard tests: read the screen, let workers settle, wait."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot
from textual.worker import WorkerCancelled


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def settle(pilot: Pilot) -> None:
    for _ in range(3):
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive refresh replaced by a newer one
            pass
        await pilot.pause()


async def wait_for(pilot: Pilot, condition: Callable[[], bool], timeout: float,
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
