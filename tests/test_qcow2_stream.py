"""The streaming qcow2 writer against the real qemu-img: every disk shape, checked and compared.

Each case builds a source image with qemu-img/qemu-io, takes its allocation map from
``qemu-img map --output=json`` (or a hand-made map), streams the writer's output into a file and
asserts: ``qemu-img check`` clean, ``qemu-img compare`` identical to the source, ``qemu-img info``
says qcow2 / compat 1.1 / the source's virtual size, the file is exactly ``size`` bytes, reads
touched only clusters holding data (whole, ascending, at most 4 MiB each, never past the end), and
the output stores exactly those clusters.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import struct
import subprocess
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import pytest
from fault_tools import wait_until
from oslo_utils.imageutils import format_inspector

from snaptui.core.disk.qcow2_stream import MAX_READ, Extent, Qcow2Stream

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def create(path: Path, size: int, fmt: str = "raw", *opts: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *opts, str(path), str(size)], check=True)
    return path


def qemu_io(path: Path, fmt: str, *commands: str) -> None:
    argv = ["qemu-io", "-f", fmt]
    for command in commands:
        argv += ["-c", command]
    subprocess.run([*argv, str(path)], check=True, capture_output=True)


def noisy(tmp_path: Path, *spans: tuple[int, int]) -> list[str]:
    """qemu-io commands writing distinct random bytes at each ``(offset, length)``: with a fixed
    pattern, clusters swapped within a write would still compare equal."""
    commands = []
    for offset, length in spans:
        source = tmp_path / f"noise-{offset}-{length}"
        source.write_bytes(random.Random(f"{offset}/{length}").randbytes(length))
        commands.append(f"write -s {source} {offset} {length}")
    return commands


def info(path: Path, fmt: str) -> dict:
    return json.loads(run("qemu-img", "info", "--output=json", "-f", fmt, str(path)).stdout)


def allocation_map(path: Path | str, fmt: str) -> list[Extent]:
    out = run("qemu-img", "map", "--output=json", "-f", fmt, str(path))
    assert out.returncode == 0, out.stderr
    return [Extent(e["start"], e["length"], e["data"]) for e in json.loads(out.stdout)]


def raw_view(tmp_path: Path, src: Path, fmt: str) -> Path:
    """The guest view of ``src`` (its whole backing chain) as a sparse raw file to read from."""
    if fmt == "raw":
        return src
    view = tmp_path / f"{src.name}.view.raw"
    subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", str(src), str(view)], check=True)
    return view


def data_clusters(extents: Sequence[Extent], virtual_size: int, cs: int) -> set[int]:
    """Clusters touching a data extent, computed independently of the writer."""
    touched: set[int] = set()
    for e in extents:
        end = min(e.offset + e.length, virtual_size)
        if e.data and end > e.offset:
            touched.update(range(e.offset // cs, (end + cs - 1) // cs))
    return touched


def refcounts(path: Path) -> list[int]:
    """Every 16-bit refcount the file declares, read from its own refcount table and blocks."""
    with path.open("rb") as f:
        header = f.read(104)
        cluster_size = 1 << struct.unpack(">I", header[20:24])[0]
        rt_offset, rt_clusters = struct.unpack(">QI", header[48:60])
        assert struct.unpack(">I", header[96:100])[0] == 4  # refcount_order
        f.seek(rt_offset)
        table = f.read(rt_clusters * cluster_size)
        counts: list[int] = []
        for (block,) in struct.iter_unpack(">Q", table):
            if block:
                f.seek(block)
                counts += [c for (c,) in struct.iter_unpack(">H", f.read(cluster_size))]
        return counts


def glance_inspects(path: Path) -> int:
    """What Glance does to an upload of disk_format qcow2 (glance/location.py): oslo.utils'
    InspectWrapper over the stream, exactly one format matched, its safety checks; the virtual
    size it computed. Only the first 4 MiB are fed: every inspector decides within its first MiB
    (qcow2 from its header, GPT/MBR at 512, ISO at 32 KiB, VHDX at 64 KiB...)."""
    with path.open("rb") as f:
        wrapper = format_inspector.InspectWrapper(io.BytesIO(f.read(4 * MiB)))
    try:
        for _ in wrapper:
            pass
    finally:
        wrapper.close()
    assert [str(i) for i in wrapper.formats or ()] == ["qcow2"]
    inspector = wrapper.format
    assert inspector is not None
    inspector.safety_check()
    return int(inspector.virtual_size)


def stream_and_check(
    tmp_path: Path,
    src: Path,
    fmt: str,
    *,
    cluster_size: int = 65536,
    extents: Sequence[Extent] | None = None,
    view: Path | None = None,
) -> Qcow2Stream:
    view = view or raw_view(tmp_path, src, fmt)
    virtual_size = info(src, fmt)["virtual-size"]
    if fmt == "raw":
        virtual_size = src.stat().st_size  # the exact byte count, odd sizes included
    if extents is None:
        extents = allocation_map(src, fmt)
    stream = Qcow2Stream(virtual_size, extents, cluster_size=cluster_size)
    reads: list[tuple[int, int]] = []
    fd = os.open(view, os.O_RDONLY)

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return os.pread(fd, length, offset)

    out = tmp_path / f"out-{cluster_size}.qcow2"
    biggest = 0
    try:
        with out.open("wb") as f:
            for chunk in stream.chunks(read):
                biggest = max(biggest, len(chunk))
                f.write(chunk)
    finally:
        os.close(fd)

    assert out.stat().st_size == stream.size
    assert biggest <= MAX_READ
    check = run("qemu-img", "check", "--output=json", "-f", "qcow2", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    for key in ("check-errors", "corruptions", "leaks", "corruptions-fixed", "leaks-fixed"):
        assert report.get(key, 0) == 0, report
    assert report["image-end-offset"] == stream.size
    # qemu-img check ignores refcounts past the end of the file: count them all here.
    counts = refcounts(out)
    clusters = stream.size // cluster_size
    assert counts[:clusters] == [1] * clusters and not any(counts[clusters:])
    compare = run("qemu-img", "compare", "-f", "qcow2", "-F", fmt, str(out), str(src))
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert "identical" in compare.stdout
    got = info(out, "qcow2")
    assert got["format"] == "qcow2"
    assert got["virtual-size"] == info(src, fmt)["virtual-size"]
    assert got["cluster-size"] == cluster_size
    assert got["format-specific"]["data"]["compat"] == "1.1"
    assert got["format-specific"]["data"]["refcount-bits"] == 16
    assert glance_inspects(out) == got["virtual-size"]
    with out.open("rb") as head:  # the header's size: whole sectors, as qemu shows an odd raw file
        assert struct.unpack(">Q", head.read(32)[24:32])[0] == -(-virtual_size // 512) * 512

    # Reads: whole data clusters only, ascending, never overlapping, never past the end.
    cs = cluster_size
    wanted = data_clusters(extents, virtual_size, cs)
    read_clusters: set[int] = set()
    last_end = 0
    for offset, length in reads:
        assert offset % cs == 0 and offset >= last_end
        assert 0 < length <= MAX_READ and offset + length <= virtual_size
        assert length % cs == 0 or offset + length == virtual_size
        last_end = offset + length
        read_clusters.update(range(offset // cs, (offset + length + cs - 1) // cs))
    assert read_clusters == wanted
    assert sum(length for _, length in reads) == stream.data_bytes
    assert stream.data_bytes == sum(min(cs, virtual_size - c * cs) for c in wanted)
    # ...and the output stores exactly those clusters (zero ones are not stored).
    assert data_clusters(allocation_map(out, "qcow2"), virtual_size, cs) == wanted
    # Contiguous data clusters are coalesced: no two reads could have been one.
    for (a, n), (b, _) in zip(reads, reads[1:], strict=False):
        assert a + n < b or n == MAX_READ
    return stream


# ------------------------------------------------------------------ shapes


def test_empty_disk_stores_no_data(tmp_path: Path) -> None:
    src = create(tmp_path / "empty.qcow2", 64 * MiB, "qcow2")
    stream = stream_and_check(tmp_path, src, "qcow2")
    assert stream.data_bytes == 0
    assert stream.size == 4 * 65536  # header, L1, refcount table, one refcount block


def test_empty_map_of_a_raw_disk(tmp_path: Path) -> None:
    # qemu-img map reports a fresh raw file's first 4 KiB as data (qemu allocates it to probe
    # alignment): with an empty map nothing is read at all.
    src = create(tmp_path / "empty.raw", 64 * MiB)
    assert allocation_map(src, "raw")[0].data
    stream = stream_and_check(tmp_path, src, "raw", extents=[])
    assert stream.data_bytes == 0
    assert stream.size == 4 * 65536


def test_zero_sized_disk(tmp_path: Path) -> None:
    src = create(tmp_path / "zero.qcow2", 0, "qcow2")
    stream = stream_and_check(tmp_path, src, "qcow2")
    assert stream.data_bytes == 0


@pytest.mark.parametrize("cluster_size", [512, 4096, 65536, 2 * MiB])
def test_fully_allocated(tmp_path: Path, cluster_size: int) -> None:
    # 512 B clusters: 8 L1 clusters and 3 refcount table clusters for 16 MiB.
    src = create(tmp_path / "full.raw", 16 * MiB)
    qemu_io(src, "raw", *noisy(tmp_path, (0, 7 * MiB), (7 * MiB, 9 * MiB)))
    stream = stream_and_check(tmp_path, src, "raw", cluster_size=cluster_size)
    assert stream.data_bytes == 16 * MiB
    if cluster_size == 512:
        assert stream.l1_offset == 512 and stream.rt_offset == 9 * 512
        assert stream.rt_clusters > 1


@pytest.mark.parametrize("cluster_size", [65536, 2 * MiB])
def test_fragmented_qcow2_source(tmp_path: Path, cluster_size: int) -> None:
    src = create(tmp_path / "frag.qcow2", 256 * MiB, "qcow2")
    rng = random.Random(15)
    spans = [
        (rng.randrange(0, 256 * MiB - 8 * KiB, 512), rng.randrange(1, 16) * 512) for _ in range(300)
    ]
    qemu_io(src, "qcow2", *noisy(tmp_path, *spans))
    stream = stream_and_check(tmp_path, src, "qcow2", cluster_size=cluster_size)
    assert stream.data_bytes > 0


@pytest.mark.parametrize("cluster_size", [4096, 65536])
def test_data_at_5_gib_of_6_gib(tmp_path: Path, cluster_size: int) -> None:
    src = create(tmp_path / "big.raw", 6 * GiB)
    qemu_io(src, "raw", *noisy(tmp_path, (0, MiB), (5 * GiB, 3 * MiB), (6143 * MiB, MiB)))
    stream = stream_and_check(tmp_path, src, "raw", cluster_size=cluster_size)
    assert stream.data_bytes == 5 * MiB
    if cluster_size == 4096:  # 1 GiB of guest per L1 cluster: the L1 table spans 6 clusters
        assert stream.l1_size == 6 * 512


def test_qcow2_source_beyond_4_tib_needs_two_l1_clusters(tmp_path: Path) -> None:
    src = create(tmp_path / "huge.qcow2", 5 * TiB, "qcow2")
    qemu_io(src, "qcow2", *noisy(tmp_path, (0, 64 * KiB), (4700 * GiB, 192 * KiB)))
    extents = allocation_map(src, "qcow2")
    stream = Qcow2Stream(5 * TiB, extents)
    assert stream.l1_size == 10240 and stream.rt_offset - stream.l1_offset == 2 * 65536
    stream_and_check(tmp_path, src, "qcow2", extents=extents)


@pytest.mark.parametrize(
    "size", [GiB + 512, 3 * MiB + 4097, 4097, 65536 + 1], ids=["1G+512", "3M+4097", "4097", "64K+1"]
)
def test_odd_virtual_sizes(tmp_path: Path, size: int) -> None:
    src = tmp_path / "odd.raw"
    with src.open("wb") as f:
        f.truncate(size)
        f.seek(size - 3)
        f.write(b"END")
        f.seek(0)
        f.write(b"START")
    stream = stream_and_check(tmp_path, src, "raw")
    assert stream.size % 65536 == 0  # the last cluster is padded with zeros


def test_unaligned_unsorted_overlapping_extents(tmp_path: Path) -> None:
    src = create(tmp_path / "spots.raw", 8 * MiB)
    spans = [(70000, 10), (131000, 2000), (5000000, 300000), (8388000, 100)]
    qemu_io(src, "raw", *noisy(tmp_path, *spans))
    extents = [
        Extent(5000000, 200000, True),
        Extent(69999, 12, True),
        Extent(130000, 4000, True),  # crosses the cluster boundary at 131072
        Extent(5100000, 200000, True),  # overlaps the first
        Extent(0, 69999, False),
        Extent(8388000, 200, True),  # runs past the end of the disk: clipped
        Extent(6 * MiB, MiB, False),
    ]
    stream = stream_and_check(tmp_path, src, "raw", extents=extents)
    assert stream.runs[0] == (1, 3)  # 69999..70011 touches cluster 1; 130000..134000 1 and 2


@pytest.mark.parametrize("seed", range(12))
def test_random_maps(tmp_path: Path, seed: int) -> None:
    # A random disk and a random hand-made map (unaligned, overlapping, unsorted, data and zero
    # extents, some past the end); the source holds random bytes exactly in the data extents.
    rng = random.Random(seed)
    cluster_size = rng.choice([512, 4096, 65536, 2 * MiB])
    size = rng.randrange(1, 48 * MiB)
    extents = [
        Extent(rng.randrange(size + 4096), rng.choice([1, 511, 4097, rng.randrange(4 * MiB)]),
               rng.random() < 0.6)
        for _ in range(rng.randrange(0, 40))
    ]  # fmt: skip
    src = tmp_path / "random.raw"
    with src.open("wb") as f:
        f.truncate(size)
        for e in extents:
            if e.data and e.offset < size:
                f.seek(e.offset)
                f.write(rng.randbytes(min(e.length, size - e.offset)))
    stream_and_check(tmp_path, src, "raw", cluster_size=cluster_size, extents=extents)


def test_zero_extent_between_data(tmp_path: Path) -> None:
    src = create(tmp_path / "zeroed.qcow2", 32 * MiB, "qcow2")
    qemu_io(src, "qcow2", *noisy(tmp_path, (0, 24 * MiB)), "write -z 8M 8M")
    extents = allocation_map(src, "qcow2")
    assert any(not e.data and e.offset == 8 * MiB for e in extents)
    stream = stream_and_check(tmp_path, src, "qcow2")
    assert stream.data_bytes == 16 * MiB
    assert len(stream.runs) == 2


def test_backing_chain_read_as_one_image(tmp_path: Path) -> None:
    base = create(tmp_path / "base.qcow2", 64 * MiB, "qcow2")
    qemu_io(base, "qcow2", *noisy(tmp_path, (0, 16 * MiB), (40 * MiB, 8 * MiB)))
    overlay = create(tmp_path / "overlay.qcow2", 64 * MiB, "qcow2", "-b", str(base), "-F", "qcow2")
    writes = noisy(tmp_path, (4 * MiB, MiB), (60 * MiB, 100 * KiB))
    qemu_io(overlay, "qcow2", writes[0], "write -z 42M 2M", writes[1])
    stream = stream_and_check(tmp_path, overlay, "qcow2")
    assert stream.data_bytes == (16 + 6) * MiB + 128 * KiB


def test_backing_chain_over_a_read_only_nbd_export(tmp_path: Path) -> None:
    # The streaming path's shape: the allocation map is NBD block status (qemu-img map over the
    # export) and every byte is read over NBD, here from qemu-nbd serving an overlay + base chain.
    base = create(tmp_path / "base.qcow2", 48 * MiB, "qcow2")
    qemu_io(base, "qcow2", *noisy(tmp_path, (0, 8 * MiB), (30 * MiB, 5 * MiB)))
    overlay = create(tmp_path / "top.qcow2", 48 * MiB, "qcow2", "-b", str(base), "-F", "qcow2")
    writes = noisy(tmp_path, (2 * MiB + 100, 3000), (47 * MiB, MiB))
    qemu_io(overlay, "qcow2", writes[0], "write -z 31M 1M", writes[1])
    sock = tmp_path / "nbd.sock"
    server = subprocess.Popen(
        ["qemu-nbd", "--read-only", "--persistent", "-f", "qcow2", "-k", str(sock), str(overlay)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: sock.exists() or server.poll() is not None, 5, "qemu-nbd's socket",
                   poll=0.01)
        assert server.poll() is None, "qemu-nbd exited"
        url = f"nbd+unix:///?socket={sock}"
        extents = allocation_map(url, "raw")
        assert [e.data for e in extents] == [True, False, True, False, True, False, True]
        view = tmp_path / "over-nbd.raw"
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "raw", url, str(view)], check=True
        )
    finally:
        server.terminate()
        server.wait(10)
    stream = stream_and_check(tmp_path, overlay, "qcow2", extents=extents, view=view)
    assert stream.data_bytes == (8 + 4 + 1) * MiB


def test_short_read_raises(tmp_path: Path) -> None:
    src = create(tmp_path / "short.raw", 16 * MiB)
    qemu_io(src, "raw", "write -P 0x42 0 16M")
    os.truncate(src, 10 * MiB)  # the map promises 16 MiB of data, the file holds 10
    stream = Qcow2Stream(16 * MiB, [Extent(0, 16 * MiB, True)])
    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="returned 2097152 bytes, expected 4194304"):
            for _ in stream.chunks(lambda offset, length: os.pread(fd, length, offset)):
                pass
    finally:
        os.close(fd)


def test_long_read_raises(tmp_path: Path) -> None:
    src = create(tmp_path / "long.raw", 4 * MiB)
    stream = Qcow2Stream(MiB, [Extent(0, MiB, True)])  # the map says 1 MiB, the reader hands 4
    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="returned 4194304 bytes, expected 1048576"):
            for _ in stream.chunks(lambda offset, length: os.pread(fd, 4 * MiB, offset)):
                pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("clusters", range(240, 256))
def test_refcount_block_boundary(tmp_path: Path, clusters: int) -> None:
    # 512 B clusters: one refcount block counts 256 clusters, and a full disk of about 250
    # clusters makes the file cross that boundary (the blocks must count themselves too).
    src = tmp_path / "edge.raw"
    src.write_bytes(random.Random(clusters).randbytes(clusters * 512))
    stream_and_check(tmp_path, src, "raw", cluster_size=512)


@pytest.mark.parametrize("cluster_size", [512, 4096, 65536])
def test_refcount_structures_are_minimal_and_sufficient(cluster_size: int) -> None:
    per_block = cluster_size // 2  # 16-bit refcounts
    per_table = cluster_size // 8
    rng = random.Random(cluster_size)
    sizes = [
        *range(0, 300 * cluster_size, cluster_size // 3),
        *(rng.randrange(cluster_size << 27) for _ in range(300)),
    ]
    for size in sizes:
        for extents in ([Extent(0, size, True)], [Extent(size // 3, size // 5 + 1, True)], []):
            s = Qcow2Stream(size, extents, cluster_size=cluster_size)
            total = s.size // cluster_size
            assert (s.rb_clusters - 1) * per_block < total <= s.rb_clusters * per_block
            assert (s.rt_clusters - 1) * per_table < s.rb_clusters <= s.rt_clusters * per_table
            assert s.data_offset + s.data_clusters * cluster_size == s.size


def test_layout_of_a_huge_disk_is_small_and_lazy() -> None:
    # 1 PiB fully allocated at 64 KiB clusters (2 M L2 tables, 32 GiB of refcount blocks) and
    # 100 GiB at 512 B clusters: the layout is kept as runs, the metadata made a cluster at a time.
    tracemalloc.start()
    try:
        for size, cs in ((1 << 50, 65536), (100 << 30, 512)):
            stream = Qcow2Stream(size, [Extent(0, size, True)], cluster_size=cs)
            assert stream.data_bytes == size and stream.l2_tables == size // cs // (cs // 8)
            chunks = stream.chunks(lambda offset, length: pytest.fail("read during metadata"))
            assert sum(len(chunk) for chunk in itertools.islice(chunks, 3)) >= 2 * MiB
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB, peak


def test_largest_l1_table_qemu_opens(tmp_path: Path) -> None:
    # 128 GiB at 512 B clusters: an L1 table of exactly QEMU's 32 MiB limit (one byte more raises).
    stream = Qcow2Stream(128 * GiB, [Extent(127 * GiB + 7, 100, True)], cluster_size=512)
    assert stream.l1_size * 8 == 32 * MiB
    out = tmp_path / "l1max.qcow2"
    with out.open("wb") as f:
        for chunk in stream.chunks(lambda offset, length: b"\x11" * length):
            f.write(chunk)
    check = run("qemu-img", "check", "-f", "qcow2", str(out))
    assert check.returncode == 0 and "No errors" in check.stdout, check.stdout + check.stderr
    qemu_io(
        out, "qcow2", "read -P 0x11 127G 512", "read -P 0 0 1M", f"read -P 0 {127 * GiB - 512} 512"
    )


def test_bad_arguments_raise() -> None:
    for cluster_size in (0, 256, 3 * 65536, 4 * MiB):
        with pytest.raises(ValueError, match="cluster size"):
            Qcow2Stream(MiB, [], cluster_size=cluster_size)
    with pytest.raises(ValueError, match="negative"):
        Qcow2Stream(MiB, [Extent(-1, 10, True)])
    with pytest.raises(ValueError, match="negative"):
        Qcow2Stream(-1, [])
    # QEMU's limits: a 32 MiB L1 table (128 GiB at 512 B clusters), an 8 MiB refcount table.
    Qcow2Stream(128 * GiB, [], cluster_size=512)
    with pytest.raises(ValueError, match="too large for 512-byte clusters"):
        Qcow2Stream(128 * GiB + 1, [], cluster_size=512)
    with pytest.raises(ValueError, match="too large for 512-byte clusters"):
        Qcow2Stream(128 * GiB, [Extent(0, 128 * GiB, True)], cluster_size=512)


def test_memory_stays_flat(tmp_path: Path) -> None:
    src = create(tmp_path / "mem.raw", 512 * MiB)
    qemu_io(src, "raw", "write -P 0x99 0 256M")
    stream = Qcow2Stream(512 * MiB, allocation_map(src, "raw"))
    fd = os.open(src, os.O_RDONLY)
    tracemalloc.start()
    try:
        total = 0
        for chunk in stream.chunks(lambda offset, length: os.pread(fd, length, offset)):
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.close(fd)
    assert total == stream.size
    assert peak < 16 * MiB, peak
