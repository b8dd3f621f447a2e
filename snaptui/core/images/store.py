"""The interface both image stores (Glance, local library) implement, and upload progress types.

The engine journals ``create`` and ``upload`` separately so a crash between them can be
recovered; ``add`` is the one-call form that never leaves a half-made image behind.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from snaptui.core.errors import BadInput, NotFound, SnaptuiError
from snaptui.core.models import ImageRecord
from snaptui.core.throttle import RateLimiter

CHUNK_SIZE = 4 * 1024 * 1024
# The upload is sent in pieces of this size (glanceclient asks for 1 MiB and sends what read
# returns). Glance ingests a chunked upload much faster in smaller pieces: on the lab's Glance
# (gunicorn) 1 GiB went in at 132-180 MiB/s in 1 MiB pieces, 220-231 MiB/s in 64-256 KiB ones.
SEND_CHUNK = 256 * 1024
READ_AHEAD = 64  # pieces read and hashed ahead of the sender (16 MiB)
HASH_ALGO = "sha512"

# Glance's accepted values (images schema); anything else is refused before any request.
DISK_FORMATS = frozenset(
    {"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"}
)
CONTAINER_FORMATS = frozenset({"ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"})


@dataclass(frozen=True)
class UploadProgress:
    """Bytes sent of total, smoothed rate (bytes/s) and estimated seconds left (None if unknown)."""

    sent: int
    total: int
    rate: float
    eta_s: float | None

    @property
    def fraction(self) -> float:
        return self.sent / self.total if self.total else 1.0


ProgressCallback = Callable[[UploadProgress], None]

VISIBILITIES = ("private", "shared", "community", "public")


@dataclass(frozen=True)
class ImageSettings:
    """Glance's own fields of a new image (not properties) and the projects it is shared with.

    Built by ``core/images/properties.py``; the library keeps them in the sidecar."""

    visibility: str = "private"
    protected: bool = False
    min_disk: int = 0  # GiB
    min_ram: int = 0  # MiB
    tags: tuple[str, ...] = ()
    members: tuple[str, ...] = ()  # project ids added as members (visibility shared)

    def to_json(self) -> dict[str, object]:
        return {"visibility": self.visibility, "protected": self.protected,
                "min_disk": self.min_disk, "min_ram": self.min_ram, "tags": list(self.tags),
                "members": list(self.members)}

    @classmethod
    def from_json(cls, data: dict | None) -> ImageSettings:
        data = data or {}
        return cls(visibility=str(data.get("visibility") or "private"),
                   protected=bool(data.get("protected")),
                   min_disk=int(data.get("min_disk") or 0),
                   min_ram=int(data.get("min_ram") or 0),
                   tags=tuple(str(t) for t in data.get("tags") or ()),
                   members=tuple(str(m) for m in data.get("members") or ()))


class UploadCancelled(SnaptuiError):
    """The upload was cancelled by the caller; the partial image has been removed."""


@runtime_checkable
class ImageStore(Protocol):
    """Where snapshots go: a Glance service or a local directory, with the same operations."""

    kind: str  # "glance" | "library"
    @property
    def location(self) -> str:
        """For people: "cloud (URL)" or the library path."""
        ...

    def iter_images(self) -> Iterator[ImageRecord]:
        """Every image, streamed page by page."""
        ...

    def show(self, image_id: str) -> ImageRecord:
        """One image; NotFound when it does not exist."""
        ...

    def create(
        self, name: str, disk_format: str, container_format: str, properties: dict[str, str],
        settings: ImageSettings | None = None,
    ) -> ImageRecord:
        """Create an empty (queued) image record (with ``settings``: visibility, min_disk...)."""
        ...

    def upload(
        self,
        image_id: str,
        path: Path,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        limiter: RateLimiter | None = None,
    ) -> str:
        """Send the file's bytes; return the local sha512 hex.

        Raises ChecksumMismatch when the store reports a different os_hash_value. ``limiter``
        caps the rate the file is read at (``--bwlimit``).
        """
        ...


    def set_protected(self, image_id: str, protected: bool) -> None:
        """Protect the image from deletion (Glance's ``protected``), or lift that."""
        ...

    def delete(self, image_id: str) -> None:
        """Delete an image; NotFound when it does not exist."""
        ...

    def set_properties(self, image_id: str, properties: dict[str, str]) -> None:
        """Add or change properties of an existing image."""
        ...


def add_image(store: ImageStore, path: Path, *, name: str, disk_format: str,
              container_format: str = "bare", properties: dict[str, str] | None = None,
              on_progress: ProgressCallback | None = None,
              cancel: threading.Event | None = None) -> ImageRecord:
    """Create + upload (+ the store's own verification) for either store; on any failure or
    cancel the half-made image is deleted again, and a delete that fails too is said."""
    if not Path(path).is_file():
        raise NotFound(f"no such file: {path}")
    record = store.create(name, disk_format, container_format, properties or {})
    try:
        store.upload(record.id, Path(path), on_progress, cancel)
        return store.show(record.id)
    except BaseException as err:
        delete_after_failure(store, record.id, err)
        raise


def delete_after_failure(store: ImageStore, image_id: str, err: BaseException) -> None:
    """Delete the half-made image ``err`` left; if that fails too, one error says both."""
    try:
        store.delete(image_id)
    except NotFound:
        pass
    except (SnaptuiError, OSError) as delete_err:
        reason = err if isinstance(err, SnaptuiError) else type(err).__name__
        raise SnaptuiError(f"{reason}; image {image_id} may be left in {store.location} "
                           f"(delete failed: {delete_err}); snaptui recover retries the "
                           "delete") from err


class ProgressMeter:
    """Turns byte counts into throttled UploadProgress callbacks with an EWMA rate."""

    def __init__(
        self,
        total: int,
        callback: ProgressCallback | None,
        *,
        min_interval: float = 0.1,
        smoothing: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.sent = 0
        self.rate = 0.0
        self._callback = callback
        self._min_interval = min_interval
        self._alpha = smoothing
        self._clock = clock
        self._start = self._last_emit = self._last_sample = clock()
        self._sent_at_sample = 0

    def advance(self, nbytes: int) -> None:
        """Count bytes; call back when min_interval has passed since the last call-back."""
        self.sent += nbytes
        now = self._clock()
        if now - self._last_emit >= self._min_interval:
            self._sample(now)
            self._emit(now)

    def finish(self) -> None:
        """Always emit a final event (sent == total when all bytes went)."""
        now = self._clock()
        elapsed = now - self._start
        if elapsed > 0:
            self.rate = self.sent / elapsed
        self._emit(now)

    def _sample(self, now: float) -> None:
        dt = now - self._last_sample
        if dt <= 0:
            return
        instant = (self.sent - self._sent_at_sample) / dt
        if self.rate == 0:
            self.rate = instant
        else:
            self.rate = self._alpha * instant + (1 - self._alpha) * self.rate
        self._last_sample = now
        self._sent_at_sample = self.sent

    def _emit(self, now: float) -> None:
        self._last_emit = now
        if self._callback is None:
            return
        left = max(self.total - self.sent, 0)
        eta = left / self.rate if self.rate > 0 else None
        self._callback(UploadProgress(self.sent, self.total, self.rate, eta))


class HashingReader:
    """File-like wrapper: reads in chunks, hashes with sha512, reports progress, honours cancel.

    A reader thread reads and hashes up to ``read_ahead`` chunks ahead of the consumer
    (hashlib releases the GIL), so hashing overlaps the network send instead of adding to it;
    memory stays flat at ``read_ahead`` chunks whatever the image size. Use it as a context
    manager (or call ``close``) so the thread stops when the consumer gives up early.
    Cancellation raises UploadCancelled out of ``read()`` so the HTTP client aborts the request.
    A ``limiter`` (``--bwlimit``, core/throttle.py) paces the reader thread, hence the sender.
    """

    def __init__(
        self,
        stream: BinaryIO | ChunkReader,
        total: int,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        read_ahead: int = READ_AHEAD,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._stream = stream
        self._limiter = limiter
        self._cancel = cancel
        self.hash = hashlib.new(HASH_ALGO)
        self.meter = ProgressMeter(total, on_progress)
        self.cancelled = False
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=read_ahead)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = b""
        self._eof = False

    def __enter__(self) -> HashingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._stream.read(SEND_CHUNK)
                if data:
                    self.hash.update(data)
                    if self._limiter is not None:  # --bwlimit: the sender waits on the reader
                        self._limiter.consume(len(data), self._stop)
                self._put(data)
                if not data:
                    return
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next_chunk(self) -> bytes:
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="snaptui-hash",
                                            daemon=True)
            self._thread.start()
        while True:
            if self._cancel is not None and self._cancel.is_set():
                self._cancelled()
            try:
                item = self._chunks.get(timeout=0.1)
                break
            except queue.Empty:
                continue
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
        return item

    def _cancelled(self) -> None:
        self.cancelled = True
        self.close()
        raise UploadCancelled("upload cancelled")

    def read(self, size: int | None = CHUNK_SIZE) -> bytes:
        if self._cancel is not None and self._cancel.is_set():
            self._cancelled()
        if not self._pending:
            if self._eof:
                return b""
            self._pending = self._next_chunk()
        if size is None or size < 0 or size >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        if data:
            self.meter.advance(len(data))
        return data

    def close(self) -> None:
        """Stop the reader thread (idempotent); the stream itself belongs to the caller."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def hexdigest(self) -> str:
        """The sha512 of everything read; complete once ``read`` has returned b''."""
        if not self._eof:
            raise RuntimeError("hexdigest before the end of the stream")
        return self.hash.hexdigest()


class ChunkReader:
    """A file-like ``read(n)`` over an iterator of byte chunks (a streamed image), so that
    HashingReader hashes and meters it exactly as it does a file."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending: bytes = b""
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        while self._offset >= len(self._pending):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending, self._offset = chunk, 0
        start = self._offset
        if start == 0 and (size is None or size < 0 or size >= len(self._pending)):
            self._offset = len(self._pending)  # a whole chunk: handed over, not copied
            return self._pending
        end = len(self._pending) if size is None or size < 0 else start + size
        self._offset = min(end, len(self._pending))
        return self._pending[start:self._offset]

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        close = getattr(self._chunks, "close", None)  # a generator: run its finally now
        if callable(close):
            close()


def validate_formats(disk_format: str, container_format: str) -> None:
    """BadInput unless both formats are ones Glance accepts."""
    if disk_format not in DISK_FORMATS:
        known = ", ".join(sorted(DISK_FORMATS))
        raise BadInput(f"unknown disk format {disk_format!r} (one of {known})")
    if container_format not in CONTAINER_FORMATS:
        raise BadInput(
            f"unknown container format {container_format!r} "
            f"(one of {', '.join(sorted(CONTAINER_FORMATS))})"
        )


def validate_properties(properties: dict[str, str] | None) -> dict[str, str]:
    """Properties are str -> str; return a copy."""
    props = dict(properties or {})
    for key, value in props.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise BadInput(f"image property {key!r} must be a non-empty name with a string value")
    return props


def validate_image_id(image_id: str) -> str:
    """BadInput unless image_id is a UUID; returns it in canonical (lowercase, dashed) form."""
    try:
        return str(uuid.UUID(str(image_id)))
    except ValueError:
        raise BadInput(f"not an image id (expected a UUID): {image_id!r}") from None
