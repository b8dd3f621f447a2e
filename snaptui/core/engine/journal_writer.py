"""Appending to a job's journal on a disk that may fill up under it.

The default scratch dir shares the state dir's filesystem, so a ``qemu-img`` that fills scratch
fills the journal's too. The writer therefore keeps room reserved past the journal's end (blocks
allocated with ``fallocate(FALLOC_FL_KEEP_SIZE)``: the file's size is unchanged, readers see
nothing, and an append into them needs no free space). When the disk is full the reserve is
kept for the records that matter (step boundaries, facts, "guest restarted"): progress lines
are dropped. A write that fails anyway raises, and is counted: the next record that gets
through is preceded by a note saying how many were lost. Each record is one ``write`` of whole
bytes; a record cut by a full disk is ended by a newline before the next one, so readers skip
just the torn line.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from snaptui.core.paths import sync_dir

log = logging.getLogger(__name__)

RESERVE_BYTES = 64 * 1024  # ~300 records: more than any rollback writes
FALLOC_FL_KEEP_SIZE = 0x01  # linux/falloc.h


def _fallocate_fn() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    fn = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _fallocate_fn()


def reserve_tail(fd: int, offset: int, length: int) -> int:
    """Allocate ``length`` bytes past ``offset`` without changing the file's size; 0, or the
    errno (EOPNOTSUPP where the filesystem cannot, ENOSPC when the disk is full)."""
    if _FALLOCATE is None:
        return errno.EOPNOTSUPP
    if _FALLOCATE(fd, FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return 0
    return ctypes.get_errno() or errno.EIO


class JournalWriter:
    """Appends events to one job's journal; thread-safe (progress comes from worker threads).

    Opening never writes more than one newline (ending a torn line), and never fails for a
    full disk: the problem shows on the first append."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        existed = path.exists()
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if not existed:
            sync_dir(path.parent)  # the new journal's name is durable, not just its lines
        self._torn = False  # the last record was cut: the next one starts a line of its own
        self._reserved_to = 0  # the reserve reaches this offset
        self._low = False  # the reserve could not be renewed: progress lines are dropped
        self.lost = 0  # records that could not be written
        self.last_error: str | None = None
        size = os.fstat(self._fd).st_size
        self._torn = bool(size) and os.pread(self._fd, 1, size - 1) != b"\n"
        self._renew_reserve()

    def _renew_reserve(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if self._reserved_to - size >= RESERVE_BYTES // 2:
            return
        err = reserve_tail(self._fd, size, RESERVE_BYTES)
        if err == 0:
            self._reserved_to, self._low = size + RESERVE_BYTES, False
        elif err == errno.ENOSPC:
            self._low = True
        else:  # not on this filesystem (NFS, ...): appends then need free space like any
            self._reserved_to = 1 << 62
            log.info("journal %s: no room can be reserved here (%s)", self.path.name,
                     os.strerror(err))

    def append(self, event: str, *, sync: bool = True, **fields: Any) -> dict[str, Any]:
        """Append one event (fsynced unless ``sync`` is false: progress). Raises OSError when
        it cannot be written; a progress line is instead dropped while the disk is full."""
        record = {"t": round(time.time(), 3), "event": event, **fields}
        with self._lock:
            if not sync and (self._low or self.lost):
                return record  # the reserve is for step boundaries, not progress
            if self.lost:
                lost = self.lost
                try:
                    self._write({"t": record["t"], "event": "note",
                                 "text": f"{lost} journal record(s) could not be written "
                                         f"({self.last_error})"})
                except OSError:
                    self.lost = lost + 1  # this record is lost too, not the note
                    raise
                self.lost = 0
            self._write(record)
            if sync:
                assert self._fd is not None
                os.fsync(self._fd)
                self._renew_reserve()
        return record

    def _write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            raise ValueError(f"journal {self.path.name} is closed")
        data = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode()
        if self._torn:
            data = b"\n" + data
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self._torn = bool(view)
        except OSError as err:
            self.lost += 1
            self.last_error = err.strerror or str(err)
            raise

    def try_append(self, event: str, **fields: Any) -> bool:
        """``append`` for a path that must go on whatever the disk says (rollback, recover):
        False when the record could not be written (logged; counted for the next one)."""
        try:
            self.append(event, **fields)
        except OSError as err:
            log.warning("journal %s: could not record %s: %s", self.path.name, event,
                        err.strerror or err)
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
