"""The detail area: a domain's disks as qemu-img sees them, or an image's properties."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.markup import escape
from textual.widgets import Static

from snaptui.core.models import DomainInfo, ImageFileInfo, ImageRecord
from snaptui.ui.domains_pane import STATE_LOOK, short_date, size_text


def _e(value: object) -> str:
    return escape(str(value))


def _sizes(info: ImageFileInfo) -> str:
    return (f"virtual [b]{size_text(info.virtual_size)}[/b] · "
            f"allocated [b]{size_text(info.actual_size)}[/b] · "
            f"apparent [b]{size_text(info.apparent_size)}[/b]")


def domain_header(info: DomainInfo) -> str:
    glyph, variable = STATE_LOOK.get(info.state, ("?", "text-muted"))
    memory = size_text(info.memory_kib * 1024)
    return (f"[b $accent]{_e(info.name)}[/]  [${variable}]{glyph} {_e(info.state)}[/]  "
            f"[$text-muted]{info.vcpus} vCPU · {memory} · {info.uuid}[/]")


def disk_lines(target: str, path: str | None, info: ImageFileInfo | BaseException | None,
               ) -> list[str]:
    """Markup lines describing one disk (``info`` is an error when qemu-img failed)."""
    head = f"[b]{_e(target)}[/b] [$text-muted]{_e(path or '(no file)')}[/]"
    if info is None:
        return [head, "  [$text-muted]reading…[/]"]
    if isinstance(info, BaseException):
        return [head, f"  [$error]qemu-img: {_e(info)}[/]"]
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
        lines += [f"    {_e(s.id)} [b]{_e(s.name)}[/b]  {_e(short_date(s.date))}"
                  f"  vm-state {size_text(s.vm_size)}" for s in info.snapshots]
    else:
        lines.append("  internal snapshots: none")
    return lines


def image_lines(image: ImageRecord, domain_name: str | None) -> list[str]:
    """Markup lines describing one image record."""
    kind = "snapshot image" if image.is_snapshot else "image"
    lines = [f"[b $accent]{_e(image.name)}[/]  {kind}  [$text-muted]{image.id}[/]",
             f"status [b]{_e(image.status)}[/b] · {_e(image.disk_format or '—')}/"
             f"{_e(image.container_format or '—')} · size [b]{size_text(image.size)}[/b] · "
             f"created {_e(short_date(image.created_at))}"]
    if image.instance_uuid:
        owner = f"{_e(domain_name)} " if domain_name else ""
        lines.append(f"instance {owner}[$text-muted]{image.instance_uuid}[/]")
    if image.os_hash_value:
        lines.append(f"sha512 [$text-muted]{image.os_hash_value[:32]}…[/]")
    if image.location:
        lines.append(f"file [$text-muted]{_e(image.location)}[/]")
    for key, value in sorted(image.properties.items()):
        if key != "instance_uuid":
            lines.append(f"  {_e(key)} = {_e(value)}")
    return lines


class DetailPane(VerticalScroll):
    """Scrollable detail of the selected domain or image."""

    def __init__(self, *, id: str = "detail") -> None:  # noqa: A002
        super().__init__(id=id, classes="pane")
        self.body = Static("Select a domain or an image.", id="detail-body")
        self.showing: tuple[str, str] | None = None  # ("domain", uuid) or ("image", id)

    def compose(self):  # type: ignore[override]
        yield self.body

    def on_mount(self) -> None:
        self.border_title = "Detail"
        self.can_focus = False

    def show_domain(self, info: DomainInfo,
                    disks: dict[str, ImageFileInfo | BaseException | None]) -> None:
        """Show a domain; ``disks`` maps target → qemu-img info (None while it loads)."""
        self.showing = ("domain", info.uuid)
        self.border_title = f"Detail — {info.name}"
        lines = [domain_header(info)]
        for disk in info.disks:
            if disk.device != "disk":
                continue
            lines += disk_lines(disk.target, disk.path, disks.get(disk.target))
        if not any(d.device == "disk" for d in info.disks):
            lines.append("[$text-muted]no disks[/]")
        self.body.update("\n".join(lines))

    def show_image(self, image: ImageRecord, domain_name: str | None) -> None:
        self.showing = ("image", image.id)
        self.border_title = f"Detail — {image.name}"
        self.body.update("\n".join(image_lines(image, domain_name)))
