"""Command palette provider: every dashboard action, and jump to any domain or image."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from snaptui.ui.app import SnaptuiApp

ACTIONS = (
    ("Snapshot selected domain", "snapshot"),
    ("Jobs", "jobs"),
    ("Clean up leftovers", "cleanup"),
    ("Schedules", "schedules"),
    ("Refresh domains and images", "refresh"),
    ("Filter focused pane", "filter"),
    ("Toggle only this domain's images", "only_domain"),
)


class SnaptuiCommands(Provider):
    """Actions of the main screen plus "Jump to domain X" / "Jump to image Y"."""

    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app: SnaptuiApp = self.app  # type: ignore[assignment]
        main = app.main
        found: list[tuple[str, Callable[[], object], str]] = []
        for title, action in ACTIONS:
            found.append((title, partial(main.run_action, action),
                          main.ACTIONS_HELP.get(action, "")))
        several = main.domains_pane.show_host
        for key, info in sorted(main.domains_pane.domains.items(),
                                key=lambda item: (item[1].name, item[1].host)):
            name = f"{info.host}:{info.name}" if several else info.name
            found.append((f"Jump to domain {name}",
                          partial(self._jump, "domain", key), f"{info.state} · {info.uuid}"))
        for image in main.images_pane.images.values():
            found.append((f"Jump to image {image.name}",
                          partial(self._jump, "image", image.id), f"{image.status} · {image.id}"))
        return found

    def _jump(self, kind: str, key: str) -> None:
        app: SnaptuiApp = self.app  # type: ignore[assignment]
        if app.screen is not app.main:
            return
        pane = app.main.domains_pane if kind == "domain" else app.main.images_pane
        if not pane.select(key):
            app.notify(f"{kind} is gone", severity="warning")

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands()[: len(ACTIONS)]:
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
