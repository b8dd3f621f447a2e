"""The main screen: Domains and Images side by side, the detail below, and their workers.

Every blocking call (libvirt, the image store, qemu-img) runs in a worker of this screen; a
failure goes to the app's one ``Worker.StateChanged`` handler (``worker_failures.py``), which
notifies, and the next refresh tries again.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Header, Static
from textual.worker import get_current_worker

from snaptui.core.disk import qemu_img
from snaptui.core.disk.allocation import allocated_size
from snaptui.core.engine.rbd_access import read_rbd_disk
from snaptui.core.errors import NotFound, SnaptuiError
from snaptui.core.fleet.inventory import HostListing, domain_key, key_of, split_key
from snaptui.core.keep.overview import guest_keep, read_schedules
from snaptui.core.keep.schedules import Schedule
from snaptui.core.models import DomainInfo, ImageRecord
from snaptui.ui import messages
from snaptui.ui.screens.prune_marks import PruneMarks
from snaptui.ui.widgets.detail_pane import DetailPane, DiskDetail
from snaptui.ui.widgets.domains_pane import DomainExtras, DomainsPane
from snaptui.ui.widgets.footer import BindingsFooter
from snaptui.ui.widgets.images_pane import ImagesPane
from snaptui.ui.widgets.keyed_table import KeyedTable
from snaptui.ui.worker_failures import FAILURE_TITLES, ForwardsWorkerFailures

if TYPE_CHECKING:
    from snaptui.core.engine.plan import SnapshotRequest
    from snaptui.core.engine.preflight.mode_decision import ModeFacts
    from snaptui.core.restore import RestoreRequest
    from snaptui.ui.app import SnaptuiApp

IMAGE_REFRESH_S = 30.0
DOWN_RETRY_S = 15.0  # a down host is listed again this often (and on every `r`)
# While the cursor keeps moving, a domain's qemu-img info waits this long after the last move
# (its name and state show at once).
DETAIL_DEBOUNCE_S = 0.09


def snapshot_extras(images: list[ImageRecord]) -> dict[str, tuple[int, str | None]]:
    """instance_uuid → (number of snapshot images, newest created_at)."""
    found: dict[str, tuple[int, str | None]] = {}
    for image in images:
        if image.instance_uuid and image.is_snapshot:
            count, last = found.get(image.instance_uuid, (0, None))
            created = image.created_at
            found[image.instance_uuid] = (count + 1, max(filter(None, (last, created)),
                                                         default=None))
    return found


class MainScreen(ForwardsWorkerFailures, Screen):
    """Domains | Images, detail below; bindings have ids so config can remap them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "snapshot", "Snapshot", id="snapshot"),
        Binding("j", "jobs", "Jobs", id="jobs"),
        # Not in the footer (it is full at 80 columns): in the help and the palette.
        Binding("C", "cleanup", "Cleanup", id="cleanup", show=False),
        Binding("R", "restore", "Restore", id="restore", show=False),
        Binding("S", "schedules", "Schedules", id="schedules", show=False),
        Binding("r", "refresh", "Refresh", id="refresh"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("o", "only_domain", "Only", id="only_domain"),
        Binding("t", "app.cycle_theme", "Theme", id="theme"),
        Binding("question_mark", "app.help", "Help", id="help"),
        Binding("q", "app.quit", "Quit", id="quit"),
    ]
    ACTIONS_HELP: ClassVar[dict[str, str]] = {
        "snapshot": "Snapshot the selected domain into an image",
        "jobs": "Show snapshot jobs (running and finished)",
        "cleanup": "Find and remove leftovers of interrupted snapshot runs",
        "restore": "Restore the selected image on its domain, or an image of the selected "
                   "domain (newest first)",
        "schedules": "Schedules: next and last run, result; run one now, pause or resume",
        "refresh": "Reload domains and images now",
        "filter": "Filter the focused pane (Esc closes)",
        "only_domain": "Show only the images of the selected domain",
    }

    app: SnaptuiApp

    def __init__(self, hosts: Sequence[str] = ()) -> None:
        super().__init__(id="main")
        self.domains_pane = DomainsPane(hosts=hosts)
        self.images_pane = ImagesPane()
        self.detail = DetailPane(show_host=len(hosts) > 1)
        self._allocated: dict[str, int | None] = {}  # HOST:UUID → allocated bytes
        self._snapshots: dict[str, tuple[int, str | None]] = {}
        self._only = False
        self._listed: set[str] = set()  # hosts whose first listing is in
        self._first_load: set[str] | None = set()  # None once both lists came in
        # (HOST:UUID, disk target, path) → what qemu-img said, for the domain last read
        self._disks_read: dict[tuple[str, str, str | None], DiskDetail | BaseException] = {}
        self._schedules: list[Schedule] = []  # read with each domain's detail (core/keep)
        self.prune_marks = PruneMarks(self)  # what the schedules' next prune does to images
        self.stop_following = threading.Event()

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◉")
        if self.app.demo:
            yield Static("DEMO · libvirt test driver over real disk files · no real guest is "
                         "touched", id="demo-banner")
        with Horizontal(id="panes"):
            yield self.domains_pane
            yield self.images_pane
        yield self.detail
        yield BindingsFooter(show_command_palette=False)

    def on_mount(self) -> None:
        store = self.app.store
        self.images_pane.set_source(store.kind, getattr(store, "location", None))
        self.domains_pane.table.focus()
        self.refresh_domains()
        self.refresh_images()
        self.set_interval(self.app.image_refresh_s, self.refresh_images, name="images-timer")
        self.set_interval(DOWN_RETRY_S, self._retry_down_hosts, name="down-hosts-timer")

    def on_unmount(self) -> None:
        self.stop_following.set()
        gc.unfreeze()  # this screen's objects become collectable again

    # -- data workers --------------------------------------------------------------------------

    def refresh_domains(self) -> None:
        """List every host, each on its own thread (a slow host holds up no other)."""
        for host in self.app.fleet.hosts:
            self.refresh_host(host.name)

    def _retry_down_hosts(self) -> None:
        for name in list(self.domains_pane.down):
            self.refresh_host(name)

    @work(thread=True, exit_on_error=False, group="domains", description="list domains")
    def refresh_host(self, name: str) -> None:
        listing = self.app.fleet[name].list_domains()
        if listing is None:  # another worker is listing this host and will list it again
            return
        allocated = {key_of(d): allocated_size(d) for d in listing.domains}
        self.app.call_from_thread(self._apply_listing, listing, allocated)

    @work(thread=True, exit_on_error=False, group="domain-row", description="read a domain")
    def refresh_domain(self, key: str) -> None:
        host, uuid = split_key(key)
        try:
            info = self.app.fleet[host].get_domain(uuid)
        except NotFound:
            self.app.call_from_thread(self.domains_pane.remove_domain, key)
            return
        self.app.call_from_thread(self._apply_domain, info)

    @work(thread=True, exit_on_error=False, group="images", exclusive=True,
          description="list images")
    def refresh_images(self) -> None:
        worker = get_current_worker()
        images = list(self.app.store.iter_images())
        # a newer listing started meanwhile (and cancelled this one): an older one ending
        # last must not replace it
        self.app.call_from_thread(lambda: None if worker.is_cancelled
                                  else self._apply_images(images))

    def _extras(self) -> dict[str, DomainExtras]:
        return {key: DomainExtras(self._allocated.get(key), *self._snapshots.get(d.uuid, (0, None)))
                for key, d in self.domains_pane.domains.items()}

    def _apply_listing(self, listing: HostListing, allocated: dict[str, int | None]) -> None:
        """One host's listing: its rows replace the host's old ones; a down host's line says
        why (and the operator is told once when it goes down)."""
        status, pane = listing.status, self.domains_pane
        was = pane.down.get(status.name)  # the reason it was down, None when it was up
        # A host's first rows do not take the cursor from the top row (whichever host
        # answers first must not decide where the cursor starts).
        first, at_top = status.name not in self._listed, pane.table.cursor_row == 0
        self._listed.add(status.name)
        self._allocated = {k: v for k, v in self._allocated.items()
                           if split_key(k)[0] != status.name} | allocated
        pane.set_host_domains(status.name, listing.domains, status.reason)
        pane.set_extras(self._extras())
        self.prune_marks.plan()  # an --all schedule takes the host's guests
        if first and at_top and pane.table.row_count:
            pane.table.move_cursor(row=0)
        if status.error is not None and status.reason != was:
            where = f"{status.name}: " if pane.show_host else ""
            self.notify(where + status.error, title=FAILURE_TITLES["domains"], severity="error",
                        timeout=8, markup=False)
        elif status.error is None:
            self.app.watch_host(status.name)  # a host that was down at start: watch it now
        showing = self.detail.showing
        if showing is None or (showing[0] == "domain" and (
                split_key(showing[1])[0] == status.name or showing[1] not in pane.domains)):
            self._detail_follows(pane, refresh=True)
        self._loaded("domains")

    def _apply_domain(self, info: DomainInfo) -> None:
        key = key_of(info)
        self._allocated[key] = allocated_size(info)
        self.domains_pane.update_domain(info)
        if self.detail.showing == ("domain", key):
            self.load_domain_detail(info)

    def _apply_images(self, images: list[ImageRecord]) -> None:
        self._snapshots = snapshot_extras(images)
        self.images_pane.set_images(images)
        self.domains_pane.set_extras(self._extras())
        self.prune_marks.plan()
        if self.detail.showing and self.detail.showing[0] == "image":
            self._detail_follows(self.images_pane)
        self._loaded("images")

    def _loaded(self, what: str) -> None:
        """Once both lists are in, move every live object to the collector's permanent
        generation: the start-up objects (Textual's DOM and CSS, thousands of rows) are not
        garbage, and full collections that scanned them all took 70-100 ms on a keypress now
        and then (``on_unmount`` gives them back)."""
        if self._first_load is None:
            return
        self._first_load.add(what)
        if self._first_load >= {"domains", "images"}:
            self._first_load = None
            self.set_timer(0.2, self._warm_up)

    def _warm_up(self) -> None:
        """Load the other screens' modules now, not on the first `j`, `s` or `C` (importing
        the jobs screen took ~40 ms of that key), then freeze what is alive."""
        import snaptui.ui.screens.cleanup_screen
        import snaptui.ui.screens.jobs_screen
        import snaptui.ui.screens.snapshot_dialog  # noqa: F401 - imported for later
        gc.freeze()

    @work(exclusive=True, exit_on_error=False, group="detail", description="qemu-img info")
    async def load_domain_detail(self, info: DomainInfo, delay_s: float = 0.0) -> None:
        """Show ``info`` at once, then (after ``delay_s``, cancelled by the next call) every
        disk's qemu-img info, read concurrently and painted once."""
        # Reloading the shown domain: what its unchanged disks showed stays until re-read.
        key = key_of(info)
        read_before = self._disks_read if self.detail.showing == ("domain", key) else {}
        keep = guest_keep(self.images_pane.images.values(), self._schedules, info.name,
                          info.uuid, time.time())
        self.detail.show_domain(info, {d.target: read_before.get((key, d.target, d.path))
                                       for d in info.disks}, keep)
        if delay_s:
            await asyncio.sleep(delay_s)
        disks = [(d.target, d.path, d.format) for d in info.snapshot_disks
                 if d.path and (d.source_type != "network" or d.rbd)]
        rbd_disks = {d.target: d for d in info.snapshot_disks if d.rbd}
        libvirt_host = self.app.fleet[info.host or self.app.fleet.first.name].libvirt

        async def read(target: str, path: str, fmt: str | None) -> DiskDetail:
            if target in rbd_disks:  # librbd, as the disk's cephx user
                return await asyncio.to_thread(read_rbd_disk, libvirt_host, rbd_disks[target])
            return await qemu_img.info(path, force_share=info.state.is_active, fmt=fmt)

        results = await asyncio.gather(*(read(target, path, fmt) for target, path, fmt in disks
                                         if path), return_exceptions=True)
        found: dict[str, DiskDetail | BaseException] = {}
        for (target, _, _), result in zip(disks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, SnaptuiError):
                raise result  # a bug, not a disk qemu-img cannot read: the worker fails
            found[target] = result
        self._disks_read = {(key, target, path): found[target] for target, path, _ in disks}
        self._schedules = await asyncio.to_thread(read_schedules)
        keep = guest_keep(self.images_pane.images.values(), self._schedules, info.name,
                          info.uuid, time.time())
        self.detail.show_domain(info, found, keep)

    def _detail_follows(self, pane: DomainsPane | ImagesPane, refresh: bool = False) -> None:
        """Show the detail of ``pane``'s selected row (a domain's loads qemu-img info: at once
        on a ``refresh``, else once the cursor rests)."""
        if isinstance(pane, DomainsPane):
            info = pane.selected
            if info is None:
                return
            if self._only:
                self.images_pane.set_only_domain((info.uuid, info.name),
                                                 base=info.base_image_ref)
            if refresh or self.detail.showing != ("domain", key_of(info)):
                self.load_domain_detail(info, 0.0 if refresh else DETAIL_DEBOUNCE_S)
        else:
            self.show_image_detail()

    def show_image_detail(self) -> None:
        """The selected image's detail (with what the schedules' next prune does to it)."""
        if image := self.images_pane.selected:
            owner = self.domains_pane.by_uuid(image.instance_uuid)
            self.detail.show_image(image, owner.name if owner else None,
                                   self.images_pane.images, self.prune_marks.current)

    @on(KeyedTable.RowHighlighted)
    def _row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        if event.table is self.domains_pane.table:
            pane: DomainsPane | ImagesPane = self.domains_pane
            self.refresh_bindings()  # snapshot / only depend on a selected domain
        else:
            pane = self.images_pane
        if event.table.has_focus or self.detail.showing is None:
            self._detail_follows(pane)

    def on_descendant_focus(self, event: object) -> None:
        focused = self.focused
        if focused is self.domains_pane.table:
            self._detail_follows(self.domains_pane)
        elif focused is self.images_pane.table:
            self._detail_follows(self.images_pane)

    # -- live updates --------------------------------------------------------------------------

    def on_domain_event(self, message: messages.DomainEvent) -> None:
        """An event from one host's watcher: only that host (or that row) is read again."""
        event, host = message.event, message.host or self.app.fleet.first.name
        title = f"libvirt · {host}" if self.domains_pane.show_host else "libvirt"
        if event.kind == "lifecycle":
            if event.event in ("defined", "undefined") or not event.uuid:
                self.refresh_host(host)
            else:
                self.refresh_domain(domain_key(host, event.uuid))
        elif event.kind == "disconnected":
            self.notify(f"lost libvirt events ({event.event}); reconnecting…",
                        severity="warning", title=title)
            self.refresh_host(host)  # a host that died shows as down now, not at the next `r`
        elif event.kind == "reconnected":
            self.notify("libvirt events back", title=title)
            self.refresh_host(host)

    def job_finished(self, job_id: str) -> None:
        """A job ended: images changed, and (test driver: no events) domain states too."""
        self.refresh_images()
        self.refresh_domains()

    # -- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out (None) what needs a selected domain while none is, so the footer is honest."""
        if action == "snapshot":
            return True if self.domains_pane.selected is not None else None
        if action == "only_domain":
            return True if self._only or self.domains_pane.selected is not None else None
        return True

    def action_refresh(self) -> None:
        self.refresh_domains()
        self.refresh_images()
        self.notify("refreshing…", timeout=1.5)

    def action_filter(self) -> None:
        focused = self.focused
        pane = self.images_pane if focused is not None and self.images_pane in \
            focused.ancestors_with_self else self.domains_pane
        pane.open_filter()

    def action_only_domain(self) -> None:
        info = self.domains_pane.selected
        if not self._only and info is None:
            self.notify("select a domain first", severity="warning")
            return
        self._only = not self._only
        self.images_pane.set_only_domain((info.uuid, info.name) if self._only and info else None,
                                         base=info.base_image_ref if info else None)
        self.refresh_bindings()

    def action_jobs(self) -> None:
        from snaptui.ui.screens.jobs_screen import JobsScreen

        self.app.push_screen(JobsScreen())

    def action_cleanup(self) -> None:
        from snaptui.ui.screens.cleanup_screen import CleanupScreen

        self.app.push_screen(CleanupScreen())

    def action_schedules(self) -> None:
        from snaptui.ui.screens.schedules_screen import SchedulesScreen

        self.app.push_screen(SchedulesScreen())

    def action_snapshot(self) -> None:
        info = self.domains_pane.selected
        if info is None:
            self.notify("select a domain to snapshot", severity="warning")
            return
        self.open_snapshot_dialog(key_of(info))

    @work(thread=True, exit_on_error=False, group="snapshot", description="check snapshot modes")
    def open_snapshot_dialog(self, key: str) -> None:
        from snaptui.core.engine.preflight.mode_decision import mode_facts
        from snaptui.core.engine.preflight.stream import stream_blocked

        name, uuid = split_key(key)
        host = self.app.fleet[name]
        info = host.get_domain(uuid)  # fresh state: the dialog's modes depend on it
        streams = stream_blocked(host.spec, host.libvirt)  # asked here, not on each change
        facts = mode_facts(info, host.libvirt, stream_blocked=lambda: streams)
        rbd_disks = [d for d in info.snapshot_disks if d.rbd]
        if rbd_disks and not host.spec.remote:  # direct: Glance's rbd store on their cluster?
            from dataclasses import replace

            from snaptui.core.engine.plan import SnapshotRequest
            from snaptui.core.engine.preflight.rbd import direct_target

            why, _ = direct_target(SnapshotRequest(domain=info.uuid, name=info.name),
                                   self.app.store.kind, self.app.store, host.libvirt, rbd_disks)
            facts = replace(facts, direct_blocked=why)
        self.app.call_from_thread(self._push_snapshot_dialog, info, facts)

    def _push_snapshot_dialog(self, info: DomainInfo, facts: ModeFacts) -> None:
        from snaptui.ui.screens.snapshot_dialog import SnapshotDialog

        app = self.app
        library = app.store.location if app.store.kind == "library" else app.library
        host = app.fleet[info.host]
        dialog = SnapshotDialog(info, facts, app.store.kind, library, uri=host.libvirt.uri,
                                cloud=app.cloud, glance_available=app.glance_available)
        app.push_screen(dialog, partial(self._snapshot_chosen, host.name))

    def _snapshot_chosen(self, host: str, request: SnapshotRequest | None) -> None:
        if request is not None:
            self.start_job(host, request)

    @work(exit_on_error=False, group="launch", description="start snapshot")
    async def start_job(self, host: str, request: SnapshotRequest) -> None:
        from snaptui.ui.job_launcher import start_snapshot
        from snaptui.ui.screens.jobs_screen import JobsScreen

        on = self.app.fleet[host]
        if on.spec.remote:  # its disks are there: snaptui on that host runs the job
            self.follow_remote(host, request)
            self.app.push_screen(JobsScreen(pick_remote=True))
            return
        job_id = await start_snapshot(request, on.libvirt, self.app.store, spec=on.spec,
                                      cloud=self.app.cloud, demo_speed=self.app.demo_speed)
        self.follow_job(job_id)
        self.app.push_screen(JobsScreen(job_id))

    @work(thread=True, exit_on_error=False, group="follow", description="remote snapshot")
    def follow_remote(self, host: str, request: SnapshotRequest) -> None:
        from snaptui.ui.job_launcher import follow_remote_snapshot

        follow_remote_snapshot(self.app.fleet[host].spec, request, self.app.store,
                               self.app.post_message, stop=self.stop_following)

    @work(thread=True, exit_on_error=False, group="follow", description="follow job")
    def follow_job(self, job_id: str) -> None:
        from snaptui.ui.job_launcher import follow_job

        follow_job(job_id, self.app.post_message, stop=self.stop_following)

    # -- restore -------------------------------------------------------------------------

    def _restore_target(self) -> tuple[DomainInfo, list[ImageRecord]] | None:
        """The image under the cursor with its source domain (the Images pane focused), else
        the domain under the cursor with its active images; None (said) when there is none."""
        focused = self.focused
        image = self.images_pane.selected if focused is not None and \
            self.images_pane in focused.ancestors_with_self else None
        if image is not None:
            info = self.domains_pane.by_uuid(image.instance_uuid)
            if info is None:
                self.notify(f"image {image.name!r} has no domain here; `snaptui restore IMAGE "
                            "--as NAME` makes a new guest from it", severity="warning")
                return None
            return info, [image]
        info = self.domains_pane.selected
        if info is None:
            self.notify("select an image or a domain to restore", severity="warning")
            return None
        images = [i for i in self.images_pane.images.values()
                  if i.instance_uuid == info.uuid and i.status == "active"]
        if not images:
            self.notify(f"{info.name} has no image to restore", severity="warning")
            return None
        return info, images

    def action_restore(self) -> None:
        from snaptui.core.restore import RestoreRequest
        from snaptui.ui.screens.restore_dialog import RestoreDialog

        if self.app.demo:
            self.notify("restore runs on real hosts, not in the demo", severity="warning")
            return
        found = self._restore_target()
        if found is None:
            return
        info, images = found
        host = self.app.fleet[info.host]
        if host.spec.remote:
            self.notify(f"{info.name} is on {host.name}: run `snaptui restore` there",
                        severity="warning")
            return
        store = self.app.store
        request = RestoreRequest(
            domain=info.name, uri=host.libvirt.uri, cloud=self.app.cloud, source=store.kind,
            library_dir=store.location if store.kind == "library" else self.app.library)
        self.app.push_screen(RestoreDialog(info.name, images, request), self._restore_chosen)

    def _restore_chosen(self, request: RestoreRequest | None) -> None:
        if request is not None:
            self.start_restore(request)

    @work(exit_on_error=False, group="launch", description="start restore")
    async def start_restore(self, request: RestoreRequest) -> None:
        from snaptui.ui.job_launcher import start_restore
        from snaptui.ui.screens.jobs_screen import JobsScreen

        job_id = await start_restore(request, self.app.store)
        self.follow_job(job_id)
        self.app.push_screen(JobsScreen(job_id))
