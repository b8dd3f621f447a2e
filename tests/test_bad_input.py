"""Bad input to `snaptui snapshot` on the real lab: one clear line on stderr, a non-zero exit, and
nothing changed (guest state, managed save, jobs, scratch, library, Glance, files elsewhere).

Extends tests/test_cli_snapshot.py (unknown domain/disk, raw + internal, newline and 300-char
names, tiny scratch) and tests/test_cli_inventory.py (`images` with wrong credentials/unreachable
Keystone); the cases here are the ones those do not cover.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import requests
import yaml
from cli_tools import snaptui
from fault_tools import wait_until
from lab_domains import TEST_PREFIX, domain_xml

from snaptui.core.images.glance import GlanceImages
from snaptui.core.images.library import ImageLibrary
from snaptui.core.paths import state_dir


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("snaptui: error: ") and "Traceback" not in proc.stdout
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def assert_untouched(lab, state: int, *libraries: Path) -> None:
    """The guest is as it was, no job was started, scratch and the libraries are empty."""
    assert lab.dom.state()[0] == state
    assert not lab.dom.hasManagedSaveImage(0)
    assert not list(lab.dom.listAllSnapshots()) if state == libvirt.VIR_DOMAIN_SHUTOFF else True
    jobs = state_dir() / "jobs"
    assert not jobs.exists() or not list(jobs.glob("*.jsonl"))
    scratch = state_dir() / "scratch"
    assert not scratch.exists() or not list(scratch.iterdir())
    for library in libraries:
        assert not library.exists() or not [p for p in library.iterdir()
                                             if not p.name.startswith(".")]
    out = subprocess.run(["qemu-img", "snapshot", "-U", "-l", str(lab.disk_path())],
                         capture_output=True, text=True)
    assert "snaptui-" not in out.stdout


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def lab_cloud(**auth: str) -> dict:
    config = yaml.safe_load(Path(os.environ["OS_CLIENT_CONFIG_FILE"]).read_text())
    cloud = config["clouds"][os.environ["OS_CLOUD"]]
    cloud["auth"].update(auth)
    return cloud


def clouds_env(tmp_path: Path, name: str, cloud: dict) -> dict[str, str]:
    path = tmp_path / f"clouds-{name}.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({"clouds": {name: cloud}}))
    return {"OS_CLIENT_CONFIG_FILE": str(path), "OS_CLOUD": name}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- disks


@pytest.fixture
def storage_daemon(tmp_path: Path):
    """Start qemu-storage-daemon exporting a disk over NBD (it takes the image's write lock)."""
    procs: list[subprocess.Popen] = []

    def start(disk: Path) -> subprocess.Popen:
        sock = tmp_path / f"nbd-{len(procs)}.sock"
        proc = subprocess.Popen(
            ["qemu-storage-daemon",
             "--blockdev", f"driver=file,node-name=file0,filename={disk}",
             "--blockdev", "driver=qcow2,node-name=disk0,file=file0",
             "--nbd-server", f"addr.type=unix,addr.path={sock}",
             "--export", "type=nbd,id=export0,node-name=disk0,writable=on"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        wait_until(lambda: sock.exists() or proc.poll() is not None, 10, "the NBD socket")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert sock.exists()
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_disk_write_locked_by_a_storage_daemon(make_domain, storage_daemon, tmp_path):
    lab = make_domain(state="shut off")
    daemon = storage_daemon(lab.disk_path())
    lib = tmp_path / "lib"
    for mode in ("cold", "internal", "auto"):
        line = one_line_error(
            snaptui("snapshot", lab.name, "--name", "x", "--mode", mode, "--to", "library",
                    "--library", str(lib)),
            "disk vda", "in use by", f"pid {daemon.pid} (qemu-storage-daemon)", "write lock")
        assert str(lab.disk_path()) in line
    assert_untouched(lab, libvirt.VIR_DOMAIN_SHUTOFF, lib)
    assert daemon.poll() is None


def test_disk_held_by_a_running_qemu_of_another_domain(conn, make_domain, tmp_path):
    """Domain B runs on a disk file that shut-off domain A also names: A is refused."""
    runner = make_domain(state="running")
    name = TEST_PREFIX + "other-" + uuid.uuid4().hex[:6]
    conn.defineXML(domain_xml(name, [("vda", runner.disk_path(), "qcow2")]))
    try:
        line = one_line_error(
            snaptui("snapshot", name, "--name", "x", "--mode", "cold", "--to", "library",
                    "--library", str(tmp_path / "lib")),
            "disk vda", "in use by", f"domain {runner.name}", "write lock")
        assert "pid " in line
        assert conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
        assert runner.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        conn.lookupByName(name).undefine()


def _set_corrupt_bit(path: Path) -> None:
    with open(path, "r+b") as f:  # qcow2 v3 header: incompatible_features at 72, bit 1 = corrupt
        f.seek(72)
        features = struct.unpack(">Q", f.read(8))[0]
        f.seek(72)
        f.write(struct.pack(">Q", features | 2))


def test_corrupt_qcow2(make_domain, tmp_path):
    flagged = make_domain(state="shut off")
    _set_corrupt_bit(flagged.disk_path())
    garbage = make_domain(state="shut off")
    with open(garbage.disk_path(), "r+b") as f:  # garbage over the header's version field
        f.seek(4)
        f.write(b"\xff\xff\xff\xff")
    lib = tmp_path / "lib"
    for mode in ("cold", "internal"):
        one_line_error(snaptui("snapshot", flagged.name, "--name", "x", "--mode", mode,
                               "--to", "library", "--library", str(lib)),
                       "disk vda", "marked corrupt", "qemu-img check")
        one_line_error(snaptui("snapshot", garbage.name, "--name", "x", "--mode", mode,
                               "--to", "library", "--library", str(lib)),
                       "disk vda", "Unsupported qcow2 version")
    assert_untouched(flagged, libvirt.VIR_DOMAIN_SHUTOFF, lib)
    assert_untouched(garbage, libvirt.VIR_DOMAIN_SHUTOFF, lib)


# ---------------------------------------------------------------- destinations


def test_read_only_and_full_destinations_refused_before_the_guest_is_touched(
        make_domain, tmp_path):
    lab = make_domain(state="running", size="128M", seed="32M")
    lib = tmp_path / "lib"
    cold = ["snapshot", lab.name, "--name", "x", "--mode", "cold", "--to", "library"]
    with tmpfs(tmp_path / "ro", "ro", "size=1M") as ro, \
            tmpfs(tmp_path / "tiny", "size=8M") as tiny:
        one_line_error(snaptui(*cold, "--library", str(lib), "--keep-local", str(ro / "x.qcow2")),
                       "--keep-local", str(ro), "not a writable directory")
        one_line_error(snaptui(*cold, "--library", str(ro)),
                       f"library {ro} is not writable", "Read-only file system")
        one_line_error(snaptui(*cold, "--library", str(ro / "sub")),
                       f"cannot create library directory {ro / 'sub'}", "Read-only file system")
        one_line_error(snaptui(*cold, "--library", str(tiny)),
                       "not enough space", str(tiny), "library copy")
        one_line_error(snaptui(*cold, "--library", str(lib), "--keep-local",
                               str(tiny / "x.qcow2")),
                       "not enough space", "--keep-local copy")
        assert [p.name for p in tiny.iterdir()] == []
    existing = tmp_path / "already-there.qcow2"
    existing.write_bytes(b"keep me")
    one_line_error(snaptui(*cold, "--library", str(lib), "--keep-local", str(existing)),
                   "already exists", "not overwriting")
    assert existing.read_bytes() == b"keep me"
    assert_untouched(lab, libvirt.VIR_DOMAIN_RUNNING, lib)


def test_library_and_scratch_on_one_small_filesystem_need_room_for_both(make_domain, tmp_path):
    """The scratch output and the library copy exist at the same time on one filesystem."""
    lab = make_domain(state="running", size="64M", seed="24M")
    with tmpfs(tmp_path / "small", "size=40M") as small:
        env = {"SNAPTUI_SCRATCH_DIR": str(small / "scratch")}
        one_line_error(snaptui("snapshot", lab.name, "--name", "x", "--mode", "cold", "--to",
                               "library", "--library", str(small / "lib"), env=env),
                       "not enough space", "extracted image and the library copy")
        assert not list((small / "scratch").iterdir())
    assert_untouched(lab, libvirt.VIR_DOMAIN_RUNNING)


# ---------------------------------------------------------------- credentials


def _revoked_token() -> str:
    auth = lab_cloud()["auth"]
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": auth["username"], "password": auth["password"],
            "domain": {"id": auth.get("user_domain_id", "default")}}}},
        "scope": {"project": {"name": auth["project_name"],
                              "domain": {"id": auth.get("project_domain_id", "default")}}},
    }}
    url = auth["auth_url"].rstrip("/") + "/auth/tokens"
    token = requests.post(url, json=body, timeout=30).headers["X-Subject-Token"]
    revoked = requests.delete(url, headers={"X-Auth-Token": token, "X-Subject-Token": token},
                              timeout=30)
    assert revoked.status_code == 204, revoked.text
    return token


def test_cloud_credentials_refused_before_the_guest_is_touched(make_domain, tmp_path):
    lab = make_domain(state="running")
    auth = lab_cloud()["auth"]
    token = _revoked_token()
    base = lab_cloud()
    token_cloud = {**{k: v for k, v in base.items() if k != "auth"}, "auth_type": "v3token",
                   "auth": {"auth_url": auth["auth_url"], "token": token,
                            "project_name": auth["project_name"],
                            "project_domain_id": auth.get("project_domain_id", "default")}}
    cases = [
        (clouds_env(tmp_path, "wrongpw", lab_cloud(password="not-" + auth["password"])),
         ("authentication failed", "user admin", "401")),
        (clouds_env(tmp_path, "revoked", token_cloud),
         ("rejected the token of cloud revoked", "expired or revoked")),
        (clouds_env(tmp_path, "down", lab_cloud(
            auth_url=f"http://127.0.0.1:{closed_port()}/v3")),
         ("cannot reach Keystone", "connection refused")),
    ]
    for env, words in cases:
        for mode in ("cold", "live"):
            proc = snaptui("snapshot", lab.name, "--name", "x", "--mode", mode, "--to", "glance",
                           env=env)
            one_line_error(proc, *words)
            assert auth["password"] not in proc.stderr and token not in proc.stderr
        proc = snaptui("images", env=env)
        one_line_error(proc, *words)
    assert_untouched(lab, libvirt.VIR_DOMAIN_RUNNING)


# ---------------------------------------------------------------- names


@pytest.fixture
def glance() -> Iterator[tuple[GlanceImages, list[str]]]:
    store = GlanceImages.from_cloud(os.environ["OS_CLOUD"])
    made: list[str] = []
    yield store, made
    for image_id in made:
        with contextlib.suppress(Exception):
            store.delete(image_id)


HARD_NAMES = [
    "snaptui-test q'uo\"te $(touch /tmp/snaptui-pwned) `id`; rm -rf / && echo |x| <y> \\ *",
    "snaptui-test ünïcødé 名前 ☃ ‮rtl",
    "snaptui-test-" + "é" * 242,  # 255 characters: Glance's limit, still fine
]


def test_hard_names_arrive_in_glance_exactly(make_domain, glance):
    store, made = glance
    lab = make_domain(state="shut off")
    assert len(HARD_NAMES[2]) == 255
    for name in HARD_NAMES:
        proc = snaptui("snapshot", lab.name, "--name", name, "--mode", "cold", "--to", "glance",
                       "--json")
        assert proc.returncode == 0, proc.stderr
        done = json.loads(proc.stdout.splitlines()[-1])
        made.append(done["image_id"])
        assert done["event"] == "done" and done["name"] == name
        assert store.show(done["image_id"]).name == name
    assert not os.path.exists("/tmp/snaptui-pwned")
    dry = snaptui("snapshot", lab.name, "--name", HARD_NAMES[0], "--mode", "cold", "--to",
                  "glance", "--dry-run")
    assert dry.returncode == 0 and "'\"'\"'" in dry.stdout  # shell-quoted for copy and paste


def test_names_glance_refuses_are_one_line_and_fine_in_the_library(make_domain, tmp_path):
    """Glance (its database) refuses 4-byte UTF-8 characters: refused in preflight, while the
    library keeps such a name exactly."""
    lab = make_domain(state="running")
    name = "snaptui-test penguin 🐧 𝄞"
    for mode in ("cold", "live"):
        one_line_error(snaptui("snapshot", lab.name, "--name", name, "--mode", mode, "--to",
                               "glance"),
                       "characters Glance refuses", "U+1D11E", "U+1F427")
    assert_untouched(lab, libvirt.VIR_DOMAIN_RUNNING)
    lib = tmp_path / "lib"
    proc = snaptui("snapshot", lab.name, "--name", name, "--mode", "live", "--to", "library",
                   "--library", str(lib), "--json")
    assert proc.returncode == 0, proc.stderr
    image_id = json.loads(proc.stdout.splitlines()[-1])["image_id"]
    assert ImageLibrary(lib).show(image_id).name == name
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_names_that_look_like_paths_stay_in_the_library(make_domain, tmp_path):
    lab = make_domain(state="shut off")
    lib = tmp_path / "a" / "b" / "lib"
    names = ["../../etc/snaptui-test-x", "/etc/snaptui-test-y", "..", "a/../../b"]
    for name in names:
        proc = snaptui("snapshot", lab.name, "--name", name, "--mode", "cold", "--to", "library",
                       "--library", str(lib), "--json")
        assert proc.returncode == 0, proc.stderr
        image_id = json.loads(proc.stdout.splitlines()[-1])["image_id"]
        assert ImageLibrary(lib).show(image_id).name == name
    files = sorted(p.name for p in lib.iterdir())
    assert len(files) == 2 * len(names)
    assert all(uuid.UUID(f.split(".")[0]) for f in files)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()
                  and lib not in p.parents and p.parent.name != "disks") == []
    assert not Path("/etc/snaptui-test-x").exists() and not Path("/etc/snaptui-test-y").exists()


def test_keep_local_names_cannot_leave_the_keep_directory(make_domain, tmp_path):
    lab = make_domain(state="shut off", ndisks=2)
    keep = tmp_path / "keep"
    keep.mkdir()
    for name in ("../escaped", "sub/x", "../../../etc/snaptui-test-z"):
        one_line_error(snaptui("snapshot", lab.name, "--all-disks", "--name", name, "--mode",
                               "cold", "--to", "library", "--library", str(tmp_path / "lib"),
                               "--keep-local", str(keep)),
                       "--keep-local", "outside", str(keep))
    assert list(keep.iterdir()) == [] and not (tmp_path / "escaped-vda.qcow2").exists()
    assert_untouched(lab, libvirt.VIR_DOMAIN_SHUTOFF, tmp_path / "lib")


@pytest.mark.parametrize(("options", "words"), [
    (["--quiesce", "require"], ("--quiesce require", "does not answer", "nothing was changed")),
    (["--verify", "--verify-console", "(["], ("--verify-console", "regular expression")),
    (["--verify", "--verify-timeout", "0"], ("--verify-timeout",)),
], ids=["require-without-agent", "bad-console-regex", "zero-timeout"])
def test_quiesce_and_verify_refusals_touch_nothing(make_domain, tmp_path, options, words):
    lab = make_domain(state="running")  # the lab's domains have no guest agent
    lib = tmp_path / "lib"
    proc = snaptui("snapshot", lab.name, "--name", "x", "--mode", "live", "--to", "library",
                   "--library", str(lib), *options)
    assert proc.returncode == 2
    one_line_error(proc, *words)
    assert_untouched(lab, libvirt.VIR_DOMAIN_RUNNING, lib)
