"""``snaptui domains / images / info`` run as a subprocess against the real lab.

Every command is the real CLI (``python -m snaptui``) on real libvirtd + QEMU, qemu-img and
Keystone + Glance; expected values come from libvirt, os.stat and qemu-img itself.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_tools import snaptui

from snaptui.core.images.glance import GlanceImages
from snaptui.core.images.library import ImageLibrary
from snaptui.core.images.store import add_image


def snaptui_json(*argv: str, **kwargs: Any) -> Any:
    proc = snaptui(*argv, "--json", **kwargs)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def qemu_img_info(path: Path, *extra: str) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "--output=json", *extra, str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Non-zero exit, exactly one line on stderr naming the problem, no traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert lines[0].startswith("snaptui: error: ")
    for word in words:
        assert word in lines[0], lines[0]


# ---------------------------------------------------------------- domains


def test_domains_lists_created_domains(make_domain) -> None:
    running = make_domain(state="running")
    off = make_domain(state="shut off", ndisks=2)
    listed = {d["name"]: d for d in snaptui_json("domains")}

    entry = listed[off.name]
    assert entry["uuid"] == off.uuid
    assert entry["state"] == "shut off"
    assert entry["vcpus"] == 1 and entry["memory_kib"] == 128 * 1024
    assert [(d["target"], d["path"], d["format"]) for d in entry["disks"]] == [
        (t, str(p), f) for t, p, f in off.disks
    ]
    assert entry["allocated_size"] == sum(allocated(p) for _, p, _ in off.disks)
    assert listed[running.name]["state"] == "running"
    assert listed[running.name]["uuid"] == running.uuid

    table = snaptui("domains")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
    assert "▶ running" in rows[running.name]
    assert "■ shut off" in rows[off.name]
    assert "vda:qcow2, vdb:qcow2" in rows[off.name]
    assert "128 MiB" in rows[off.name]


# ---------------------------------------------------------------- images


def test_images_lists_a_glance_image(os_cloud: str) -> None:
    glance = GlanceImages.from_cloud(os_cloud)
    instance = str(uuid.uuid4())
    name = f"snaptui-test-cli-{uuid.uuid4().hex[:8]}"
    record = glance.create(name, "qcow2", properties={"image_type": "snapshot",
                                                      "instance_uuid": instance})
    try:
        listed = {i["id"]: i for i in snaptui_json("images")}
        image = listed[record.id]
        assert image["name"] == name
        assert image["status"] == "queued"
        assert image["disk_format"] == "qcow2"
        assert image["size"] is None
        assert image["properties"]["instance_uuid"] == instance
        assert image["properties"]["image_type"] == "snapshot"

        table = snaptui("images", "--os-cloud", os_cloud)
        assert table.returncode == 0, table.stderr
        row = next(line for line in table.stdout.splitlines() if record.id in line)
        assert name in row and "yes" in row and instance in row and "qcow2/bare" in row
        assert table.stderr.startswith(f"cloud: {os_cloud} (")
    finally:
        glance.delete(record.id)
    assert record.id not in {i["id"] for i in snaptui_json("images")}


def test_images_lists_the_local_library(tmp_path: Path) -> None:
    library = ImageLibrary(tmp_path / "library")
    data = tmp_path / "disk.raw"
    data.write_bytes(b"\xab" * 3 * 1024 * 1024)
    record = add_image(library, data, name="lib image", disk_format="raw",
                         properties={"image_type": "snapshot"})

    listed = snaptui_json("images", "--library", str(library.directory))
    assert [(i["id"], i["name"], i["status"], i["size"]) for i in listed] == [
        (record.id, "lib image", "active", 3 * 1024 * 1024)
    ]
    table = snaptui("images", "--library", str(library.directory))
    assert table.returncode == 0, table.stderr
    assert table.stderr.splitlines()[0] == f"library: {library.directory}"
    assert "lib image" in table.stdout and "3.0 MiB" in table.stdout

    # Without a cloud, the default library (SNAPTUI_LIBRARY_DIR here) is listed.
    no_cloud = tuple(k for k in os.environ if k.startswith("OS_"))
    default = snaptui("images", "--json", unset=no_cloud,
                      env={"SNAPTUI_LIBRARY_DIR": str(library.directory)})
    assert default.returncode == 0, default.stderr
    assert [i["id"] for i in json.loads(default.stdout)] == [record.id]


# ---------------------------------------------------------------- info


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, Path]:
    """base.qcow2 (8 MiB seeded) <- top.qcow2 with one internal snapshot."""
    base, top = tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -q -P 0xab 0 8M", str(base)],
                   check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                    str(top)], check=True)
    subprocess.run(["qemu-img", "snapshot", "-c", "first", str(top)], check=True)
    return base, top


def test_info_of_a_path(chain: tuple[Path, Path]) -> None:
    base, top = chain
    got = snaptui_json("info", str(top))
    want = qemu_img_info(top)
    assert got["path"] == str(top)
    assert got["format"] == "qcow2"
    assert got["virtual_size"] == want["virtual-size"] == 64 * 1024 * 1024
    assert got["actual_size"] == want["actual-size"] == allocated(top)
    assert got["apparent_size"] == os.stat(top).st_size
    assert [(s["id"], s["name"], s["vm_size"]) for s in got["snapshots"]] == [("1", "first", 0)]
    assert set(got["snapshots"][0]) >= {"id", "name", "date", "vm_size"}
    assert [b["path"] for b in got["backing_chain"]] == [str(base)]
    assert got["backing_chain"][0]["actual_size"] == allocated(base)
    assert got["corrupt"] is False

    # A bare file name in the working directory is a path too; the table is for people.
    table = snaptui("info", top.name, cwd=top.parent)
    assert table.returncode == 0, table.stderr
    for text in (str(top), "64.0 MiB (67108864 bytes)", f"({allocated(top)} bytes)",
                 str(base), "first"):
        assert text in table.stdout


def test_info_of_a_running_domain(make_domain) -> None:
    lab = make_domain(state="running", ndisks=2)
    got = snaptui_json("info", lab.name)
    assert [g["target"] for g in got] == ["vda", "vdb"]
    for entry in got:
        path = lab.disk_path(entry["target"])
        assert entry["path"] == str(path)
        want = qemu_img_info(path, "-U")
        assert entry["virtual_size"] == want["virtual-size"] == 64 * 1024 * 1024
        assert entry["actual_size"] == want["actual-size"]
        assert entry["apparent_size"] == os.stat(path).st_size

    one = snaptui_json("info", f"{lab.uuid}:vdb")
    assert [(g["target"], g["path"]) for g in one] == [("vdb", str(lab.disk_path("vdb")))]

    table = snaptui("info", f"{lab.name}:vda")
    assert table.returncode == 0, table.stderr
    assert lab.name in table.stdout and "▶ running" in table.stdout
    assert str(lab.disk_path("vda")) in table.stdout and "vdb" not in table.stdout


def test_info_shows_the_corrupt_flag(chain: tuple[Path, Path]) -> None:
    _, top = chain
    with open(top, "r+b") as f:  # qcow2 v3 header: incompatible_features at 72, bit 1 = corrupt
        f.seek(72)
        features = struct.unpack(">Q", f.read(8))[0]
        f.seek(72)
        f.write(struct.pack(">Q", features | 2))
    assert snaptui_json("info", str(top))["corrupt"] is True
    assert "YES" in snaptui("info", str(top)).stdout


# ---------------------------------------------------------------- bad input


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cloud_copy(tmp_path: Path, os_cloud: str, **auth: str) -> dict[str, str]:
    """A 0600 copy of the lab's clouds.yaml with some auth values replaced."""
    config = yaml.safe_load(Path(os.environ["OS_CLIENT_CONFIG_FILE"]).read_text())
    config["clouds"][os_cloud]["auth"].update(auth)
    path = tmp_path / "clouds.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return {"OS_CLIENT_CONFIG_FILE": str(path), "OS_CLOUD": os_cloud}


def test_bad_domain_input(make_domain) -> None:
    lab = make_domain(state="shut off")
    assert_one_line_error(snaptui("info", "snaptui-no-such-domain"), "no such domain")
    assert_one_line_error(snaptui("info", f"{lab.name}:vdz"), "no disk vdz", "vda")


def test_bad_path_input(tmp_path: Path, chain: tuple[Path, Path]) -> None:
    assert_one_line_error(snaptui("info", str(tmp_path / "missing.qcow2")), "no such file")
    assert_one_line_error(snaptui("info", str(tmp_path / "nodir" / "x.qcow2")), "no such file")
    assert_one_line_error(snaptui("info", str(tmp_path)), "is a directory")

    _, top = chain
    with open(top, "r+b") as f:  # garbage over the header's version field
        f.seek(4)
        f.write(b"\xff\xff\xff\xff")
    assert_one_line_error(snaptui("info", str(top)), "Unsupported qcow2 version")
    assert_one_line_error(snaptui("info", "-f", "qcow2", str(top)), "Unsupported qcow2 version")


def test_libvirtd_not_running() -> None:
    dead = "qemu+unix:///system?socket=/nonexistent"
    assert_one_line_error(snaptui("domains", "-c", dead), "libvirtd is not running")
    assert_one_line_error(snaptui("info", "any-domain", "-c", dead), "libvirtd is not running")


def test_wrong_credentials(tmp_path: Path, os_cloud: str) -> None:
    env = _cloud_copy(tmp_path, os_cloud, password="not-the-password")
    assert_one_line_error(snaptui("images", env=env), "authentication failed", "401")
    assert "not-the-password" not in snaptui("images", "--json", env=env).stderr


def test_unreachable_keystone(tmp_path: Path, os_cloud: str) -> None:
    env = _cloud_copy(tmp_path, os_cloud, auth_url=f"http://127.0.0.1:{_closed_port()}/v3")
    assert_one_line_error(snaptui("images", env=env), "cannot reach Keystone",
                          "connection refused")


def test_unknown_cloud(os_cloud: str) -> None:
    assert_one_line_error(snaptui("images", "--os-cloud", "no-such-cloud"), "unknown cloud")
