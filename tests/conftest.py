"""Fixtures on the real lab: libvirtd + QEMU and Keystone + Glance started by ``scripts/lab up``.

Nothing here fakes a service. Two tiers share this file:

- the tiers without the lab (``pytest -m "not lab"``): tests that touch no lab fixture. They run
  on a machine with no lab: the lab's environment is never read for them. Of those, ``ui`` marks
  the ones whose module drives the dashboard (Pilot on its embedded demo lab, a few minutes) and
  ``unit`` the pure ones (``pytest -m unit``: seconds).
- the **lab tier**: every test that uses a lab fixture (``conn``, ``make_domain``, ``store``,
  ``own_images``, ``libvirt_uri``, ``os_cloud``, or any fixture built on them: all of them
  depend on the session fixture ``lab_env``) or sits in a module that declares
  ``pytestmark = pytest.mark.lab``. Such tests are marked ``lab`` automatically at collection,
  so a new test needs nothing but its fixtures. A new lab fixture only has to depend on
  ``lab_env`` (directly or through another lab fixture); a test that reads ``OS_CLOUD`` or
  ``LIBVIRT_DEFAULT_URI`` itself asks for ``lab_env``.

``lab_env`` exports the lab's variables: when they are not set already, they are read from
``scripts/lab env --json``; when the lab is not up, the test fails with a clear message. With
``SNAPTUI_NO_LAB=1`` it never asks: a lab test then fails at once (proof that the unit tier
does not touch the lab: ``SNAPTUI_NO_LAB=1 pytest -m "not lab"``).

Skips are policed (``skip_policy.py``): a skip whose reason is not in its allow-list fails the
run, so a test cannot quietly stop running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from host_dirs import HostDirs  # noqa: E402
from lab_domains import LabDomain, create_domain  # noqa: E402
from skip_policy import SkipPolicy  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LAB_VARS = ("LIBVIRT_DEFAULT_URI", "OS_CLIENT_CONFIG_FILE", "OS_CLOUD")
LAB_FIXTURE = "lab_env"


def _read_lab_env() -> dict[str, str]:
    """The lab's variables from ``scripts/lab env --json``; fails the test when it is down."""
    if os.environ.get("SNAPTUI_NO_LAB"):
        pytest.fail("this test needs the lab, but SNAPTUI_NO_LAB is set", pytrace=False)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lab"), "env", "--json"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"the lab is not up (run scripts/lab up): {proc.stderr.strip()}",
                    pytrace=False)
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def lab_env() -> dict[str, str]:
    """The lab's environment, exported into ``os.environ`` the first time a test needs it."""
    if os.environ.get("SNAPTUI_NO_LAB") or not all(os.environ.get(v) for v in LAB_VARS):
        for key, value in _read_lab_env().items():
            os.environ.setdefault(key, value)
    return {v: os.environ[v] for v in LAB_VARS}


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipPolicy(), "snaptui-skip-policy")  # marker: pyproject


def _drives_dashboard(item: pytest.Item) -> bool:
    """The test's module imports the dashboard (textual or snaptui.ui)."""
    module = getattr(item, "module", None)
    if module is None:
        return False
    for value in vars(module).values():
        name = getattr(value, "__module__", None) or getattr(value, "__name__", "")
        if isinstance(name, str) and name.startswith(("textual", "snaptui.ui")):
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``lab`` every test whose fixture closure reaches ``lab_env``; of the others, ``ui``
    those whose module drives the dashboard (on its demo lab) and ``unit`` the rest."""
    for item in items:
        if LAB_FIXTURE in getattr(item, "fixturenames", ()) or item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.lab)
        elif _drives_dashboard(item):
            item.add_marker(pytest.mark.ui)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _lab_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """A test marked ``lab`` (e.g. by its module's ``pytestmark``) gets the lab's environment
    even when it uses no lab fixture (it may read ``OS_CLOUD`` or run the CLI)."""
    if request.node.get_closest_marker("lab") is not None:
        request.getfixturevalue(LAB_FIXTURE)


@pytest.fixture(scope="session")
def host_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostDirs]:
    """Disk and scratch directories laid out as a stock host's (tests/host_dirs.py)."""
    dirs = HostDirs(tmp_path_factory.mktemp("host"))
    yield dirs
    dirs.remove()


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                    host_dirs: HostDirs):
    """Each test gets its own snaptui config/state/library dirs; the user's are never read.
    Its scratch dir is one QEMU (not root, as on a stock host) can enter."""
    base = tmp_path_factory.mktemp("snaptui-home")
    for var, sub in (("SNAPTUI_CONFIG_DIR", "config"), ("SNAPTUI_STATE_DIR", "state"),
                     ("SNAPTUI_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(base / sub))
    if host_dirs.as_root:
        monkeypatch.setenv("SNAPTUI_SCRATCH_DIR", str(host_dirs.scratch()))
    yield


@pytest.fixture(scope="session")
def libvirt_uri(lab_env: dict[str, str]) -> str:
    return lab_env["LIBVIRT_DEFAULT_URI"]


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
def disk_dir(host_dirs: HostDirs) -> Iterator[Path]:
    """This test's guest disks, in a libvirt-style images directory (0711 root)."""
    path = host_dirs.disks()
    yield path
    shutil.rmtree(path, ignore_errors=True)


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
def os_cloud(lab_env: dict[str, str]) -> str:
    return lab_env["OS_CLOUD"]


@pytest.fixture
def store(os_cloud: str):
    """The lab's Glance as an image store."""
    from snaptui.core.images.glance import GlanceImages

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


@pytest.fixture
def host(libvirt_uri: str):
    """A connection to the lab's libvirtd, closed after the test (a module with a ``host`` of
    its own, the demo lab's say, overrides this one)."""
    from snaptui.core.libvirt.host import LibvirtHost

    with LibvirtHost(libvirt_uri) as connected:
        yield connected


@pytest.fixture(scope="session")
def ceph_lab(lab_env: dict[str, str]):
    """The lab's Ceph (tests/lab_rbd.py): its SNAPTUI_LAB_CEPH_* variables, read from
    ``scripts/lab env`` when the shell did not export them."""
    if not os.environ.get("SNAPTUI_LAB_CEPH_CONF"):
        for key, value in _read_lab_env().items():
            os.environ.setdefault(key, value)
    from lab_rbd import CephLab

    return CephLab.from_env()


@pytest.fixture
def make_rbd_domain(conn: libvirt.virConnect, ceph_lab):
    """Factory: ``make_rbd_domain(state="running", size=64 MiB, seed=16 MiB)``, a disk-only
    domain on ``vms/<uuid>_disk``; removed (domain, image and its snapshots) at teardown."""
    from lab_rbd import RbdDomain, create_rbd_domain

    made: list[RbdDomain] = []

    def factory(**kwargs) -> RbdDomain:
        lab = create_rbd_domain(conn, ceph_lab, **kwargs)
        made.append(lab)
        return lab

    yield factory
    for lab in reversed(made):
        lab.remove()


@pytest.fixture
def fleet(tmp_path: Path, lab_env):
    """A second host: the lab's sshd reaching its libvirtd, with its own snaptui home and state
    (fleet_tools.Fleet), named in this test's config.toml."""
    from fleet_tools import Fleet, lab_ssh_env

    home = tmp_path / "remote-home"
    home.mkdir(mode=0o700)
    config = Path(os.environ["SNAPTUI_CONFIG_DIR"]) / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    made = Fleet(ssh_uri=lab_ssh_env()["SNAPTUI_LAB_SSH_URI"], remote_home=home,
                 remote_state=tmp_path / "remote-state", config=config)
    made.write_config()
    return made
