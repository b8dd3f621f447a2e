"""``snaptui verify IMAGE``: the boot check of ``snapshot --verify`` on an existing image.

A library image is booted from its file; a Glance image is first downloaded to a 0600 file
in scratch (removed afterwards). An image in Ceph boots as a clone of its snapshot instead,
when this host has a way into its cluster: core/engine/verify_stored.py chooses. The boot
settings are the source domain's when it is still on this host (``--domain``, else the image's
``snaptui_domain`` / ``instance_uuid``), else a plain BIOS ``pc`` machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import libvirt

from snaptui.core.errors import BadInput, NotFound
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt import qemu_access
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import ImageRecord
from snaptui.core.paths import scratch_dir
from snaptui.core.verify import boot as verify_boot


def find_image(store: ImageStore, ref: str) -> ImageRecord:
    """The image with id ``ref``, else the one image named ``ref``."""
    with contextlib.suppress(NotFound, BadInput):
        return store.show(ref)
    named = [i for i in store.iter_images() if i.name == ref]
    if not named:
        raise NotFound(f"no image {ref!r} in {store.location}")
    if len(named) > 1:
        raise BadInput(f"{len(named)} images are named {ref!r}; give its id")
    return named[0]


def source_xml(host: LibvirtHost, image: ImageRecord, domain: str | None) -> str | None:
    """The inactive XML of the domain whose boot settings the check copies, if any."""
    refs = [domain] if domain else [r for r in (image.properties.get("instance_uuid"),
                                                image.properties.get("snaptui_domain")) if r]
    for ref in refs:
        try:
            return host.lookup(str(ref)).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        except NotFound:
            if domain:
                raise
    return None


def _download(store: ImageStore, image: ImageRecord, dest: Path) -> None:
    """The image's bytes into a new 0600 ``dest`` (a library file is copied)."""
    download = getattr(store, "download", None)
    if not image.location and not callable(download):
        raise BadInput(f"cannot read image {image.id} from {store.location}")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        if image.location:
            with open(image.location, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        elif download is not None:
            download(image.id, out)


async def verify_stored(store: ImageStore, host: LibvirtHost, image: ImageRecord, *,
                        job_id: str, domain: str | None, console_regex: str | None,
                        timeout: float, accel: str | None,
                        on_progress: Callable[[float, float], None] | None = None
                        ) -> verify_boot.VerifyResult:
    """Boot ``image``; on a pass, mark it ``snaptui_verified``. VerifyFailed otherwise."""
    if image.status != "active" or image.disk_format not in ("raw", "qcow2"):
        raise BadInput(f"image {image.id} is {image.status} {image.disk_format}; only active "
                       "raw or qcow2 images can be booted")
    xml = source_xml(host, image, domain)
    scratch = scratch_dir()
    who = host.qemu_identity()
    qemu_access.refuse_unless_reachable(scratch, who, "verify boots the image from the "
                                        "scratch dir")
    prefix = scratch / f"{job_id}-vda"
    fetched = None
    if image.location and qemu_access.unreachable(Path(image.location).parent, who) is None:
        path = Path(image.location)
    else:  # a Glance image, or a library QEMU cannot enter (root's own): a copy in scratch
        fetched = path = Path(f"{prefix}.{image.disk_format}.partial")
    try:
        if fetched is not None:
            import asyncio

            await asyncio.to_thread(_download, store, image, fetched)
        result = await verify_boot.verify_file(
            host.conn, path, image.disk_format, prefix=prefix,
            name=f"{verify_boot.VERIFY_PREFIX}{job_id}", source_xml=xml, target=None,
            console_regex=console_regex, timeout=timeout,
            accel=accel if (accel or xml) else "tcg", on_progress=on_progress)
    finally:
        if fetched is not None:
            fetched.unlink(missing_ok=True)
    store.set_properties(image.id, verify_boot.verified_properties(result))
    return result
