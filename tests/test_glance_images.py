"""GlanceImages and cloud_config against the lab's real Keystone + Glance (scripts/lab up).

Every image made here is named ``snaptui-test-<random>-...`` and deleted at teardown, even when
the test fails; images of anyone else are never touched.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from snaptui.core.cloud.config import cloud_configured, load_session
from snaptui.core.errors import BadInput, CloudError, NotFound
from snaptui.core.images.glance import GlanceImages
from snaptui.core.images.store import ImageStore, UploadCancelled, UploadProgress, add_image

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> Path:
    """A file of pseudo-random (incompressible, non-repeating per MiB) bytes."""
    with open(path, "wb") as out:
        for i in range(0, size, MiB):
            seed = hashlib.sha512(i.to_bytes(8, "big")).digest()
            out.write((seed * (MiB // 64))[: min(MiB, size - i)])
    return path


def sha512(path: Path) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture
def glance(os_cloud: str) -> GlanceImages:
    return GlanceImages.from_cloud(os_cloud)


@pytest.fixture
def prefix(glance: GlanceImages) -> Iterator[str]:
    """A unique name prefix; every image carrying it is deleted after the test."""
    tag = f"snaptui-test-{uuid.uuid4().hex[:8]}-"
    yield tag
    for image in list(glance.iter_images()):
        if image.name.startswith(tag):
            try:
                glance.delete(image.id)
            except NotFound:
                pass


def names_with(glance: GlanceImages, prefix: str) -> list[str]:
    return sorted(i.name for i in glance.iter_images() if i.name.startswith(prefix))


def test_is_an_image_store(glance: GlanceImages, os_cloud: str) -> None:
    assert isinstance(glance, ImageStore)
    assert glance.kind == "glance"
    next(iter(glance.iter_images()), None)  # authenticates and reads the catalog
    assert glance.location.startswith(f"{os_cloud} (http://127.0.0.1:")
    assert glance.project_id and len(glance.project_id) == 32


def test_list_across_pages(glance: GlanceImages, prefix: str) -> None:
    made = {glance.create(f"{prefix}{i:02d}", "raw", "bare", {}).id for i in range(25)}
    records = glance.iter_images(page_size=10)
    assert not isinstance(records, list)  # a generator: pages are fetched as it is consumed
    listed = [r for r in records if r.name.startswith(prefix)]
    assert {r.id for r in listed} == made
    assert len(listed) == 25  # each page holds at most 10, so this took at least 3 pages
    assert all(r.status == "queued" and r.disk_format == "raw" for r in listed)


def test_upload_with_progress_and_checksum(glance: GlanceImages, prefix: str,
                                           tmp_path: Path) -> None:
    src = make_file(tmp_path / "disk.raw", 32 * MiB)
    events: list[UploadProgress] = []
    times: list[float] = []

    def on_progress(p: UploadProgress) -> None:
        events.append(p)
        times.append(time.monotonic())

    start = time.monotonic()
    rec = add_image(glance, src, name=f"{prefix}upload", disk_format="raw", on_progress=on_progress)
    elapsed = time.monotonic() - start
    print(f"glance add 32 MiB: {elapsed:.2f} s, {32 / elapsed:.0f} MiB/s, {len(events)} events")

    assert rec.status == "active"
    assert rec.size == 32 * MiB
    assert rec.os_hash_value == sha512(src)
    assert len(events) >= 2
    assert events[-1].sent == events[-1].total == 32 * MiB
    assert [e.sent for e in events] == sorted(e.sent for e in events)
    assert all(e.rate > 0 for e in events[1:])
    assert events[-1].eta_s == 0
    gaps = [b - a for a, b in zip([start, *times], times[:-1], strict=False)]
    assert all(0.09 <= gap <= 0.6 for gap in gaps[1:])  # at most ~10/s, at least every 0.5 s


def test_create_then_upload_steps(glance: GlanceImages, prefix: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "d.raw", 2 * MiB + 5)
    rec = glance.create(f"{prefix}steps", "raw", "bare", {"image_type": "snapshot"})
    assert rec.status == "queued" and rec.properties == {"image_type": "snapshot"}
    digest = glance.upload(rec.id, src)
    assert digest == sha512(src)
    shown = glance.show(rec.id)
    assert shown.status == "active" and shown.os_hash_value == digest
    assert shown.size == src.stat().st_size


def test_properties_round_trip(glance: GlanceImages, prefix: str, tmp_path: Path) -> None:
    props = {
        "image_type": "snapshot",
        "instance_uuid": str(uuid.uuid4()),
        "base_image_ref": str(uuid.uuid4()),
        "snaptui_note": "quotes ' \" and $(not a command); ☃",
    }
    name = f"{prefix}props \"quoted\" $(x); ünïcode"
    rec = add_image(glance, make_file(tmp_path / "d.raw", MiB), name=name, disk_format="raw",
                     properties=props)
    shown = glance.show(rec.id)
    assert shown.name == name
    assert {k: shown.properties.get(k) for k in props} == props
    assert shown.is_snapshot and shown.instance_uuid == props["instance_uuid"]
    assert "os_hash_value" not in shown.properties and "stores" not in shown.properties


def test_delete_then_show_is_not_found(glance: GlanceImages, prefix: str,
                                       tmp_path: Path) -> None:
    rec = add_image(glance, make_file(tmp_path / "d.raw", MiB), name=f"{prefix}del",
                    disk_format="raw")
    glance.delete(rec.id)
    with pytest.raises(NotFound, match=rec.id):
        glance.show(rec.id)
    with pytest.raises(NotFound):
        glance.delete(rec.id)


def test_format_mismatch_is_refused_and_cleaned(glance: GlanceImages, prefix: str,
                                                tmp_path: Path) -> None:
    """Glance inspects the stream: raw bytes declared as qcow2 are refused; nothing is left."""
    src = make_file(tmp_path / "d.qcow2", 2 * MiB)
    with pytest.raises(CloudError) as info:
        add_image(glance, src, name=f"{prefix}mismatch", disk_format="qcow2")
    print(info.value)
    assert "does not match" in str(info.value)
    assert names_with(glance, prefix) == []


def test_show_unknown_image(glance: GlanceImages) -> None:
    with pytest.raises(NotFound):
        glance.show(str(uuid.uuid4()))


def test_bad_input_is_refused_before_any_request(glance: GlanceImages, prefix: str,
                                                 tmp_path: Path) -> None:
    src = make_file(tmp_path / "d.raw", MiB)
    with pytest.raises(BadInput):
        add_image(glance, src, name=f"{prefix}x", disk_format="qcow3")
    with pytest.raises(BadInput, match="own fields"):
        add_image(glance, src, name=f"{prefix}x", disk_format="raw",
                  properties={"status": "active"})
    with pytest.raises(NotFound):
        add_image(glance, tmp_path / "missing", name=f"{prefix}x", disk_format="raw")
    assert names_with(glance, prefix) == []


def test_cancel_mid_upload_deletes_the_image(glance: GlanceImages, prefix: str,
                                             tmp_path: Path) -> None:
    src = make_file(tmp_path / "d.raw", 128 * MiB)
    cancel = threading.Event()
    sent: list[int] = []

    def on_progress(p: UploadProgress) -> None:
        sent.append(p.sent)
        cancel.set()  # the first event (after ~0.1 s) cancels

    with pytest.raises(UploadCancelled):
        add_image(glance, src, name=f"{prefix}cancel", disk_format="raw", on_progress=on_progress,
                   cancel=cancel)
    assert sent and sent[0] < 128 * MiB
    assert names_with(glance, prefix) == []


def test_image_deleted_during_upload(glance: GlanceImages, os_cloud: str, prefix: str,
                                     tmp_path: Path) -> None:
    """A real mid-upload failure: another client deletes the image while its data flows."""
    src = make_file(tmp_path / "d.raw", 128 * MiB)
    other = GlanceImages.from_cloud(os_cloud)
    rec = glance.create(f"{prefix}vanishing", "raw", "bare", {})
    deleted = threading.Event()

    def on_progress(p: UploadProgress) -> None:
        if not deleted.is_set():
            other.delete(rec.id)
            deleted.set()

    with pytest.raises(CloudError) as info:
        glance.upload(rec.id, src, on_progress=on_progress)
    message = str(info.value)
    print(message)
    assert "\n" not in message and rec.id in message
    assert names_with(glance, prefix) == []


# -- credentials and reachability -----------------------------------------------------------


def lab_clouds(os_cloud: str) -> dict:
    return yaml.safe_load(Path(os.environ["OS_CLIENT_CONFIG_FILE"]).read_text())


def write_clouds(path: Path, data: dict, mode: int = 0o600) -> Path:
    path.write_text(yaml.safe_dump(data))
    os.chmod(path, mode)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


def test_wrong_password(os_cloud: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = lab_clouds(os_cloud)
    data["clouds"][os_cloud]["auth"]["password"] = "wr0ng-Secret-4242"
    user = data["clouds"][os_cloud]["auth"]["username"]
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(write_clouds(tmp_path / "clouds.yaml", data)))
    store = GlanceImages.from_cloud(os_cloud)
    with pytest.raises(CloudError) as info:
        list(store.iter_images())
    message = str(info.value)
    print(message)
    assert message == (
        f"authentication failed for user {user} at "
        f"{data['clouds'][os_cloud]['auth']['auth_url']} (HTTP 401)"
    )
    assert "wr0ng" not in message


def test_unreachable_keystone(os_cloud: str, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    data = lab_clouds(os_cloud)
    url = f"http://127.0.0.1:{free_port()}/v3"
    data["clouds"][os_cloud]["auth"]["auth_url"] = url
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(write_clouds(tmp_path / "clouds.yaml", data)))
    start = time.monotonic()
    with pytest.raises(CloudError) as info:
        GlanceImages.from_cloud(os_cloud).show(str(uuid.uuid4()))
    assert str(info.value) == f"cannot reach Keystone at {url}: connection refused"
    assert time.monotonic() - start < 10


def test_unknown_cloud_is_bad_input(os_cloud: str) -> None:
    with pytest.raises(BadInput, match="unknown cloud 'no-such-cloud'"):
        GlanceImages.from_cloud("no-such-cloud")


def test_readable_password_file_warns(os_cloud: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", lab_clouds(os_cloud), mode=0o644)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    warnings = load_session(os_cloud).warnings
    assert len(warnings) == 1 and "chmod 600" in warnings[0] and str(path) in warnings[0]
    password = lab_clouds(os_cloud)["clouds"][os_cloud]["auth"]["password"]
    assert password not in warnings[0]
    os.chmod(path, 0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_session(os_cloud).warnings == []


def test_cloud_configured(os_cloud: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cloud_configured()  # OS_CLOUD is set by the lab env
    assert cloud_configured("anything")
    for var in [v for v in os.environ if v.startswith("OS_")]:
        monkeypatch.delenv(var)
    two = {"clouds": {"a": {"auth": {"auth_url": "http://127.0.0.1:1/v3"}},
                      "b": {"auth": {"auth_url": "http://127.0.0.1:2/v3"}}}}
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(write_clouds(tmp_path / "two.yaml", two)))
    monkeypatch.chdir(tmp_path)  # no ./clouds.yaml
    assert not cloud_configured()
    monkeypatch.setenv("OS_CLOUD", "a")
    assert cloud_configured()
    monkeypatch.delenv("OS_CLOUD")
    one = {"clouds": {"only": {"auth": {"auth_url": "http://127.0.0.1:1/v3"}}}}
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(write_clouds(tmp_path / "one.yaml", one)))
    assert cloud_configured()
