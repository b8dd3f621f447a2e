"""The main screen's marks of the schedules' next prune: which images it would remove (the
Images pane's ✂ and each image's detail), planned by ``core.keep.next_prune`` in a thread worker
of the screen after every listing of the images or of a host's guests."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from snaptui.core.keep.next_prune import NextPrune, read_next
from snaptui.core.keep.overview import read_schedules
from snaptui.core.models import ImageRecord

if TYPE_CHECKING:
    from snaptui.ui.screens.main_screen import MainScreen


class PruneMarks:
    """The newest plan of the schedules' next prune over the images ``screen`` shows."""

    def __init__(self, screen: MainScreen) -> None:
        self.screen = screen
        self.current = NextPrune()
        self._asked = 0  # which plan is the newest asked for (an older one is dropped)

    def guests(self) -> list[str]:
        """This host's guests as an ``--all`` schedule takes them (persistent, not a verify
        throwaway, not on another fleet host)."""
        from snaptui.core.verify.boot import VERIFY_PREFIX

        fleet = self.screen.app.fleet
        return [d.name for d in self.screen.domains_pane.domains.values()
                if d.persistent and not d.name.startswith(VERIFY_PREFIX)
                and not (d.host and fleet[d.host].spec.remote)]

    def remote_hosts(self) -> set[str]:
        """The fleet's SSH hosts (a schedule's ``HOST:GUEST`` there is pruned there)."""
        return {h.name for h in self.screen.app.fleet.hosts if h.spec.remote}

    def plan(self) -> None:
        """Plan the schedules' next prune over the images shown (off the UI thread)."""
        self._asked += 1
        images = list(self.screen.images_pane.images.values())
        self.screen.run_worker(partial(self._read, self._asked, images, self.guests(),
                                       self.remote_hosts()),
                               thread=True, exclusive=True, exit_on_error=False,
                               group="prune-plan", description="plan the next prune")

    def _read(self, asked: int, images: list[ImageRecord], guests: list[str],
              remote: set[str]) -> None:
        store = self.screen.app.store
        found = read_next(images, read_schedules(), guests, store.kind,
                          getattr(store, "location", None), remote)
        self.screen.app.call_from_thread(self._apply, found, asked)

    def _apply(self, found: NextPrune, asked: int) -> None:
        """Show a plan, unless a newer one was asked for since (a thread worker that an
        exclusive newer one cancelled still runs to its end, and may end last)."""
        if asked != self._asked:
            return
        was, self.current = self.current, found
        screen = self.screen
        screen.images_pane.set_pruning(found.removing)
        if (found.plans or was.plans) and screen.detail.showing \
                and screen.detail.showing[0] == "image":
            screen.show_image_detail()
