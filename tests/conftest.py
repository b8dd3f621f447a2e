"""Fixtures on the real lab: libvirtd + QEMU and Keystone + Glance started by ``scripts/lab up``.

Nothing here fakes a service. When the lab's environment is not exported, it is read from
``scripts/lab env --json``; when the lab is not up, the session fails with a clear message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lab_domains import LabDomain, create_domain  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LAB_VARS = ("LIBVIRT_DEFAULT_URI", "OS_CLIENT_CONFIG_FILE", "OS_CLOUD")


def _load_lab_env() -> None:
    if all(os.environ.get(v) for v in LAB_VARS):
        return
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lab"), "env", "--json"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.exit(f"the lab is not up (run scripts/lab up): {proc.stderr.strip()}", returncode=3)
    for key, value in json.loads(proc.stdout).items():
        os.environ.setdefault(key, value)


_load_lab_env()


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test gets its own snaptui config/state/library dirs; the user's are never read."""
    base = tmp_path_factory.mktemp("snaptui-home")
    for var, sub in (("SNAPTUI_CONFIG_DIR", "config"), ("SNAPTUI_STATE_DIR", "state"),
                     ("SNAPTUI_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(base / sub))
    yield


@pytest.fixture(scope="session")
def libvirt_uri() -> str:
    return os.environ["LIBVIRT_DEFAULT_URI"]


@pytest.fixture(scope="session")
def _lab_conns(libvirt_uri: str) -> Iterator[list[libvirt.virConnect]]:
    held = [libvirt.open(libvirt_uri)]
    yield held
    for connection in held:
        try:
            connection.close()
        except libvirt.libvirtError:
            pass


@pytest.fixture
def conn(_lab_conns: list[libvirt.virConnect], libvirt_uri: str) -> libvirt.virConnect:
    """One connection shared by the session, reopened when libvirtd restarted under it
    (tests/test_libvirt_host.py restarts libvirtd to test reconnecting)."""
    try:
        _lab_conns[-1].getLibVersion()
    except libvirt.libvirtError:
        _lab_conns.append(libvirt.open(libvirt_uri))
    return _lab_conns[-1]


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    path = tmp_path / "disks"
    path.mkdir()
    return path


@pytest.fixture
def make_domain(conn: libvirt.virConnect, disk_dir: Path):
    """Factory: ``make_domain(state="running", fmt="qcow2", size="64M", seed="16M", ndisks=1)``."""
    made: list[LabDomain] = []

    def factory(**kwargs) -> LabDomain:
        lab = create_domain(conn, disk_dir, **kwargs)
        made.append(lab)
        return lab

    yield factory
    for lab in reversed(made):
        lab.remove()


@pytest.fixture(scope="session")
def os_cloud() -> str:
    return os.environ["OS_CLOUD"]


@pytest.fixture
def store(os_cloud: str):
    """The lab's Glance as an image store."""
    from snaptui.core.glance_images import GlanceImages

    return GlanceImages.from_cloud(os_cloud)


@pytest.fixture
def own_images(store) -> Iterator[list[str]]:
    """Ids of the images a test made; all deleted at teardown, even after a failed setup."""
    from snaptui.core.errors import NotFound

    ids: list[str] = []
    yield ids
    for image_id in ids:
        try:
            store.delete(image_id)
        except NotFound:
            pass
