"""A qcow2 (version 3) writer that produces the whole file as a front-to-back stream.

qemu-img needs a seekable target, so a qcow2 image sent straight into an upload is laid out here,
from the allocation map known before any data is read (QEMU's docs/interop/qcow2.txt):

    cluster 0        header (version 3, refcount_order 4, no extensions but the end marker)
    L1 table         one entry per L2 table's worth of guest clusters
    refcount table   one entry per refcount block
    refcount blocks  16-bit refcounts: 1 for every cluster of the file, 0 past its end
    L2 tables        only for L1 entries whose range holds data; entries point at data clusters
    data clusters    every guest cluster touching a data extent, whole, in guest order

Every cluster is referenced exactly once (refcount 1, so L1/L2 entries carry the COPIED flag) and
nothing is shared or compressed, which makes the file's size computable up front. Clusters without
data stay unallocated in their L2 table (or the whole L2 table is absent) and read as zeros.
Metadata is generated a cluster at a time and data is passed through in reads of at most 4 MiB,
so memory stays flat whatever the disk's size.

Use (with a libnbd handle on a pull-mode backup export; any extent that reads as zeros, such as
NBD block status with STATE_ZERO, may be passed with data=False):

    stream = Qcow2Stream(handle.get_size(), extents)
    upload(stream.chunks(lambda offset, length: handle.pread(length, offset)), stream.size)

The header's size is the virtual size rounded up to 512 bytes, as qemu shows an odd-sized raw
file; layouts QEMU would refuse (L1 table over 32 MiB, refcount table over 8 MiB) raise
ValueError up front.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

MAGIC = b"QFI\xfb"
VERSION = 3
REFCOUNT_ORDER = 4  # 16-bit refcounts, what qemu-img creates by default
HEADER = struct.Struct(">4sIQIIQIIQQIIQQQQII")  # the 104-byte version 3 header
COPIED = 1 << 63  # L1/L2 entry flag: the cluster's refcount is exactly one
MAX_READ = 4 << 20  # largest single read(), bytes
META_CHUNK = 1 << 20  # metadata clusters are joined into yields of about this size
SECTOR = 512
MAX_L1_BYTES = 32 << 20  # QEMU refuses larger L1 tables (QCOW_MAX_L1_SIZE)...
MAX_REFTABLE_BYTES = 8 << 20  # ...and larger refcount tables (QCOW_MAX_REFTABLE_SIZE)
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
_SWAP = sys.byteorder == "little"  # array('Q') is native-endian; qcow2 is big-endian

Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class Extent:
    """A range of the guest disk from an allocation map (NBD block status, ``qemu-img map``)."""

    offset: int  # guest offset, bytes
    length: int
    data: bool  # True: must be read and stored; False: reads as zeros, not stored


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _cluster_runs(virtual_size: int, extents: Sequence[Extent], cs: int) -> list[tuple[int, int]]:
    """Sorted, merged ``[first, end)`` guest-cluster runs touched by any data extent."""
    spans: list[tuple[int, int]] = []
    for ext in extents:
        if ext.offset < 0 or ext.length < 0:
            raise ValueError(f"bad extent {ext.offset}+{ext.length}: negative offset or length")
        end = min(ext.offset + ext.length, virtual_size)
        if ext.data and end > ext.offset:
            spans.append((ext.offset // cs, _ceil_div(end, cs)))
    spans.sort()
    return _merge(spans)


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ``[first, end)`` spans with overlapping or touching ones joined."""
    runs: list[tuple[int, int]] = []
    for first, end in spans:
        if runs and first <= runs[-1][1]:
            if end > runs[-1][1]:
                runs[-1] = (runs[-1][0], end)
        else:
            runs.append((first, end))
    return runs


def _batched(pieces: Iterable[bytes], size: int = META_CHUNK) -> Iterator[bytes]:
    """Join small pieces into chunks of about ``size`` bytes (fewer, larger writes downstream)."""
    pending: list[bytes] = []
    held = 0
    for piece in pieces:
        pending.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


def _be(table: array[int]) -> bytes:
    if _SWAP:
        table.byteswap()
    return table.tobytes()


def _tables(
    bases: Iterable[int], per: int, runs: list[tuple[int, int]], host: int, flag: int
) -> Iterator[bytes]:
    """Tables of ``per`` 64-bit entries, the one at ``base`` for entries ``base..base+per-1``.

    The clusters of ``runs`` (sorted, disjoint ``[first, end)`` entry indices) are laid out one
    after the other from file offset ``host``; their entries hold ``flag | offset``, all others 0.
    """
    cs = per * 8
    r = done = 0  # runs[r] is the next to map; ``done`` clusters were laid out before it
    for base in bases:
        top = base + per
        table = array("Q", bytes(cs))
        while r < len(runs) and runs[r][0] < top:
            first, end = runs[r]
            lo, hi = max(first, base), min(end, top)
            if lo < hi:
                start = flag + host + (done + lo - first) * cs
                table[lo - base : hi - base] = array("Q", range(start, start + (hi - lo) * cs, cs))
            if end > top:
                break
            done += end - first
            r += 1
        yield _be(table)


class Qcow2Stream:
    """Lays out a qcow2 file for ``virtual_size`` and ``extents``; ``chunks`` yields it in order."""

    def __init__(
        self, virtual_size: int, extents: Sequence[Extent], *, cluster_size: int = 65536
    ) -> None:
        bits = max(cluster_size.bit_length() - 1, 0)
        if cluster_size != 1 << bits or not MIN_CLUSTER_BITS <= bits <= MAX_CLUSTER_BITS:
            raise ValueError(f"cluster size {cluster_size}: not a power of two in 512 B..2 MiB")
        if virtual_size < 0:
            raise ValueError(f"virtual size {virtual_size}: negative")
        cs = cluster_size
        self.virtual_size = virtual_size
        self.cluster_size = cs
        self.cluster_bits = bits
        self.runs = _cluster_runs(virtual_size, extents, cs)
        self.l2_entries = cs // 8
        self.l1_size = _ceil_div(_ceil_div(virtual_size, cs), self.l2_entries)
        if self.l1_size * 8 > MAX_L1_BYTES:
            raise ValueError(f"virtual size {virtual_size}: too large for {cs}-byte clusters")
        # Runs of L1 indices that need an L2 table (kept as runs: a big disk has millions).
        per_l2 = self.l2_entries
        self.l2_runs = _merge(
            (first // per_l2, (end - 1) // per_l2 + 1) for first, end in self.runs
        )
        self.l2_tables = sum(end - first for first, end in self.l2_runs)
        self.data_clusters = sum(end - first for first, end in self.runs)
        self.data_bytes = sum(min(end * cs, virtual_size) - first * cs for first, end in self.runs)
        l1_clusters = _ceil_div(self.l1_size * 8, cs)
        fixed = 1 + l1_clusters + self.l2_tables + self.data_clusters
        # The refcount blocks count themselves and the table that points at them: iterate to the
        # fixed point (it only grows, and settles within a couple of rounds).
        per_block = cs * 8 >> REFCOUNT_ORDER
        rt_clusters = rb_clusters = 1
        while True:
            total = fixed + rt_clusters + rb_clusters
            rb_need = _ceil_div(total, per_block)
            rt_need = _ceil_div(rb_need * 8, cs)
            if (rb_need, rt_need) == (rb_clusters, rt_clusters):
                break
            rb_clusters, rt_clusters = max(rb_need, rb_clusters), max(rt_need, rt_clusters)
        if rt_clusters * cs > MAX_REFTABLE_BYTES:
            raise ValueError(f"image of {total} clusters: too large for {cs}-byte clusters")
        self.total_clusters = total
        self.l1_offset = cs if self.l1_size else 0
        self.rt_offset = cs * (1 + l1_clusters)
        self.rt_clusters = rt_clusters
        self.rb_offset = self.rt_offset + cs * rt_clusters
        self.rb_clusters = rb_clusters
        self.l2_offset = self.rb_offset + cs * rb_clusters
        self.data_offset = self.l2_offset + cs * self.l2_tables
        self.size = cs * total

    # -- metadata, one cluster at a time ---------------------------------------------------

    def _header(self) -> bytes:
        # QEMU keeps a qcow2 disk's size in whole sectors, rounding the header's size down, and
        # shows an odd-sized raw file rounded up (zeros past its end): round up the same way, the
        # size qemu-img convert gives such a source; the bytes past virtual_size read as zeros.
        size = _ceil_div(self.virtual_size, SECTOR) * SECTOR
        head = HEADER.pack(
            MAGIC, VERSION, 0, 0, self.cluster_bits, size, 0,
            self.l1_size, self.l1_offset, self.rt_offset, self.rt_clusters, 0, 0,
            0, 0, 0, REFCOUNT_ORDER, HEADER.size,
        )  # fmt: skip
        # The header extension list ends with an all-zero (type 0, length 0) marker: the padding.
        return head + bytes(self.cluster_size - len(head))

    def _l1(self) -> Iterator[bytes]:
        per = self.l2_entries
        return _tables(range(0, self.l1_size, per), per, self.l2_runs, self.l2_offset, COPIED)

    def _refcount_table(self) -> Iterator[bytes]:
        per = self.cluster_size // 8
        bases = range(0, self.rt_clusters * per, per)
        return _tables(bases, per, [(0, self.rb_clusters)], self.rb_offset, 0)

    def _refcount_blocks(self) -> Iterator[bytes]:
        per = self.cluster_size * 8 >> REFCOUNT_ORDER
        one = (1).to_bytes(1 << REFCOUNT_ORDER >> 3, "big")
        full = one * per
        for first in range(0, self.rb_clusters * per, per):
            used = max(0, min(per, self.total_clusters - first))
            yield full if used == per else one * used + bytes(len(one) * (per - used))

    def _l2(self) -> Iterator[bytes]:
        per = self.l2_entries
        bases = (index * per for first, end in self.l2_runs for index in range(first, end))
        return _tables(bases, per, self.runs, self.data_offset, COPIED)

    def _metadata(self) -> Iterator[bytes]:
        yield self._header()
        yield from self._l1()
        yield from self._refcount_table()
        yield from self._refcount_blocks()
        yield from self._l2()

    # -- the stream -----------------------------------------------------------------------

    def chunks(self, read: Reader) -> Iterator[bytes]:
        """Yield the whole file in order; ``read(offset, length)`` is called for data only."""
        yield from _batched(self._metadata())
        cs, vsize = self.cluster_size, self.virtual_size
        for first, end in self.runs:
            pos, stop = first * cs, min(end * cs, vsize)
            while pos < stop:
                length = min(MAX_READ, stop - pos)
                buf = read(pos, length)
                if len(buf) != length:
                    raise ValueError(f"read at {pos} returned {len(buf)} bytes, expected {length}")
                yield buf if isinstance(buf, bytes) else bytes(buf)
                pos += length
            if end * cs > stop:  # the last cluster past the virtual size: zero padding
                yield bytes(end * cs - stop)
