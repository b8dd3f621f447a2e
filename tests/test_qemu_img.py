"""qemu-img adapter against the real qemu-img, real images in tmp_path, and a real running guest."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from snaptui.core.disk import qemu_img
from snaptui.core.errors import NotFound, QemuImgError

MiB = 1024 * 1024


def qemu_io(path: Path, command: str, fmt: str = "qcow2") -> None:
    subprocess.run(["qemu-io", "-f", fmt, "-c", command, str(path)], check=True,
                   capture_output=True)


def make_image(path: Path, fmt: str = "qcow2", size: str = "64M", *extra: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *extra, str(path), size], check=True)
    return path


def qcow2_refcount_block(path: Path) -> int:
    """Offset of the first refcount block (from the header's refcount table)."""
    with path.open("rb") as f:
        header = f.read(104)
        f.seek(struct.unpack(">Q", header[48:56])[0])
        return struct.unpack(">Q", f.read(8))[0]


# ------------------------------------------------------------------ info


async def test_info_qcow2_sizes_match_stat(tmp_path: Path) -> None:
    disk = make_image(tmp_path / "a.qcow2")
    qemu_io(disk, "write -q -P 0x11 0 8M")
    got = await qemu_img.info(disk)
    st = os.stat(disk)
    assert got.format == "qcow2"
    assert got.path == str(disk)
    assert got.virtual_size == 64 * MiB
    assert got.apparent_size == st.st_size
    assert got.actual_size == st.st_blocks * 512
    assert got.cluster_size == 65536
    assert got.compression_type in ("zlib", "zstd")
    assert got.corrupt is False
    assert got.dirty is False
    assert got.backing_file is None and got.backing_chain == ()
    assert got.snapshots == ()


async def test_info_raw(tmp_path: Path) -> None:
    disk = make_image(tmp_path / "a.raw", "raw", "32M")
    qemu_io(disk, "write -q -P 0x22 0 1M", fmt="raw")
    got = await qemu_img.info(disk, fmt="raw")
    st = os.stat(disk)
    assert (got.format, got.virtual_size) == ("raw", 32 * MiB)
    assert got.apparent_size == st.st_size == 32 * MiB
    assert got.actual_size == st.st_blocks * 512
    assert got.corrupt is None and got.cluster_size is None


async def test_info_backing_chain_nearest_first(tmp_path: Path) -> None:
    base = make_image(tmp_path / "base.qcow2")
    mid = tmp_path / "mid.qcow2"
    top = tmp_path / "top.qcow2"
    await qemu_img.create(mid, "qcow2", backing_file=base, backing_format="qcow2")
    await qemu_img.create(top, "qcow2", backing_file=mid, backing_format="qcow2")
    assert stat.S_IMODE(os.stat(top).st_mode) == 0o600

    got = await qemu_img.info(top)
    assert got.backing_file == str(mid)
    assert [b.path for b in got.backing_chain] == [str(mid), str(base)]
    assert got.backing_chain[0].backing_file == str(base)
    assert got.backing_chain[0].backing_chain[0].path == str(base)
    assert got.backing_chain[1].backing_file is None
    assert all(b.virtual_size == 64 * MiB for b in got.backing_chain)
    assert got.backing_chain[1].apparent_size == os.stat(base).st_size

    alone = await qemu_img.info(top, chain=False)
    assert alone.backing_file == str(mid) and alone.backing_chain == ()


async def test_info_missing_path_raises_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.qcow2"
    with pytest.raises(NotFound) as err:
        await qemu_img.info(missing)
    assert str(err.value) == f"no such file: {missing}"


async def test_info_corrupt_qcow2_carries_qemu_message(tmp_path: Path) -> None:
    bad_magic = make_image(tmp_path / "magic.qcow2")
    with bad_magic.open("r+b") as f:
        f.write(b"XXXX")
    with pytest.raises(QemuImgError) as err:
        await qemu_img.info(bad_magic, fmt="qcow2")
    assert "Image is not in qcow2 format" in str(err.value)
    assert not str(err.value).startswith("qemu-img:")
    assert err.value.returncode == 1

    bad_version = make_image(tmp_path / "version.qcow2")
    with bad_version.open("r+b") as f:
        f.seek(4)
        f.write(struct.pack(">I", 9))
    with pytest.raises(QemuImgError, match="Unsupported qcow2 version 9"):
        await qemu_img.info(bad_version)


async def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    disk = make_image(tmp_path / "a.qcow2")
    monkeypatch.setenv("SNAPTUI_QEMU_IMG", str(tmp_path / "no-qemu-img"))
    with pytest.raises(QemuImgError, match="qemu-img not found"):
        await qemu_img.info(disk)


# ------------------------------------------------------------------ snapshots


async def test_internal_snapshot_create_list_delete(tmp_path: Path) -> None:
    disk = make_image(tmp_path / "a.qcow2")
    assert await qemu_img.snapshot_list(disk) == []
    await qemu_img.snapshot_create(disk, "before-upgrade")
    await qemu_img.snapshot_create(disk, "second")
    snaps = await qemu_img.snapshot_list(disk)
    assert [s.name for s in snaps] == ["before-upgrade", "second"]
    first = snaps[0]
    assert first.id == "1" and first.vm_size == 0 and first.vm_clock == "00:00:00.000"
    assert first.date.endswith("Z") and first.date[4] == "-" and "T" in first.date

    await qemu_img.snapshot_delete(disk, "before-upgrade")
    assert [s.name for s in await qemu_img.snapshot_list(disk)] == ["second"]
    with pytest.raises(QemuImgError, match="nope"):
        await qemu_img.snapshot_delete(disk, "nope")


# ------------------------------------------------------------------ check


async def test_check_clean_corrupt_leaky_and_raw(tmp_path: Path) -> None:
    clean = make_image(tmp_path / "clean.qcow2")
    qemu_io(clean, "write -q -P 1 0 1M")
    result = await qemu_img.check(clean)
    assert result.ok and result.supported and result.corruptions == 0 and result.leaks == 0
    assert result.image_end_offset and result.image_end_offset > MiB

    corrupt = tmp_path / "corrupt.qcow2"
    shutil.copy(clean, corrupt)
    block = qcow2_refcount_block(corrupt)
    with corrupt.open("r+b") as f:  # zero the refcounts of clusters 6..9 (data clusters)
        f.seek(block + 2 * 6)
        f.write(b"\0\0" * 4)
    result = await qemu_img.check(corrupt)
    assert not result.ok and result.corruptions == 8

    leaky = make_image(tmp_path / "leaky.qcow2")
    block = qcow2_refcount_block(leaky)
    with leaky.open("r+b") as f:  # claim clusters 10 and 11 that nothing references
        f.seek(block + 2 * 10)
        f.write(b"\0\1" * 2)
    os.truncate(leaky, 12 * 65536)
    result = await qemu_img.check(leaky)
    assert not result.ok and result.leaks == 2 and result.corruptions == 0
    assert "Leaked cluster 10" in result.message

    raw = make_image(tmp_path / "a.raw", "raw", "1M")
    result = await qemu_img.check(raw, fmt="raw")
    assert result.ok and not result.supported

    bad = make_image(tmp_path / "magic.qcow2")
    with bad.open("r+b") as f:
        f.write(b"XXXX")
    with pytest.raises(QemuImgError, match="not in qcow2 format"):
        await qemu_img.check(bad, fmt="qcow2")


# ------------------------------------------------------------------ convert / compare


async def test_convert_to_raw_and_compressed_qcow2_with_progress(tmp_path: Path) -> None:
    src = make_image(tmp_path / "src.qcow2")
    qemu_io(src, "write -q -P 0xab 0 32M")

    events: list[float] = []
    raw = tmp_path / "out.raw"
    await qemu_img.convert(src, raw, out_format="raw", on_progress=events.append)
    assert events and events[-1] == 100.0
    assert events == sorted(events) and all(0 <= e <= 100 for e in events)
    assert stat.S_IMODE(os.stat(raw).st_mode) == 0o600
    assert await qemu_img.compare(src, raw)
    assert (await qemu_img.info(raw)).format == "raw"

    ctype = qemu_img.best_compression_type()
    assert ctype in ("zstd", "zlib")
    events = []
    small = tmp_path / "out.qcow2"
    await qemu_img.convert(src, small, out_format="qcow2", compress=True, compression_type=ctype,
                           parallel=2, out_of_order=True, src_cache="none", cache="unsafe",
                           on_progress=events.append)
    assert events and events[-1] == 100.0
    got = await qemu_img.info(small)
    assert got.compression_type == ctype
    assert got.actual_size < 4 * MiB  # 32 MiB of one byte value compresses to almost nothing
    assert await qemu_img.compare(src, small, fmt_a="qcow2", fmt_b="qcow2")


async def test_convert_from_internal_snapshot_gives_snapshot_time_content(tmp_path: Path) -> None:
    disk = make_image(tmp_path / "disk.qcow2")
    qemu_io(disk, "write -q -P 0xaa 0 4M")
    expected = tmp_path / "expected.raw"
    await qemu_img.convert(disk, expected, out_format="raw")
    await qemu_img.snapshot_create(disk, "A")
    qemu_io(disk, "write -q -P 0xbb 0 4M")

    from_snap = tmp_path / "snap.raw"
    await qemu_img.convert(disk, from_snap, out_format="raw", src_format="qcow2",
                           snapshot_name="A")
    assert await qemu_img.compare(from_snap, expected, fmt_a="raw", fmt_b="raw")
    assert not await qemu_img.compare(disk, expected)  # the live disk moved on


async def test_compare_false_on_different_images(tmp_path: Path) -> None:
    a = make_image(tmp_path / "a.qcow2")
    b = make_image(tmp_path / "b.qcow2")
    qemu_io(a, "write -q -P 1 0 64k")
    qemu_io(b, "write -q -P 2 0 64k")
    assert not await qemu_img.compare(a, b)
    assert await qemu_img.compare(a, a)
    shorter = make_image(tmp_path / "short.qcow2", "qcow2", "32M")
    qemu_io(shorter, "write -q -P 1 0 64k")
    assert await qemu_img.compare(a, shorter)  # the extra tail of a reads as zeroes
    assert not await qemu_img.compare(a, shorter, strict=True)  # strict: sizes must match
    with pytest.raises(NotFound):
        await qemu_img.compare(a, tmp_path / "missing.qcow2")
    with pytest.raises(QemuImgError):
        await qemu_img.compare(a, b, fmt_a="vmdk")


async def test_convert_failure_removes_partial_output(tmp_path: Path) -> None:
    src = make_image(tmp_path / "src.qcow2")
    dst = tmp_path / "out.img"
    with pytest.raises(QemuImgError, match="bogus") as err:
        await qemu_img.convert(src, dst, out_format="bogus")
    assert err.value.returncode == 1 and err.value.argv[1] == "convert"
    assert not dst.exists()

    with pytest.raises(QemuImgError, match="snapshot"):
        await qemu_img.convert(src, dst, out_format="raw", snapshot_name="never-taken")
    assert not dst.exists()

    # A file that was there already and that qemu-img never touched is left alone.
    keep = tmp_path / "keep.img"
    keep.write_bytes(b"precious")
    with pytest.raises(NotFound):
        await qemu_img.convert(tmp_path / "missing.qcow2", keep, out_format="raw")
    assert keep.read_bytes() == b"precious"

    with pytest.raises(NotFound, match="no such directory"):
        await qemu_img.convert(src, tmp_path / "nodir" / "out.raw", out_format="raw")


async def test_convert_out_of_space_removes_partial_output(tmp_path: Path, monkeypatch) -> None:
    """A failure in the middle of writing (file size limit hit) leaves no partial file behind."""
    src = make_image(tmp_path / "src.qcow2")
    qemu_io(src, "write -q -P 0x5a 0 32M")
    dst = tmp_path / "out.raw"
    fake = tmp_path / "qemu-img-limited"
    # RLIMIT_FSIZE makes writes past 4 MiB fail with EFBIG, like a full disk would.
    fake.write_text(f"#!/bin/sh\nulimit -f 4096\nexec {shutil.which('qemu-img')} \"$@\"\n")
    fake.chmod(0o700)
    monkeypatch.setenv("SNAPTUI_QEMU_IMG", str(fake))
    with pytest.raises(QemuImgError, match="error while writing|File too large") as err:
        await qemu_img.convert(src, dst, out_format="raw", sparse_size="0")
    assert err.value.argv[0] == str(fake)
    assert not dst.exists()


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    disk = make_image(tmp_path_factory.mktemp("big") / "big.qcow2", "qcow2", "1G")
    qemu_io(disk, "write -q -P 0x77 0 1G")
    return disk


def qemu_img_children() -> set[int]:
    """PIDs of qemu-img processes that are children of this test process."""
    me = str(os.getpid())
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if fields[1] == me and comm == "qemu-img" and fields[0] != "Z":
            pids.add(int(entry.name))
    return pids


async def test_cancel_event_mid_convert_kills_and_cleans(tmp_path: Path, big_image: Path) -> None:
    dst = tmp_path / "out.raw"
    cancel = asyncio.Event()
    events: list[float] = []

    def progress(pct: float) -> None:
        events.append(pct)
        if pct > 0:
            cancel.set()

    with pytest.raises(asyncio.CancelledError):
        await qemu_img.convert(big_image, dst, out_format="raw", cache="none", sparse_size="0",
                               on_progress=progress, cancel=cancel)
    assert events and events[-1] < 100.0
    assert not dst.exists()
    assert not qemu_img_children()


async def test_task_cancellation_mid_convert_kills_and_cleans(tmp_path: Path,
                                                              big_image: Path) -> None:
    dst = tmp_path / "out.qcow2"
    started = asyncio.Event()
    task = asyncio.create_task(qemu_img.convert(
        big_image, dst, out_format="qcow2", compress=True, on_progress=lambda _: started.set()))
    await asyncio.wait_for(started.wait(), 10)
    assert dst.exists() and qemu_img_children()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not dst.exists()
    assert not qemu_img_children()


# ------------------------------------------------------------------ a running guest's disk


async def test_running_guest_disk_needs_force_share(make_domain, tmp_path: Path) -> None:
    lab = make_domain(state="running")
    disk = lab.disk_path()
    with pytest.raises(QemuImgError, match="lock"):
        await qemu_img.info(disk)
    got = await qemu_img.info(disk, force_share=True)
    assert got.format == "qcow2" and got.virtual_size == 64 * MiB

    out = tmp_path / "copy.qcow2"
    events: list[float] = []
    await qemu_img.convert(disk, out, out_format="qcow2", src_format="qcow2", force_share=True,
                           on_progress=events.append)
    assert events and events[-1] == 100.0
    assert await qemu_img.compare(disk, out, force_share=True)

    # Snapshotting the in-use disk must be refused (never write to a running guest's disk).
    with pytest.raises(QemuImgError, match="lock"):
        await qemu_img.snapshot_create(disk, "nope")


async def test_convert_with_cancel_already_set_does_nothing(tmp_path: Path) -> None:
    src = make_image(tmp_path / "src.qcow2")
    cancel = asyncio.Event()
    cancel.set()
    with pytest.raises(asyncio.CancelledError):
        await qemu_img.convert(src, tmp_path / "out.raw", out_format="raw", cancel=cancel)
    assert not (tmp_path / "out.raw").exists()


async def test_create_failure_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "delta.qcow2"
    with pytest.raises(QemuImgError, match="missing-base"):
        await qemu_img.create(target, "qcow2", backing_file=tmp_path / "missing-base.qcow2",
                              backing_format="qcow2")
    assert not target.exists()
    await qemu_img.create(target, "qcow2", "16M")
    assert (await qemu_img.info(target)).virtual_size == 16 * MiB
