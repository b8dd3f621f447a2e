"""Lab helpers shared by the benchmarks: bench domains with seeded disks, cache eviction,
scratch sampling, lifecycle-event downtime, a glanceclient on the lab's clouds.yaml, stats.

Everything a benchmark makes is named ``snaptui-bench-*`` and removed again by its owner.
"""

from __future__ import annotations

import mmap
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import humanize
import libvirt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from lab_domains import LabDomain, domain_xml  # noqa: E402

from snaptui.core.libvirt.events import DomainEvent, DomainEventWatcher  # noqa: E402

# libvirt prints every error it raises to stderr unless a handler is registered; the
# benchmarks catch and report the ones that matter ("no active block job" is expected).
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

BENCH_PREFIX = "snaptui-bench-"
MiB = 1024 * 1024
CHUNK = 4 * MiB
DOWN_EVENTS = ("suspended", "stopped")
UP_EVENTS = ("resumed", "started")


# ---------------------------------------------------------------- sizes and stats

def parse_size(text: str) -> int:
    """'2G', '256M', '1.5G', '4096' -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"bad size {text!r}")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024**power)


def h(n: float | None) -> str:
    return "-" if n is None else humanize.naturalsize(n, binary=True, format="%.2f")


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def spread(values: Iterable[float | None]) -> str:
    vals = sorted(v for v in values if v is not None)
    return f"{vals[0]:.2f}–{vals[-1]:.2f}" if len(vals) > 1 else ""


def rate(nbytes: float, seconds: float | None) -> float | None:
    return nbytes / seconds if seconds else None


def mbps(bytes_per_s: float | None) -> str:
    return "-" if bytes_per_s is None else f"{bytes_per_s / MiB:.0f} MiB/s"


# ---------------------------------------------------------------- disks and domains

def write_content(path: Path, nbytes: int, content: str) -> None:
    """Raw data file: ``random`` (incompressible), ``pattern`` (one byte repeated) or ``mixed``
    (every 64 KiB: 32 KiB random + 32 KiB of repeated text, about 2:1 with zlib/zstd)."""
    text = (b"snaptui benchmark: the quick brown fox jumps over the lazy dog 0123456789\n" * 512)
    with open(path, "wb") as out:
        left = nbytes
        while left > 0:
            n = min(CHUNK, left)
            if content == "random":
                block = os.urandom(n)
            elif content == "pattern":
                block = b"\xab" * n
            else:
                block = b"".join(os.urandom(32768) + text[:32768] for _ in range(CHUNK // 65536))
                block = block[:n]
            out.write(block)
            left -= n
        out.flush()
        os.fsync(out.fileno())


def make_seeded_qcow2(path: Path, size: int, data: int, content: str) -> Path:
    """A ``size`` qcow2 whose first ``data`` bytes hold ``content`` (the rest unallocated)."""
    raw = path.with_suffix(".seed.raw")
    try:
        write_content(raw, data, content)
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                       check=True)
    finally:
        raw.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "resize", "-q", "-f", "qcow2", str(path), str(size)], check=True)
    return path


def create_bench_domain(conn: libvirt.virConnect, workdir: Path, *, size: int, data: int,
                        content: str) -> LabDomain:
    """A running ``snaptui-bench-*`` domain (no OS, SeaBIOS idles) on a seeded qcow2 disk.
    ``workdir`` is opened to 0711: QEMU runs as libvirt-qemu, as on a stock host, and must
    enter it (a TemporaryDirectory is 0700)."""
    workdir.chmod(0o711)
    name = BENCH_PREFIX + uuid.uuid4().hex[:8]
    disk = make_seeded_qcow2(workdir / f"{name}-vda.qcow2", size, data, content)
    lab = LabDomain(conn, name, [("vda", disk, "qcow2")])
    try:
        conn.defineXML(domain_xml(name, lab.disks))
        lab.set_state("running")
    except BaseException:
        lab.remove()
        raise
    return lab


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def evict(path: Path) -> None:
    """Drop this one file's pages from the page cache (fsync, then POSIX_FADV_DONTNEED):
    the next read comes from the disk, without dropping the whole machine's caches."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_direct(path: Path) -> tuple[int, float]:
    """Sequential O_DIRECT read of the whole file in 4 MiB aligned blocks: (bytes, seconds)."""
    buf = mmap.mmap(-1, CHUNK)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    total, t0 = 0, time.monotonic()
    try:
        while n := os.readv(fd, [buf]):
            total += n
    finally:
        os.close(fd)
        buf.close()
    return total, time.monotonic() - t0


def read_buffered_cold(path: Path) -> tuple[int, float]:
    """Sequential buffered read after evicting the file from the page cache."""
    evict(path)
    total, t0 = 0, time.monotonic()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(CHUNK):
            total += len(block)
    return total, time.monotonic() - t0


def write_direct(path: Path, nbytes: int) -> float:
    """Sequential O_DIRECT write of ``nbytes`` random bytes, then fsync; seconds. Removes it."""
    buf = mmap.mmap(-1, CHUNK)
    buf.write(os.urandom(CHUNK))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
    try:
        t0 = time.monotonic()
        left = nbytes
        while left > 0:
            left -= os.writev(fd, [buf])
        os.fsync(fd)
        return time.monotonic() - t0
    finally:
        os.close(fd)
        buf.close()
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- sampling

def dir_allocated(directory: Path) -> int:
    total = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            total += entry.stat(follow_symlinks=False).st_blocks * 512
        except FileNotFoundError:
            pass
    return total


class ScratchSampler(threading.Thread):
    """Peak allocated bytes of one directory, sampled every 20 ms until ``finish()``."""

    def __init__(self, directory: Path) -> None:
        super().__init__(daemon=True)
        self.directory, self.peak, self._done = directory, 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, dir_allocated(self.directory))
            time.sleep(0.02)

    def __enter__(self) -> ScratchSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join()
        self.peak = max(self.peak, dir_allocated(self.directory))


class EventLog:
    """Every lifecycle event on the lab's URI, kept for downtime windows."""

    def __init__(self, uri: str | None) -> None:
        self._events: list[DomainEvent] = []
        self._lock = threading.Lock()
        self._watcher = DomainEventWatcher(uri, self._add)

    def _add(self, ev: DomainEvent) -> None:
        with self._lock:
            self._events.append(ev)

    def __enter__(self) -> EventLog:
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._watcher.stop()

    def window(self, domain: str, t0: float, t1: float) -> dict[str, Any]:
        """Downtime (first down event to the next up event, summed) and pause count between
        monotonic ``t0`` and ``t1``; waits briefly for late events first."""
        time.sleep(0.3)
        with self._lock:
            evs = [e for e in self._events if e.kind == "lifecycle" and e.domain == domain
                   and t0 <= e.monotonic <= t1 + 0.3]
        down_at, total, pauses = None, 0.0, 0
        for ev in evs:
            if ev.event in DOWN_EVENTS and down_at is None:
                down_at, pauses = ev.monotonic, pauses + 1
            elif ev.event in UP_EVENTS and down_at is not None:
                total += ev.monotonic - down_at
                down_at = None
        return {"downtime_s": total, "pauses": pauses,
                "events": [f"{e.event}/{e.detail}" for e in evs]}


def machine_note() -> str:
    """Load average and other busy work seen on the machine (the lab is shared)."""
    load = Path("/proc/loadavg").read_text().split()[:3]
    others: dict[str, int] = {}
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = b" ".join(argv[:3]).decode(errors="replace")
        for key in ("pytest", "qemu-img", "qemu-system", "snaptui.core.engine.job_main"):
            if key in words and BENCH_PREFIX not in words:
                others[key] = others.get(key, 0) + 1
    busy = ", ".join(f"{n}× {k}" for k, n in sorted(others.items())) or "none"
    return f"load average {' '.join(load)}; other processes: {busy}"


# ---------------------------------------------------------------- glance

@dataclass
class Glance:
    """glanceclient v2 on a keystoneauth session from clouds.yaml (OS_CLIENT_CONFIG_FILE,
    OS_CLOUD), as ``openstack image create`` builds it."""

    client: Any

    @classmethod
    def connect(cls) -> Glance:
        import glanceclient
        from openstack.config import OpenStackConfig

        cloud = OpenStackConfig().get_one(cloud=os.environ.get("OS_CLOUD"))
        client = glanceclient.Client(
            "2", session=cloud.get_session(), interface=cloud.get_interface() or "public",
            region_name=cloud.region_name or None)
        return cls(client)

    def create_upload(self, name: str, path: Path, disk_format: str) -> tuple[str, float]:
        """``openstack image create --file``: create, upload, wait until active.
        Returns (image id, seconds spent uploading). The caller deletes the image."""
        image = self.client.images.create(name=name, disk_format=disk_format,
                                          container_format="bare")
        try:
            t0 = time.monotonic()
            with open(path, "rb") as data:
                self.client.images.upload(image["id"], data, image_size=path.stat().st_size)
            while (status := self.client.images.get(image["id"])["status"]) != "active":
                if status in ("killed", "deleted"):
                    raise RuntimeError(f"image {image['id']} went {status}")
                time.sleep(0.05)
            return image["id"], time.monotonic() - t0
        except BaseException:
            self.delete(image["id"])
            raise

    def delete(self, image_id: str | None) -> None:
        if not image_id:
            return
        try:
            self.client.images.delete(image_id)
        except Exception as err:  # noqa: BLE001 - already gone is fine; report anything else
            if "404" not in str(err) and "not found" not in str(err).lower():
                print(f"warning: could not delete image {image_id}: {err}", file=sys.stderr)
