"""``snaptui verify IMAGE`` (and ``--stale``): the way in to an existing image.

A Glance image whose location is ``rbd://<fsid>/<pool>/<image>/<snap>`` (a direct snapshot,
or any image in an rbd store) boots as a copy-on-write clone of that snapshot, nothing
downloaded: the clone ``<disk pool>/snaptui-verify-<job>`` is made beside an RBD disk of this
host on the same cluster and reached as that disk is (its monitors, cephx user and libvirt
secret): the image's source domain's disks first, then any domain's. The clone is removed once
the verify domain is gone, whatever the outcome. When no such disk is found (or the clone
cannot be made) the image is downloaded as any other (core/verify/image.py), and ``said`` gets
one line saying why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from snaptui.core.engine.rbd_access import open_cluster
from snaptui.core.errors import CephError, CloudError, HypervisorError, NotFound
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt import qemu_access
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DomainInfo, ImageRecord, NetworkSource
from snaptui.core.paths import scratch_dir
from snaptui.core.rbd import cluster as rbd_cluster
from snaptui.core.rbd import snapshots
from snaptui.core.verify import boot as verify_boot
from snaptui.core.verify import image as stored

RBD_CLONE, FILE = "rbd-clone", "file"  # how the image was booted
_URL = re.compile(r"^rbd://(?P<fsid>[^/]+)/(?P<pool>[^/]+)/(?P<image>[^/]+)/(?P<snap>[^/]+)$")


@dataclass(frozen=True)
class RbdLocation:
    """Where an image's data lives in Ceph (Glance's rbd store location)."""

    fsid: str
    pool: str
    image: str
    snap: str

    @classmethod
    def parse(cls, url: str) -> RbdLocation | None:
        match = _URL.match(url or "")
        return cls(*(unquote(p) for p in match.groups())) if match else None

    @property
    def url(self) -> str:
        return f"rbd://{self.fsid}/{self.pool}/{self.image}/{self.snap}"


def rbd_location(store: ImageStore, image: ImageRecord) -> RbdLocation | None:
    """The image's location in Ceph as Glance shows it (``direct_url``, else ``locations``);
    None for a library image or when Glance shows no rbd location (blocking)."""
    raw_image = getattr(store, "raw_image", None)
    if image.location or not callable(raw_image):
        return None
    raw = raw_image(image.id)
    urls = [raw.get("direct_url")] + [loc.get("url") for loc in raw.get("locations") or []
                                      if isinstance(loc, dict)]
    return next((loc for url in urls if url and (loc := RbdLocation.parse(str(url)))), None)


def _ordered(domains: Iterable[DomainInfo], refs: Iterable[str]) -> list[DomainInfo]:
    """The domains named by ``refs`` (name or uuid) first, then the others."""
    wanted = {r for r in refs if r}
    return sorted(domains, key=lambda d: 0 if wanted & {d.name, d.uuid} else 1)


def find_access(host: LibvirtHost, fsid: str, refs: Iterable[str]) -> tuple[NetworkSource | None,
                                                                              str]:
    """An RBD disk source of this host on cluster ``fsid``: the disks of the domains named by
    ``refs`` first, then any domain's; else None and why (blocking)."""
    if not rbd_cluster.available():
        return None, "the Python bindings of Ceph are missing"
    try:
        domains = host.list_domains()
    except HypervisorError as err:
        return None, str(err)
    tried: set[NetworkSource] = set()
    failed = ""
    for domain in _ordered(domains, refs):
        for disk in domain.disks:
            source = disk.rbd
            key = dataclasses.replace(source, name="") if source else None
            if source is None or key is None or key in tried:
                continue
            tried.add(key)
            try:
                with open_cluster(host, source) as cluster:
                    if cluster.fsid == fsid:
                        return source, ""
            except (CephError, HypervisorError) as err:
                failed = f" ({err})"
    if not tried:
        return None, "no domain on this host has an RBD disk"
    return None, f"no RBD disk of this host's domains is on cluster {fsid}{failed}"


def verify_clone(source: NetworkSource, job_id: str) -> NetworkSource:
    """The throwaway clone: beside ``source`` in its pool, reached as it is."""
    return dataclasses.replace(source, name=f"{source.pool}/{verify_boot.VERIFY_PREFIX}{job_id}")


def _make_clone(host: LibvirtHost, source: NetworkSource, location: RbdLocation,
                clone: NetworkSource) -> None:
    with open_cluster(host, source) as cluster:
        if not snapshots.clone(cluster, (location.pool, location.image, location.snap),
                               clone.pool, clone.image):
            raise CephError(f"RBD image {clone.name} exists already")


def _remove_clone(host: LibvirtHost, source: NetworkSource, clone: NetworkSource) -> None:
    with open_cluster(host, source) as cluster:
        snapshots.remove_image(cluster, clone.pool, clone.image)


async def verify_stored(store: ImageStore, host: LibvirtHost, image: ImageRecord, *,
                        job_id: str, domain: str | None, console_regex: str | None,
                        timeout: float, accel: str | None,
                        on_progress: Callable[[float, float], None] | None = None,
                        said: Callable[[str], None] | None = None
                        ) -> tuple[verify_boot.VerifyResult, str]:
    """Boot ``image`` (a clone of its RBD snapshot when it can, else its data in a file); on a
    pass mark it ``snaptui_verified``. Returns the result and how it booted (RBD_CLONE or
    FILE); VerifyFailed otherwise."""
    tell = said or (lambda _text: None)
    try:
        location = await asyncio.to_thread(rbd_location, store, image)
    except (CloudError, NotFound) as err:
        location = None
        tell(f"image {image.id}: cannot read its locations ({err}); downloading it")
    if location is not None:
        why = ""
        if image.status != "active" or image.disk_format != "raw":
            why = f"it is {image.status} {image.disk_format} (a clone boots active raw images)"
        refs = [domain] if domain else [str(image.properties.get(k) or "")
                                        for k in ("instance_uuid", "snaptui_domain")]
        source = None
        if not why:
            source, why = await asyncio.to_thread(find_access, host, location.fsid, refs)
        if source is not None:
            try:
                return await _verify_clone(store, host, image, location, source, job_id=job_id,
                                           domain=domain, console_regex=console_regex,
                                           timeout=timeout, accel=accel,
                                           on_progress=on_progress, said=tell), RBD_CLONE
            except _NoClone as err:
                why = str(err)
        tell(f"image {image.id} is in Ceph ({location.url}) but {why}: downloading it instead")
    result = await stored.verify_stored(
        store, host, image, job_id=job_id, domain=domain, console_regex=console_regex,
        timeout=timeout, accel=accel, on_progress=on_progress)
    return result, FILE


class _NoClone(Exception):
    """The clone could not be made: nothing was created, the download path runs instead."""


async def _verify_clone(store: ImageStore, host: LibvirtHost, image: ImageRecord,
                        location: RbdLocation, source: NetworkSource, *, job_id: str,
                        domain: str | None, console_regex: str | None, timeout: float,
                        accel: str | None, on_progress: Callable[[float, float], None] | None,
                        said: Callable[[str], None]) -> verify_boot.VerifyResult:
    xml = await asyncio.to_thread(stored.source_xml, host, image, domain)
    scratch = scratch_dir()
    qemu_access.refuse_unless_reachable(scratch, host.qemu_identity(), "verify writes the "
                                        "guest's console to the scratch dir")
    clone = verify_clone(source, job_id)
    try:
        await asyncio.to_thread(_make_clone, host, source, location, clone)
    except (CephError, HypervisorError) as err:
        raise _NoClone(f"the clone cannot be made: {err}") from None
    said(f"booting {location.url} as its copy-on-write clone {clone.name} (nothing downloaded)")
    try:
        result = await verify_boot.verify_network(
            host.conn, clone, prefix=scratch / f"{job_id}-vda",
            name=f"{verify_boot.VERIFY_PREFIX}{job_id}", source_xml=xml, target=None,
            console_regex=console_regex, timeout=timeout,
            accel=accel if (accel or xml) else "tcg", on_progress=on_progress)
    finally:  # the domain is gone: its clone goes too
        await asyncio.shield(asyncio.to_thread(_remove_clone, host, source, clone))
    await asyncio.to_thread(store.set_properties, image.id,
                            verify_boot.verified_properties(result))
    return result

