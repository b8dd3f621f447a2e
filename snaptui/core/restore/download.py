"""The image a restore puts back: found by id or name, measured, and streamed into a new file.

The bytes go from the store (Glance's data stream, or the library's file) straight into a new
file created with O_EXCL beside the disk, hashed with sha512 on the way and checked against the
image's ``os_hash_value`` at the end; runs of zeros are skipped (the file stays sparse).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from snaptui.core.disk import qemu_img
from snaptui.core.errors import BadInput, ChecksumMismatch, NotFound, SnaptuiError
from snaptui.core.images.store import HASH_ALGO, ImageStore
from snaptui.core.models import ImageRecord

CHUNK = 1 << 20
ZERO_BLOCK = 64 * 1024  # zero runs this long (aligned) become holes
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
QCOW2_MAGIC = b"QFI\xfb"
_ZEROS = bytes(ZERO_BLOCK)


class DownloadCancelled(SnaptuiError):
    """The job was cancelled while the image was being downloaded."""


def find_image(store: ImageStore, ref: str) -> ImageRecord:
    """The image ``ref`` names: its id, else its name (one image only; the newest active one
    when several share the name is not guessed: the ids are listed)."""
    if not ref or not ref.strip():
        raise BadInput("no image named (an image id or name)")
    if _UUID.match(ref):
        try:
            return store.show(ref)
        except NotFound:
            pass
    named = [i for i in store.iter_images() if i.name == ref]
    if not named:
        raise NotFound(f"no image {ref!r} in {store.location}")
    if len(named) > 1:
        ids = ", ".join(i.id for i in named[:5])
        raise BadInput(f"{len(named)} images are named {ref!r}; name one by id ({ids})")
    return named[0]


def check_restorable(image: ImageRecord) -> str:
    """The image's sha512 (what the download must match); BadInput when it cannot be
    restored: not active, no data, no hash to check against, or a format we cannot write."""
    if image.status != "active":
        raise BadInput(f"image {image.id} is {image.status}, not active")
    if image.disk_format not in ("raw", "qcow2"):
        raise BadInput(f"image {image.id} is {image.disk_format}; a restore takes raw or qcow2")
    value = image.os_hash_value
    if not value or not re.fullmatch(r"[0-9a-f]{128}", str(value)):
        raise BadInput(f"image {image.id} has no {HASH_ALGO} hash (os_hash_value) to check "
                       "its download against")
    return str(value)


def iter_data(store: ImageStore, image: ImageRecord) -> Iterator[bytes]:
    """The image's bytes as they arrive from the store."""
    if image.location:  # the library: its own file
        with open(image.location, "rb") as src:
            while chunk := src.read(CHUNK):
                yield chunk
        return
    iter_chunks = getattr(store, "iter_data", None)
    if not callable(iter_chunks):
        raise SnaptuiError(f"{store.location} cannot stream image data")
    yield from iter_chunks(image.id)


async def virtual_size(store: ImageStore, image: ImageRecord) -> int:
    """The image's virtual size: the library file's ``qemu-img info``; Glance's
    ``virtual_size`` when it computed one; else a raw image's size, or the qcow2 header's."""
    if image.location:
        return (await qemu_img.info(image.location, chain=False,
                                    fmt=image.disk_format)).virtual_size
    raw = getattr(store, "raw_image", None)
    known = raw(image.id).get("virtual_size") if callable(raw) else None
    if known:
        return int(known)
    if image.disk_format == "raw":
        return int(image.size or 0)
    header = b""
    for chunk in iter_data(store, image):
        header += chunk
        if len(header) >= 32:
            break
    if len(header) < 32 or header[:4] != QCOW2_MAGIC:
        raise BadInput(f"image {image.id} says qcow2 but has no qcow2 header")
    return int(struct.unpack(">Q", header[24:32])[0])


def write_new_file(chunks: Iterable[bytes], path: str, *, expected: str | None,
                   total: int | None, on_progress: Callable[[int, int | None], None],
                   cancel: threading.Event) -> tuple[str, int]:
    """Write ``chunks`` into a new 0600 file at ``path`` (never over an existing one), sparse,
    fsynced; returns (sha512 hex, bytes). ChecksumMismatch when ``expected`` differs; the
    caller removes the file on any failure (it is journaled before this is called)."""
    digest = hashlib.new(HASH_ALGO)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    written = 0
    try:
        for chunk in chunks:
            if cancel.is_set():
                raise DownloadCancelled(f"download into {path} cancelled")
            digest.update(chunk)
            _write_sparse(fd, chunk)
            written += len(chunk)
            on_progress(written, total)
        os.ftruncate(fd, written)  # a trailing hole has no bytes written
        os.fsync(fd)
    finally:
        os.close(fd)
    on_progress(written, written)
    got = digest.hexdigest()
    if expected is not None and got != expected:
        raise ChecksumMismatch(f"the downloaded image's {HASH_ALGO} is {got[:16]}…, the image "
                               f"says {expected[:16]}…; nothing was replaced")
    if total is not None and written != total:
        raise SnaptuiError(f"downloaded {written} bytes of {total}; nothing was replaced")
    return got, written


def _write_sparse(fd: int, data: bytes) -> None:
    view = memoryview(data)
    for at in range(0, len(view), ZERO_BLOCK):
        block = view[at:at + ZERO_BLOCK]
        if block.nbytes == ZERO_BLOCK and block == _ZEROS:
            os.lseek(fd, ZERO_BLOCK, os.SEEK_CUR)
            continue
        while block.nbytes:
            block = block[os.write(fd, block):]


def describe(image: ImageRecord) -> dict[str, Any]:
    """The image as a restore's confirmation and --json name it."""
    return {"id": image.id, "name": image.name, "format": image.disk_format,
            "size": image.size, "created_at": image.created_at,
            "verified": image.properties.get("snaptui_verified")}
