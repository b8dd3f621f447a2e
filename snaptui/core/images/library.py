"""Local image library: a 0700 directory of ``<id>.<disk_format>`` files with a JSON sidecar each.

Used when no cloud is configured. File names come from uuid4 ids and a validated disk format
only, so an image name (free text) can never reach the filesystem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snaptui.core.errors import BadInput, NotFound, SnaptuiError
from snaptui.core.images.store import (
    CHUNK_SIZE,
    HASH_ALGO,
    HashingReader,
    ImageSettings,
    ProgressCallback,
    validate_formats,
    validate_image_id,
    validate_properties,
)
from snaptui.core.models import ImageRecord
from snaptui.core.paths import private_dir, sync_dir
from snaptui.core.throttle import RateLimiter

log = logging.getLogger(__name__)

SIDECAR = ".json"
PARTIAL = ".partial"


class ImageLibrary:
    """ImageStore over a local directory (same operations as Glance)."""

    kind = "library"

    def __init__(self, directory: Path) -> None:
        # An existing library keeps its mode, and may be one we cannot write (read-only
        # mount, another owner): it can still be listed; check() says why it takes no images.
        self.directory = private_dir(Path(directory).expanduser().absolute(),
                                     "library directory")
        self.location = str(self.directory)

    def check(self) -> None:
        """The library can take a new image: a private file can be created in it."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=".check-", dir=self.directory)
        except OSError as err:
            raise BadInput(f"library {self.location} is not writable: "
                           f"{err.strerror or err}") from None
        os.close(fd)
        os.unlink(tmp)

    # -- reading ---------------------------------------------------------------------------

    def iter_images(self) -> Iterator[ImageRecord]:
        """Every image with a readable sidecar, oldest first; unreadable sidecars are logged."""
        records = []
        for sidecar in self.directory.glob("*" + SIDECAR):
            try:
                validate_image_id(sidecar.name[: -len(SIDECAR)])
                records.append(self._record(self._read_sidecar(sidecar)))
            except (OSError, ValueError, KeyError, TypeError, BadInput) as err:
                log.warning("skipping unreadable library sidecar %s: %s", sidecar, err)
        records.sort(key=lambda r: (r.created_at or "", r.id))
        yield from records

    def show(self, image_id: str) -> ImageRecord:
        """The image with that id; NotFound when there is none, BadInput for a non-UUID id."""
        return self._record(self._load(validate_image_id(image_id)))

    # -- writing ---------------------------------------------------------------------------

    def create(
        self,
        name: str,
        disk_format: str,
        container_format: str = "bare",
        properties: dict[str, str] | None = None,
        settings: ImageSettings | None = None,
    ) -> ImageRecord:
        """Write a sidecar for a new, empty (queued) image; ``settings`` (visibility, min_disk,
        tags...) are kept in it as Glance would keep them, for a later upload."""
        validate_formats(disk_format, container_format)
        meta: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "name": str(name),
            "status": "queued",
            "disk_format": disk_format,
            "container_format": container_format,
            "size": None,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "properties": validate_properties(properties),
            "os_hash_algo": HASH_ALGO,
            "os_hash_value": None,
        }
        if settings is not None:
            meta.update(settings.to_json())
        self._write_sidecar(meta)
        return self._record(meta)

    def set_properties(self, image_id: str, properties: dict[str, str]) -> None:
        """Add or change properties of an image (its sidecar, rewritten atomically)."""
        meta = self._load(validate_image_id(image_id))
        meta["properties"] = {**(meta.get("properties") or {}),
                              **validate_properties(properties)}
        self._write_sidecar(meta)

    def upload(
        self,
        image_id: str,
        path: Path,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        limiter: RateLimiter | None = None,
    ) -> str:
        """Copy ``path`` in as the image's data; return its sha512 hex.

        The copy goes to a 0600 ``.partial`` file renamed into place when complete; on failure
        or cancel the partial file is removed and the image goes back to "queued".
        """
        image_id = validate_image_id(image_id)
        meta = self._load(image_id)
        source = Path(path)
        try:
            src = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as err:
            raise NotFound(f"cannot read {source}: {err.strerror}") from None
        final = self._data_path(image_id, meta["disk_format"])
        partial = final.with_name(final.name + PARTIAL)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()  # left over from a crashed copy
        meta.update(status="saving", size=None, os_hash_value=None)
        self._write_sidecar(meta)
        try:
            with src, HashingReader(src, os.fstat(src.fileno()).st_size, on_progress,
                                    cancel, limiter=limiter) as reader:
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as dst:
                    while chunk := reader.read(CHUNK_SIZE):
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
                    size = dst.tell()
            reader.meter.finish()
            os.replace(partial, final)
        except BaseException as err:
            with contextlib.suppress(OSError):
                partial.unlink()
            meta.update(status="queued")
            with contextlib.suppress(OSError):
                self._write_sidecar(meta)
            if isinstance(err, OSError):
                raise SnaptuiError(
                    f"copy into library {self.location} failed: {err.strerror or err}"
                ) from None
            raise
        digest = reader.hexdigest()
        meta.update(status="active", size=size, os_hash_value=digest)
        self._write_sidecar(meta)
        self._fsync_dir()
        return digest

    def set_protected(self, image_id: str, protected: bool) -> None:
        """Record Glance's ``protected`` flag in the sidecar (kept for a later upload)."""
        meta = self._load(validate_image_id(image_id))
        meta["protected"] = bool(protected)
        self._write_sidecar(meta)


    def delete(self, image_id: str) -> None:
        """Remove the image's data file, any partial copy and its sidecar (sidecar last)."""
        image_id = validate_image_id(image_id)
        sidecar = self._sidecar_path(image_id)
        data_files = [p for p in self.directory.glob(image_id + ".*") if p != sidecar]
        if not sidecar.exists() and not data_files:
            raise NotFound(f"no image {image_id} in library {self.location}")
        for file in data_files:
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
        self._fsync_dir()

    # -- files -----------------------------------------------------------------------------

    def _sidecar_path(self, image_id: str) -> Path:
        return self.directory / (image_id + SIDECAR)

    def _data_path(self, image_id: str, disk_format: str) -> Path:
        validate_formats(disk_format, "bare")
        return self.directory / f"{image_id}.{disk_format}"

    def _load(self, image_id: str) -> dict[str, Any]:
        sidecar = self._sidecar_path(image_id)
        try:
            return self._read_sidecar(sidecar)
        except FileNotFoundError:
            raise NotFound(f"no image {image_id} in library {self.location}") from None
        except (OSError, ValueError) as err:
            raise SnaptuiError(f"unreadable library sidecar {sidecar}: {err}") from None

    @staticmethod
    def _read_sidecar(sidecar: Path) -> dict[str, Any]:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("id") != sidecar.name[: -len(SIDECAR)]:
            raise ValueError("sidecar id does not match its file name")
        return meta

    def _write_sidecar(self, meta: dict[str, Any]) -> None:
        """Write atomically: a 0600 temp file in the same directory, fsync, then rename."""
        fd, tmp = tempfile.mkstemp(prefix=".sidecar-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(meta, out, indent=2, ensure_ascii=False)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._sidecar_path(meta["id"]))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _fsync_dir(self) -> None:
        sync_dir(self.directory)

    def _record(self, meta: dict[str, Any]) -> ImageRecord:
        data = self._data_path(meta["id"], meta["disk_format"])
        return ImageRecord(
            id=meta["id"],
            name=meta["name"],
            status=meta["status"],
            disk_format=meta["disk_format"],
            container_format=meta.get("container_format"),
            size=meta.get("size"),
            created_at=meta.get("created_at"),
            properties=dict(meta.get("properties") or {}),
            os_hash_value=meta.get("os_hash_value"),
            location=str(data) if meta["status"] == "active" else None,
            protected=bool(meta.get("protected")),
        )
