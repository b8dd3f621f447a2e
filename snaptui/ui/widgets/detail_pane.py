"""The detail area: a domain's disks as qemu-img sees them, or an image's properties."""

from __future__ import annotations

from collections.abc import Mapping

from textual.content import Content
from textual.geometry import Size
from textual.markup import escape
from textual.scroll_view import ScrollView
from textual.selection import Selection
from textual.strip import Strip
from textual.visual import Visual

from snaptui.core.errors import CephError, HypervisorError
from snaptui.core.fleet.inventory import key_of
from snaptui.core.keep.next_prune import NextPrune
from snaptui.core.keep.overview import GuestKeep
from snaptui.core.models import DomainInfo, ImageFileInfo, ImageRecord
from snaptui.core.present import PRUNE_GLYPH, date_text, duration_text, size_text, state_look
from snaptui.core.rbd.images import RbdImageInfo
from snaptui.ui.widgets.scrolling import set_virtual_size

PLACEHOLDER = "Select a domain or an image."


def _e(value: object) -> str:
    return escape(str(value))


def _sizes(info: ImageFileInfo) -> str:
    return (f"virtual [b]{size_text(info.virtual_size)}[/b] · "
            f"allocated [b]{size_text(info.actual_size)}[/b] · "
            f"apparent [b]{size_text(info.apparent_size)}[/b]")


DiskDetail = ImageFileInfo | RbdImageInfo  # qemu-img's view of a file, librbd's of an image


def rbd_lines(head: str, info: RbdImageInfo) -> list[str]:
    """Markup lines for an RBD disk: provisioned and used, parents, snapshots and clones."""
    used = size_text(info.used) if info.used is not None else "unknown"
    lines = [head, f"  [$secondary]rbd[/]  provisioned [b]{size_text(info.size)}[/b] · "
                   f"used [b]{used}[/b] · objects {size_text(info.object_size)}",
             f"  [$text-muted]cluster {_e(info.fsid)}[/]"]
    for depth, parent in enumerate(filter(None, (info.parent, *info.parent_chain)), 1):
        lines.append(f"{'  ' * depth}└ clone of {_e(parent)}")
    if info.snapshots:
        lines.append(f"  [$warning]{len(info.snapshots)} RBD snapshot(s):[/]")
        for snap in info.snapshots:
            shield = " protected" if snap.protected else ""
            clones = f"  clones: {_e(', '.join(snap.children))}" if snap.children else ""
            lines.append(f"    [b]{_e(snap.name)}[/b]  {size_text(snap.size)}{shield}{clones}")
    else:
        lines.append("  RBD snapshots: none")
    return lines


def domain_header(info: DomainInfo) -> str:
    look = state_look(info.state)
    memory = size_text(info.memory_kib * 1024)
    return (f"[b $accent]{_e(info.name)}[/]  [${look.colour}]{look.glyph} {_e(info.state)}[/]  "
            f"[$text-muted]{info.vcpus} vCPU · {memory} · {info.uuid}[/]")


def disk_lines(target: str, path: str | None, info: DiskDetail | BaseException | None,
               ) -> list[str]:
    """Markup lines describing one disk (``info`` is an error when it could not be read)."""
    head = f"[b]{_e(target)}[/b] [$text-muted]{_e(path or '(no file)')}[/]"
    if info is None:
        return [head, "  [$text-muted]reading…[/]"]
    if isinstance(info, BaseException):
        what = "" if isinstance(info, CephError | HypervisorError) else "qemu-img: "
        return [head, f"  [$error]{what}{_e(info)}[/]"]
    if isinstance(info, RbdImageInfo):
        return rbd_lines(head, info)
    lines = [head, f"  [$secondary]{_e(info.format)}[/]  {_sizes(info)}"]
    if info.corrupt:
        lines.append("  [b $error]corrupt: yes — run qemu-img check[/]")
    elif info.corrupt is False:
        lines.append("  corrupt: [$success]no[/]")
    for depth, backing in enumerate(info.backing_chain, 1):
        indent = "  " * depth
        lines.append(f"{indent}└ backing [$secondary]{_e(backing.format)}[/] {_e(backing.path)}")
        lines.append(f"{indent}  {_sizes(backing)}")
    if info.backing_file and not info.backing_chain:
        lines.append(f"  └ backing {_e(info.backing_file)}")
    if info.snapshots:
        lines.append(f"  [$warning]{len(info.snapshots)} internal snapshot(s):[/]")
        lines += [f"    {_e(s.id)} [b]{_e(s.name)}[/b]  {_e(date_text(s.date))}"
                  f"  vm-state {size_text(s.vm_size)}" for s in info.snapshots]
    else:
        lines.append("  internal snapshots: none")
    return lines


def keep_lines(keep: GuestKeep | None) -> list[str]:
    """The guest's last good image (a warning when older than a day) and its schedules; for
    a guest no schedule takes, nothing (its detail stays as it was)."""
    if keep is None or not keep.schedules:
        return []
    if keep.last is None:
        lines = ["[$warning]no good image of this guest[/]"]
    else:
        look = "$warning" if keep.stale else "$success"
        proof = " · verified" if keep.last.properties.get("snaptui_verified") else ""
        lines = [f"last good image [b]{_e(keep.last.name)}[/b] [{look}]"
                 f"{duration_text(keep.age_s)} old[/]{proof}"]
    for schedule in keep.schedules:
        paused = " (paused)" if schedule.paused else ""
        kept = f" · {_e(schedule.rules.text())}" if schedule.keep else ""
        lines.append(f"schedule [b]{_e(schedule.name)}[/b]{paused} on {_e(schedule.on)}{kept}")
    return lines


def domain_lines(info: DomainInfo,
                 disks: Mapping[str, DiskDetail | BaseException | None],
                 keep: GuestKeep | None = None) -> list[str]:
    """Markup lines describing a domain and its disks (``disks``: target → qemu-img info)."""
    lines = [domain_header(info)]
    lines += nova_lines(info)
    for disk in info.snapshot_disks:
        lines += disk_lines(disk.target, disk.path, disks.get(disk.target))
    if not info.snapshot_disks:
        lines.append("[$text-muted]no disks[/]")
    return lines + keep_lines(keep)


def nova_lines(info: DomainInfo) -> list[str]:
    """What makes the domain a Nova instance: its Nova name, project, flavor and base image."""
    nova = info.nova
    if nova is None:
        return []
    project = nova.owner_project or nova.owner_project_id or "?"
    flavor = _e(nova.flavor or "?")
    if nova.flavor_disk_gb is not None:
        flavor += f" ({nova.flavor_vcpus or '?'} vCPU, {nova.flavor_memory_mb or '?'} MiB, " \
                  f"{nova.flavor_disk_gb} GB root)"
    lines = [f"[b $accent]Nova instance[/] [b]{_e(nova.name or '?')}[/b] · project "
             f"{_e(project)} · flavor {flavor}"]
    if nova.base_image_ref:
        lines.append(f"  base image [$text-muted]{_e(nova.base_image_ref)}[/]")
    lines.append("  [$text-muted]cold and internal refused while it runs: Nova would stop it[/]")
    return lines


def image_links(image: ImageRecord, images: Mapping[str, ImageRecord]) -> list[str]:
    """The image's base image, and the snapshots made from it, as listed in the same store."""
    lines = []
    base_id = str(image.properties.get("base_image_ref") or "")
    if base_id:
        base = images.get(base_id)
        name = f"[b]{_e(base.name)}[/b] " if base else ""
        lines.append(f"base image {name}[$text-muted]{_e(base_id)}[/]")
    children = sorted((i for i in images.values()
                       if i.properties.get("base_image_ref") == image.id),
                      key=lambda i: i.created_at or "")
    if children:
        lines.append(f"snapshots of it: {len(children)}")
        lines += [f"  [b]{_e(c.name)}[/b] [$text-muted]{c.id}[/]" for c in children[:8]]
    return lines


def prune_lines(image_id: str, next_prune: NextPrune | None) -> list[str]:
    """What the next run of each schedule whose prune sees the image does with it."""
    lines = []
    for name, plan, row in (next_prune.decisions(image_id) if next_prune else []):
        rules = f" [$text-muted]({_e(plan.rules.text())})[/]"
        if row.decision.keep:
            lines.append(f"the next prune of schedule [b]{_e(name)}[/b] keeps it "
                         f"{_e(row.decision.text().removeprefix('keep '))}{rules}")
        else:
            lines.append(f"[b $error]{PRUNE_GLYPH} the next prune of schedule {_e(name)} "
                         f"removes it[/]{rules}")
    return lines


def image_lines(image: ImageRecord, domain_name: str | None,
                images: Mapping[str, ImageRecord] | None = None,
                next_prune: NextPrune | None = None) -> list[str]:
    """Markup lines describing one image record (``images``: the store's, for links;
    ``next_prune``: what the schedules' next prune does with it)."""
    kind = "snapshot image" if image.is_snapshot else "image"
    lines = [f"[b $accent]{_e(image.name)}[/]  {kind}  [$text-muted]{image.id}[/]",
             f"status [b]{_e(image.status)}[/b] · {_e(image.disk_format or '—')}/"
             f"{_e(image.container_format or '—')} · size [b]{size_text(image.size)}[/b] · "
             f"created {_e(date_text(image.created_at))}"]
    if image.instance_uuid:
        owner = f"{_e(domain_name)} " if domain_name else ""
        lines.append(f"instance {owner}[$text-muted]{image.instance_uuid}[/]")
    lines += prune_lines(image.id, next_prune)
    lines += image_links(image, images or {})
    if image.os_hash_value:
        lines.append(f"sha512 [$text-muted]{image.os_hash_value[:32]}…[/]")
    if image.location:
        lines.append(f"file [$text-muted]{_e(image.location)}[/]")
    for key, value in sorted(image.properties.items()):
        if key != "instance_uuid":
            lines.append(f"  {_e(key)} = {_e(value)}")
    return lines


class DetailPane(ScrollView, can_focus=False):
    """Scrollable detail of the selected domain or image, drawn with the line API.

    Showing another domain or image is a repaint of this widget only: the text is wrapped here
    to the pane's width and the scrollable height set without a screen layout. The vertical
    scrollbar is always there (overflow-y: scroll): one that came and went between a long
    domain and a short image changed the wrap width and cost a screen layout on every tab."""

    DEFAULT_CSS = """
    DetailPane {
        overflow-x: hidden;
        overflow-y: scroll;
    }
    """

    def __init__(self, *, id: str = "detail", show_host: bool = False) -> None:  # noqa: A002
        super().__init__(id=id, classes="pane")
        self.show_host = show_host  # several hosts: a domain is titled HOST:NAME
        self.showing: tuple[str, str] | None = None  # ("domain", HOST:UUID) or ("image", id)
        self._content = Content(PLACEHOLDER)
        self._wrapped: list[Strip] = []
        # What _wrapped was rendered for; None when _content changed since.
        self._wrapped_for: tuple[object, ...] | None = None

    @property
    def text(self) -> str:
        """The plain text shown (all lines, unwrapped)."""
        return self._content.plain

    def on_mount(self) -> None:
        self.border_title = "Detail"

    def show_domain(self, info: DomainInfo,
                    disks: Mapping[str, DiskDetail | BaseException | None],
                    keep: GuestKeep | None = None) -> None:
        """Show a domain; ``disks`` maps target → qemu-img info (None while it loads).

        While some disk is still loading the scrollable height does not shrink: the short
        "reading…" view between two domains would otherwise take the scrollbar away and give
        it back (two layouts)."""
        loading = any(disks.get(d.target) is None for d in info.snapshot_disks if d.path)
        name = f"{info.host}:{info.name}" if self.show_host and info.host else info.name
        lines = domain_lines(info, disks, keep)
        if self.show_host and info.host:
            lines[0] += f"  [$text-muted]on host[/] [b]{_e(info.host)}[/b]"
        self._show(("domain", key_of(info)), f"Detail — {name}", lines, hold_height=loading)

    def show_image(self, image: ImageRecord, domain_name: str | None,
                   images: Mapping[str, ImageRecord] | None = None,
                   next_prune: NextPrune | None = None) -> None:
        self._show(("image", image.id), f"Detail — {image.name}",
                   image_lines(image, domain_name, images, next_prune))

    def _show(self, subject: tuple[str, str], title: str, lines: list[str],
              hold_height: bool = False) -> None:
        if subject != self.showing:
            self.showing = subject
            self.border_title = title
            self.scroll_to(0, 0, animate=False, immediate=True)
        content = Content.from_markup("\n".join(lines))
        if content.is_same(self._content):
            return
        self._content = content
        self._wrapped_for = None
        self._fit(hold_height)
        self.refresh()

    # -- line API ------------------------------------------------------------------------------

    def _wrap(self, width: int) -> list[Strip]:
        """The content wrapped to ``width`` cells (Textual pads each line with the background)."""
        key = (width, self.app.theme, self.visual_style)  # and _content
        if key != self._wrapped_for:
            self._wrapped = Visual.to_strips(self, self._content, width, None, self.visual_style)
            self._wrapped_for = key
        return self._wrapped

    def _fit(self, hold_height: bool = False) -> None:
        """Wrap the content and size the scrollable area to it (at least to its current
        height with ``hold_height``)."""
        width, height = self.container_size
        if width <= 0:
            return  # not laid out yet: on_resize fits
        floor = self.virtual_size.height if hold_height else 0
        always = self.styles.overflow_y == "scroll"
        lines = 0 if always else len(self._wrap(width))
        if always or max(lines, floor) > height:  # the scrollbar takes columns from the text
            lines = len(self._wrap(max(1, width - self.styles.scrollbar_size_vertical)))
        size = Size(width, max(lines, floor))
        if size != self.virtual_size:
            set_virtual_size(self, size, scrollbar=always or size.height > height)

    def on_resize(self) -> None:
        self._fit()

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """The text under a mouse selection (the strips carry content offsets)."""
        return selection.extract(self.text), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self._wrapped_for = None  # the selection is drawn into the wrapped strips
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._wrapped_for = None  # a theme or CSS change: colours to resolve again

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        wrapped = self._wrap(width) if width > 0 else []
        index = y + self.scroll_offset.y
        if index < len(wrapped):
            return wrapped[index]
        return Strip([], 0)
