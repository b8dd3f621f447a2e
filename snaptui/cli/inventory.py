"""``snaptui domains``, ``snaptui images`` and ``snaptui info``: what the host and the cloud hold.

A thin shell over the adapters: every failure leaves here as a one-line SnaptuiError.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Group
from rich.text import Text

from snaptui.cli.output import (
    grid,
    note,
    plain,
    print_json,
    print_table,
    table,
    warn,
)
from snaptui.core.disk.allocation import allocated_size
from snaptui.core.errors import (
    BadInput,
    CloudError,
    HypervisorError,
    NotFound,
    QemuImgError,
    SnaptuiError,
)
from snaptui.core.models import DiskInfo, DomainInfo, ImageFileInfo, ImageRecord
from snaptui.core.present import date_text, size_text, size_with_bytes, state_text

Common = Callable[[argparse.ArgumentParser], None]


def register(sub: argparse._SubParsersAction, common: Common) -> None:
    """Add the ``domains``, ``images`` and ``info`` subcommands."""
    p = sub.add_parser("domains", help="list libvirt domains with state, vCPUs, memory and disks")
    common(p)
    p.add_argument("--json", action="store_true", help="print JSON (sizes in bytes)")
    p.set_defaults(handler=run_domains)

    p = sub.add_parser("images", help="list images in Glance (or the local library)")
    common(p)
    p.add_argument("--json", action="store_true", help="print JSON (sizes in bytes)")
    p.set_defaults(handler=run_images)

    p = sub.add_parser("info", help="qemu-img info of a domain's disks or of an image file")
    common(p)
    p.add_argument("target", metavar="DOMAIN[:TARGET]|PATH",
                   help="domain name or UUID with an optional disk target (vda), or a file path")
    p.add_argument("-f", "--format", dest="fmt", metavar="FMT",
                   help="image format of PATH (default: probed; a domain's comes from its XML)")
    p.add_argument("--json", action="store_true", help="print JSON (sizes in bytes)")
    p.set_defaults(handler=run_info)


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Safety net: library exceptions the adapters did not map still become one line."""
    import libvirt
    from keystoneauth1 import exceptions as ksa_exc

    try:
        yield
    except libvirt.libvirtError as err:
        message = " ".join(str(err.get_error_message() or err).split())
        raise HypervisorError(message) from None
    except ksa_exc.ClientException as err:
        raise CloudError(" ".join(str(err).split()) or type(err).__name__) from None
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        raise BadInput(f"{where}{err.strerror or err}") from None


# ---------------------------------------------------------------- domains


def _disks_label(info: DomainInfo) -> str:
    return ", ".join(f"{d.target}:rbd" if d.rbd else f"{d.target}:{d.format or '?'}"
                     for d in info.disks) or "-"


def _host_domains(uri: str | None) -> tuple[str, list[DomainInfo]]:
    from snaptui.core.libvirt.host import LibvirtHost

    with _one_line_errors(), LibvirtHost(uri) as host:
        return host.uri, host.list_domains()


def run_domains(args: argparse.Namespace) -> int:
    """List all domains (active and inactive) of every host; rows carry ``host``. A host that
    cannot be reached is one warning line, and the others are still listed (exit 1)."""
    from snaptui.cli.fleet import hosts_of

    hosts = hosts_of(args)
    listed: list[tuple[str, DomainInfo]] = []
    failed: list[str] = []
    for spec in hosts:
        try:
            uri, domains = _host_domains(spec.uri)
        except SnaptuiError as err:
            if len(hosts) == 1:
                raise
            warn(f"{spec.name}: {err}")
            failed.append(spec.name)
            continue
        listed += [(spec.name, d) for d in domains]
        if not domains and not args.json:
            note(f"no domains on {uri}")
    sizes = {(h, d.uuid): allocated_size(d) for h, d in listed}  # the Domains pane's rule too
    if args.json:
        print_json([{**d.to_json(), "allocated_size": sizes[h, d.uuid], "host": h}
                    for h, d in listed])
        return 1 if failed else 0
    columns = ("name", "state", "vCPUs", "memory", "disks", "allocated size")
    rows = table(*(("host", *columns) if len(hosts) > 1 else columns))
    for h, d in listed:
        cells: list[Any] = [d.name, state_text(d.state), str(d.vcpus),
                            size_text(d.memory_kib * 1024), _disks_label(d),
                            size_text(sizes[h, d.uuid])]
        rows.add_row(*([h, *cells] if len(hosts) > 1 else cells))
    print_table(rows)
    return 1 if failed else 0


# ---------------------------------------------------------------- images


def _created(record: ImageRecord) -> str:
    return date_text(record.created_at)


def run_images(args: argparse.Namespace) -> int:
    """List the images of Glance when a cloud is configured, else of the local library."""
    from snaptui.core.images.factory import open_store, resolve_destination

    library = getattr(args, "library", None)
    if not getattr(args, "verbose", False):
        # keystoneauth logs a warning before each failure that the adapter turns into one line
        # anyway (cli.main's basicConfig would print it); keep it for -v.
        logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    with _one_line_errors():
        destination = resolve_destination(None, args.cloud, library)
        store = open_store(destination, cloud=args.cloud, library=library)
        # A rich table needs every row before it prints; Glance pages are read as they come.
        records = list(store.iter_images())
    if args.json:
        print_json([r.to_json() for r in records])
        return 0
    label = "library" if destination == "library" else "cloud"
    note(f"{label}: {store.location}")
    rows = table("name", "id", "status", "format", "size", "created", "snapshot", "instance")
    for r in records:
        fmt = "/".join(x for x in (r.disk_format, r.container_format) if x) or "-"
        rows.add_row(r.name or "-", r.id, r.status, fmt, size_text(r.size), _created(r),
                     "yes" if r.is_snapshot else "no", r.instance_uuid or "-")
    print_table(rows)
    if not records:
        note("no images")
    return 0


# ---------------------------------------------------------------- info


def _is_path(argument: str) -> bool:
    return "/" in argument or os.path.exists(argument)


async def _path_info(path: str, fmt: str | None, force_share: bool) -> ImageFileInfo:
    """qemu-img info; a file locked by a running guest is re-read read-only with -U."""
    from snaptui.core.disk import qemu_img

    if os.path.isdir(path):
        raise BadInput(f"{path} is a directory, not an image file")
    with contextlib.suppress(FileNotFoundError):  # qemu-img says it in its own words
        mode = os.stat(path).st_mode
        # A FIFO would block qemu-img's open forever; a socket or a character device is no
        # image either. A block device (an LVM volume, a disk) is.
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise BadInput(f"{path} is not a regular file or a block device: not an image")
    try:
        return await qemu_img.info(path, force_share=force_share, fmt=fmt)
    except QemuImgError as err:
        if force_share or "lock" not in str(err):
            raise
    return await qemu_img.info(path, force_share=True, fmt=fmt)


def _domain_disks(argument: str, uri: str | None) -> tuple[DomainInfo, list[DiskInfo]]:
    """The domain named by ``DOMAIN[:TARGET]`` and the disks to inspect."""
    from snaptui.core.libvirt.host import LibvirtHost

    name, sep, target = argument.rpartition(":")
    if not sep:
        name, target = argument, ""
    with LibvirtHost(uri) as host:
        try:
            info = host.domain_info(host.lookup(name))
        except NotFound:
            if not sep:
                raise
            info = host.domain_info(host.lookup(argument))  # a ':' inside the name itself
            target = ""
    if target:
        disk = info.disk(target)
        if disk is None:
            known = ", ".join(d.target for d in info.disks) or "none"
            raise NotFound(f"domain {info.name} has no disk {target} (disks: {known})")
        if not _inspectable(disk):
            raise BadInput(f"disk {target} of {info.name} has no local file nor RBD image "
                           f"(source type {disk.source_type})")
        return info, [disk]
    disks = [d for d in info.disks if _inspectable(d)]
    if not disks:
        raise BadInput(f"domain {info.name} has no disk backed by a local file or RBD image")
    return info, disks


def _inspectable(disk: DiskInfo) -> bool:
    """A local file or block device, or an RBD image (network disks of other protocols are
    not read)."""
    return bool(disk.path) and (disk.source_type != "network" or disk.rbd is not None)


def _rbd_infos(disks: list[DiskInfo], uri: str | None) -> dict[str, dict[str, Any]]:
    """librbd's and qemu-img's views of the RBD disks among ``disks``, by target."""
    rbd_disks = [d for d in disks if d.rbd is not None]
    if not rbd_disks:
        return {}
    from snaptui.cli.rbd_info import rbd_disk_info
    from snaptui.core.libvirt.host import LibvirtHost

    with LibvirtHost(uri) as host:
        return {d.target: rbd_disk_info(host, d) for d in rbd_disks}


def run_info(args: argparse.Namespace) -> int:
    """qemu-img info of a path, or of one or all disks of a domain ([HOST:]DOMAIN: on an SSH
    host it runs there, cli/fleet.py)."""
    from snaptui.cli.fleet import route_info

    routed = route_info(args)
    if routed is not None:
        return routed
    with _one_line_errors():
        if _is_path(args.target):
            image = asyncio.run(_path_info(args.target, args.fmt, False))
            if args.json:
                print_json(image.to_json())
            else:
                print_table(_render_image(image))
            return 0
        info, disks = _domain_disks(args.target, args.uri)
        share = info.state.is_active
        rbd = _rbd_infos(disks, args.uri)
        files = [d for d in disks if d.target not in rbd]

        async def gather() -> list[ImageFileInfo]:
            return list(await asyncio.gather(
                *(_path_info(str(d.path), d.format, share) for d in files)))

        images = dict(zip((d.target for d in files), asyncio.run(gather()), strict=True))
    if args.json:
        print_json([rbd[d.target] if d.target in rbd else
                    {**images[d.target].to_json(), "target": d.target} for d in disks])
        return 0
    parts: list[Any] = [
        Text.assemble(plain(info.name, "bold"), "  ", state_text(info.state),
                      plain(f"  {info.uuid}"))]
    for disk in disks:
        if disk.target in rbd:
            from snaptui.cli.rbd_info import render_rbd

            parts += [Text(""), render_rbd(rbd[disk.target])]
        else:
            parts += [Text(""), _render_image(images[disk.target], disk.target)]
    print_table(Group(*parts))
    return 0


def _ratio(image: ImageFileInfo) -> str:
    if not image.virtual_size:
        return "-"
    return f"{100 * image.actual_size / image.virtual_size:.1f} % allocated of virtual"


def _render_image(image: ImageFileInfo, target: str | None = None) -> Group:
    """One image for people: sizes (humanized and bytes), chain, snapshots, corrupt flag."""
    head = Text.assemble(plain(f"{target}  " if target else "", "bold cyan"),
                         plain(image.path, "bold"))
    facts = grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    facts.add_row("format", image.format)
    facts.add_row("virtual size", size_with_bytes(image.virtual_size))
    facts.add_row("allocated", size_with_bytes(image.actual_size))
    facts.add_row("apparent size", size_with_bytes(image.apparent_size))
    facts.add_row("ratio", _ratio(image))
    if image.corrupt is not None:
        facts.add_row("corrupt", Text("YES", style="bold red") if image.corrupt else "no")
    if image.cluster_size:
        facts.add_row("cluster size", size_text(image.cluster_size))
    chain = " → ".join(f"{b.path} ({b.format}, {size_text(b.actual_size)})"
                       for b in image.backing_chain)
    facts.add_row("backing chain", chain or "none")
    parts: list[Any] = [head, facts]
    if image.snapshots:
        snaps = table("id", "name", "date", "vm size", title=None)
        for s in image.snapshots:
            snaps.add_row(s.id, s.name, s.date, size_text(s.vm_size))
        parts += [Text("internal snapshots", style="dim"), snaps]
    else:
        facts.add_row("snapshots", "none")
    return Group(*parts)
