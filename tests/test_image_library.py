"""The local image library on a real directory: add, list, show, delete, sidecars, cancel."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from snaptui.core.errors import BadInput, NotFound
from snaptui.core.images.library import ImageLibrary
from snaptui.core.images.store import ImageStore, UploadCancelled, UploadProgress, add_image

MiB = 1024 * 1024


def make_file(path: Path, size: int, seed: int = 7) -> Path:
    block = hashlib.sha512(bytes([seed])).digest() * (MiB // 64)
    with open(path, "wb") as out:
        left = size
        while left:
            out.write(block[: min(left, len(block))])
            left -= min(left, len(block))
    return path


def sha512(path: Path) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def library(tmp_path: Path) -> ImageLibrary:
    return ImageLibrary(tmp_path / "lib" / "images")


def test_is_an_image_store(library: ImageLibrary) -> None:
    assert isinstance(library, ImageStore)
    assert library.kind == "library"
    assert mode(library.directory) == 0o700


def test_add_list_show_delete(library: ImageLibrary, tmp_path: Path) -> None:
    src = make_file(tmp_path / "disk.raw", 9 * MiB + 123)
    events: list[UploadProgress] = []
    props = {"image_type": "snapshot", "instance_uuid": "0b4f5c1e-9f2a-4f5e-8c55-1a2b3c4d5e6f"}
    rec = add_image(library, src, name="snap one", disk_format="raw", properties=props,
                      on_progress=events.append)

    assert rec.status == "active"
    assert rec.size == src.stat().st_size
    assert rec.os_hash_value == sha512(src)
    assert rec.properties == props and rec.is_snapshot
    assert rec.instance_uuid == props["instance_uuid"]
    data = library.directory / f"{rec.id}.raw"
    assert rec.location == str(data)
    assert data.read_bytes() == src.read_bytes()
    assert mode(data) == 0o600
    assert events and events[-1].sent == events[-1].total == rec.size

    sidecar = library.directory / f"{rec.id}.json"
    assert mode(sidecar) == 0o600
    meta = json.loads(sidecar.read_text())
    assert meta == {
        "id": rec.id, "name": "snap one", "status": "active", "disk_format": "raw",
        "container_format": "bare", "size": rec.size, "created_at": rec.created_at,
        "properties": props, "os_hash_algo": "sha512", "os_hash_value": sha512(src),
    }

    assert [r.id for r in library.iter_images()] == [rec.id]
    assert library.show(rec.id) == rec
    assert library.show(rec.id.upper()) == rec  # any UUID spelling maps to the same files

    library.delete(rec.id)
    assert sorted(os.listdir(library.directory)) == []
    with pytest.raises(NotFound):
        library.show(rec.id)
    with pytest.raises(NotFound):
        library.delete(rec.id)


def test_create_then_upload_steps(library: ImageLibrary, tmp_path: Path) -> None:
    """The engine's two journaled steps: a queued record first, data later."""
    src = make_file(tmp_path / "d.qcow2", 3 * MiB)
    rec = library.create("two-step", "qcow2", "bare", {})
    assert rec.status == "queued" and rec.size is None and rec.location is None
    digest = library.upload(rec.id, src)
    assert digest == sha512(src)
    shown = library.show(rec.id)
    assert shown.status == "active" and shown.os_hash_value == digest
    assert shown.location == str(library.directory / f"{rec.id}.qcow2")


@pytest.mark.parametrize("name", [
    "it's \"quoted\"",
    "$(touch /tmp/pwned) `id` ; rm -rf / && echo",
    "line one\nline two",
    "snapshot ☃ 東京 ü",
    "../../etc/passwd",
    "x" * 300,
])
def test_names_are_free_text(library: ImageLibrary, tmp_path: Path, name: str) -> None:
    src = make_file(tmp_path / "d.raw", MiB)
    rec = add_image(library, src, name=name, disk_format="raw")
    assert library.show(rec.id).name == name
    assert sorted(os.listdir(library.directory)) == sorted([f"{rec.id}.raw", f"{rec.id}.json"])
    assert not Path("/tmp/pwned").exists()
    library.delete(rec.id)


@pytest.mark.parametrize("bad", ["../x", "not-a-uuid", "", "12345", "/etc/passwd"])
def test_bad_ids_are_refused(library: ImageLibrary, bad: str) -> None:
    with pytest.raises(BadInput):
        library.show(bad)
    with pytest.raises(BadInput):
        library.delete(bad)


def test_bad_formats_and_properties(library: ImageLibrary, tmp_path: Path) -> None:
    src = make_file(tmp_path / "d.raw", MiB)
    with pytest.raises(BadInput, match="disk format"):
        add_image(library, src, name="x", disk_format="../raw")
    with pytest.raises(BadInput, match="container format"):
        add_image(library, src, name="x", disk_format="raw", container_format="zip")
    with pytest.raises(BadInput):
        add_image(library, src, name="x", disk_format="raw", properties={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(NotFound):
        add_image(library, tmp_path / "missing.raw", name="x", disk_format="raw")
    assert os.listdir(library.directory) == []


class CancelAfterChunks(threading.Event):
    """A real Event that becomes set once ``n`` chunks have been read (deterministic mid-copy)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        if self.left < 0:
            self.set()
        return super().is_set()


def test_cancel_leaves_nothing(library: ImageLibrary, tmp_path: Path) -> None:
    src = make_file(tmp_path / "d.raw", 64 * MiB)
    cancel = CancelAfterChunks(3)
    with pytest.raises(UploadCancelled):
        add_image(library, src, name="cancelled", disk_format="raw", cancel=cancel)
    assert cancel.left < 0  # it stopped part-way, after 3 of 16 chunks
    assert os.listdir(library.directory) == []


def test_upload_failure_removes_partial(library: ImageLibrary, tmp_path: Path) -> None:
    """A failed upload step removes its partial file and puts the image back to queued."""
    src = make_file(tmp_path / "d.raw", 8 * MiB)
    rec = library.create("fails", "raw", "bare", {})
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(UploadCancelled):
        library.upload(rec.id, src, cancel=cancel)
    assert library.show(rec.id).status == "queued"
    assert sorted(os.listdir(library.directory)) == [f"{rec.id}.json"]
    library.delete(rec.id)


def test_unreadable_sidecars_are_skipped(library: ImageLibrary, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    good = add_image(library, make_file(tmp_path / "d.raw", MiB), name="good", disk_format="raw")
    (library.directory / "6a1b0c52-3c3e-4c1e-9f55-4d2f1e0a9b77.json").write_text("{not json")
    (library.directory / "notes.json").write_text("{}")
    wrong = library.directory / "0d7b6ee1-1111-4222-8333-944455556666.json"
    wrong.write_text(json.dumps({"id": good.id}))  # id does not match its file name
    with caplog.at_level("WARNING"):
        assert [r.id for r in library.iter_images()] == [good.id]
    assert caplog.text.count("skipping unreadable library sidecar") == 3


def test_big_copy_reports_progress_to_the_end(library: ImageLibrary, tmp_path: Path) -> None:
    """A 256 MiB add reports growing progress up to its size (speed is for benchmarks/)."""
    src = make_file(tmp_path / "big.raw", 256 * MiB)
    events: list[UploadProgress] = []
    started = time.monotonic()
    rec = add_image(library, src, name="throughput", disk_format="raw", on_progress=events.append)
    wall = time.monotonic() - started
    assert rec.size == 256 * MiB
    sent = [e.sent for e in events]
    assert sent == sorted(sent) and sent[-1] == rec.size, sent
    # Bytes flowed before each event, so each rate is positive; the last one is the whole
    # copy's average, at least the size over the wall time measured around the add.
    assert all(e.total == rec.size and e.rate > 0 for e in events), events
    assert events[-1].rate >= rec.size / wall and events[-1].eta_s == 0, (events[-1], wall)
    library.delete(rec.id)
