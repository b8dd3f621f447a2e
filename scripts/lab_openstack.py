"""OpenStack side of the lab: the cached venv, Keystone and Glance under gunicorn, clouds.yaml."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab_proc import (
    LabError,
    forget,
    http_ok,
    matches,
    port_busy,
    private_dir,
    read_pidfile,
    record,
    recorded,
    run,
    say,
    stop,
    write_private,
)

CLOUD = "snaptui-lab"
REGION = "RegionOne"
REQUIREMENTS = Path(__file__).resolve().parent / "lab_requirements.txt"


@dataclass(frozen=True)
class Lab:
    """Where the lab keeps its state and which loopback ports it serves on."""

    root: Path
    cache: Path
    keystone_port: int
    glance_port: int

    @classmethod
    def from_env(cls) -> Lab:
        """Build from SNAPTUI_LAB_DIR / _CACHE / _KEYSTONE_PORT / _GLANCE_PORT or defaults."""
        env = os.environ
        return cls(Path(env.get("SNAPTUI_LAB_DIR") or "/var/tmp/snaptui-lab"),
                   Path(env.get("SNAPTUI_LAB_CACHE") or "/var/cache/snaptui-lab"),
                   int(env.get("SNAPTUI_LAB_KEYSTONE_PORT") or 25357),
                   int(env.get("SNAPTUI_LAB_GLANCE_PORT") or 29292))

    venv = property(lambda self: self.cache / "venv-openstack")
    run_dir = property(lambda self: self.root / "run")
    log_dir = property(lambda self: self.root / "logs")
    clouds_yaml = property(lambda self: self.root / "clouds.yaml")
    password_file = property(lambda self: self.root / "admin-password")
    keystone_url = property(lambda self: f"http://127.0.0.1:{self.keystone_port}/v3/")
    glance_url = property(lambda self: f"http://127.0.0.1:{self.glance_port}")

    def bin(self, name: str) -> str:
        """Path of an executable inside the OpenStack venv."""
        return str(self.venv / "bin" / name)

    def marker(self, service: str) -> str:
        """String in the gunicorn master's cmdline (``--name``) that identifies ``service``."""
        port = self.keystone_port if service == "keystone" else self.glance_port
        return f"snaptui-lab-{service}-{port}"


# ---------------------------------------------------------------- venv

def ensure_venv(lab: Lab) -> None:
    """Create or update the cached venv unless its stamp matches the requirements' sha256."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = lab.venv / ".snaptui-lab-requirements.sha256"
    python = lab.venv / "bin" / "python"
    if stamp.is_file() and stamp.read_text().strip() == digest and python.exists():
        return
    start = time.monotonic()
    log = lab.log_dir / "venv.log"
    lab.cache.mkdir(parents=True, exist_ok=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    works = python.exists() and subprocess.run([str(python), "-c", "import pip"],
                                               capture_output=True, check=False).returncode == 0
    if works:
        # Syncing the pins in place takes seconds; a fresh build takes about a minute.
        say(f"updating {lab.venv} to {REQUIREMENTS.name} (log {log})")
        try:
            run([*pip, "-r", str(REQUIREMENTS)], log, what="pip install")
        except LabError:
            works = False
    if not works:
        say(f"building {lab.venv} (about a minute; log {log})")
        shutil.rmtree(lab.venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(lab.venv)], log, what="python3 -m venv")
        run([*pip, "--upgrade", "pip"], log, what="pip upgrade")
        run([*pip, "-r", str(REQUIREMENTS)], log, what="pip install")
    stamp.write_text(digest + "\n")
    say(f"venv ready in {time.monotonic() - start:.1f} s")


# ---------------------------------------------------------------- secrets and clouds.yaml

def admin_password(lab: Lab) -> str:
    """The admin password, generated once and kept 0600 in the lab dir (never printed)."""
    if lab.password_file.is_file():
        return lab.password_file.read_text().strip()
    password = secrets.token_urlsafe(24)
    write_private(lab.password_file, password + "\n")
    return password


def write_clouds_yaml(lab: Lab, password: str) -> None:
    """clouds.yaml (0600) for cloud ``snaptui-lab``; JSON strings are valid YAML scalars."""
    auth = {"auth_url": lab.keystone_url, "username": "admin", "password": password,
            "project_name": "admin", "user_domain_id": "default",
            "project_domain_id": "default"}
    lines = ["clouds:", f"  {CLOUD}:", "    auth:"]
    lines += [f"      {k}: {json.dumps(v)}" for k, v in auth.items()]
    lines += [f"    region_name: {REGION}", "    interface: public",
              '    identity_api_version: "3"']
    write_private(lab.clouds_yaml, "\n".join(lines) + "\n")


# ---------------------------------------------------------------- keystone

# Both services run two gunicorn workers on one sqlite file. oslo.db opens every transaction
# with a deferred BEGIN, so a transaction that reads and then writes while the other worker
# commits gets SQLITE_BUSY at once (no busy timeout helps): Glance then answers 500 to an upload
# or a delete. BEGIN IMMEDIATE takes the write lock up front, where the busy timeout waits.
SQLITE_IMMEDIATE = '''
import sqlite3
import sqlite3.dbapi2


class _ImmediateCursor(sqlite3.Cursor):
    def execute(self, sql, *args):
        if sql.strip().upper() == "BEGIN":
            sql = "BEGIN IMMEDIATE"
        return super().execute(sql, *args)


class _ImmediateConnection(sqlite3.Connection):
    def cursor(self, factory=_ImmediateCursor):
        return super().cursor(factory)


_connect = sqlite3.connect


def _connect_immediate(*args, **kwargs):
    kwargs.setdefault("factory", _ImmediateConnection)
    return _connect(*args, **kwargs)


sqlite3.connect = sqlite3.dbapi2.connect = _connect_immediate  # SQLAlchemy uses dbapi2
'''

GLANCE_WSGI = '''"""WSGI entry for Glance under gunicorn; written by scripts/lab."""
''' + SQLITE_IMMEDIATE + '''
from glance.wsgi.api import application  # noqa: E402,F401
'''

KEYSTONE_WSGI = '''"""WSGI entry for Keystone under gunicorn; written by scripts/lab."""
''' + SQLITE_IMMEDIATE + '''
import sys

# Keystone parses sys.argv with oslo.config and exits on gunicorn's own options.
sys.argv = sys.argv[:1]
from keystone.server.wsgi import initialize_public_application  # noqa: E402

application = initialize_public_application()
'''


def _keystone_conf(lab: Lab, base: Path) -> str:
    return f"""[DEFAULT]
log_file = {lab.log_dir / 'keystone.log'}

[database]
connection = sqlite:///{base / 'keystone.db'}?timeout=30

[token]
provider = fernet

[fernet_tokens]
key_repository = {base / 'fernet-keys'}

[credential]
key_repository = {base / 'credential-keys'}
"""


def _write_config(lab: Lab, service: str, path: Path, text: str) -> None:
    """Write a config file (0600); when an existing one changes, flag it: a running service
    started by an older lab (no config stamp) is then restarted (``start_gunicorn``)."""
    try:
        old: str | None = path.read_text()
    except OSError:
        old = None
    if old == text:
        return
    write_private(path, text)
    if old is not None:
        (lab.run_dir / f"{service}.config-changed").touch()


def init_keystone(lab: Lab, password: str) -> dict[str, str]:
    """Write Keystone's config and WSGI shim, migrate and bootstrap once; return its env."""
    base = private_dir(lab.root / "keystone")
    conf = base / "keystone.conf"
    _write_config(lab, "keystone", conf, _keystone_conf(lab, base))
    (base / "lab_keystone_wsgi.py").write_text(KEYSTONE_WSGI)
    env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=str(conf))
    done = base / "bootstrapped"
    if done.is_file() and done.read_text().strip() == lab.keystone_url:
        use_wal(base / "keystone.db")
        return env
    start = time.monotonic()
    log = lab.log_dir / "keystone-manage.log"
    manage = [lab.bin("keystone-manage"), "--config-file", str(conf)]
    owner = ["--keystone-user", "root", "--keystone-group", "root"]
    # Key repositories do not touch the database: create them while db_sync runs.
    keys = [subprocess.Popen([*manage, step, *owner], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for step in ("fernet_setup", "credential_setup")]
    run([*manage, "db_sync"], log, env, "keystone-manage db_sync")
    for step, proc in zip(("fernet_setup", "credential_setup"), keys, strict=True):
        if proc.wait() != 0:
            run([*manage, step, *owner], log, env, f"keystone-manage {step}")
    url = lab.keystone_url
    # The password goes through the environment, not argv, so `ps` never shows it.
    run([*manage, "bootstrap", "--bootstrap-admin-url", url, "--bootstrap-public-url", url,
         "--bootstrap-internal-url", url, "--bootstrap-region-id", REGION],
        log, dict(env, OS_BOOTSTRAP_PASSWORD=password), "keystone-manage bootstrap")
    done.write_text(url + "\n")
    use_wal(base / "keystone.db")
    say(f"keystone initialised in {time.monotonic() - start:.1f} s")
    return env


def use_wal(db: Path) -> None:
    """Switch a sqlite database to write-ahead logging (persistent in the file).

    With the default rollback journal, two gunicorn workers writing at once can hit an
    immediate "database is locked" (a lock upgrade the busy timeout cannot wait out): Glance
    then fails an upload with 500. In WAL mode readers never block the writer.
    """
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


# ---------------------------------------------------------------- glance

def _glance_conf(lab: Lab, base: Path, password: str) -> str:
    """Two stores, as a Ceph-backed cloud with a file store beside it: ``fs`` (the default)
    and ``ceph`` (rbd on the lab's pool ``images`` as client.glance). Locations are shown and
    may be set (``show_multiple_locations``): Nova's and snaptui's direct RBD snapshots give
    Glance the location of a clone they made in the cluster."""
    auth = lab.keystone_url.rstrip("/").removesuffix("/v3")
    return f"""[DEFAULT]
enabled_backends = fs:file, ceph:rbd
show_image_direct_url = True
show_multiple_locations = True
log_file = {lab.log_dir / 'glance.log'}

[database]
connection = sqlite:///{base / 'glance.db'}?timeout=30

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = {base / 'images'}/

[ceph]
store_description = Ceph RBD (the lab's one-node cluster, pool images)
rbd_store_pool = images
rbd_store_user = glance
rbd_store_ceph_conf = {lab.root / 'ceph' / 'ceph.conf'}
rbd_store_chunk_size = 8

[os_glance_staging_store]
filesystem_store_datadir = {base / 'staging'}/

[os_glance_tasks_store]
filesystem_store_datadir = {base / 'tasks'}/

[paste_deploy]
flavor = keystone
config_file = {base / 'etc' / 'glance-api-paste.ini'}

[keystone_authtoken]
www_authenticate_uri = {auth}/v3
auth_url = {auth}/v3
auth_type = password
username = admin
password = {password}
project_name = admin
user_domain_id = default
project_domain_id = default
region_name = {REGION}
interface = public
"""


def init_glance(lab: Lab, password: str) -> dict[str, str]:
    """Write Glance's config dir and migrate its db once; return its env."""
    base = private_dir(lab.root / "glance")
    etc = private_dir(base / "etc")
    for sub in ("images", "staging", "tasks"):
        private_dir(base / sub)
    paste = lab.venv / "etc" / "glance" / "glance-api-paste.ini"
    if not paste.is_file():
        raise LabError(f"{paste} is missing; delete {lab.venv} and run scripts/lab up again")
    _write_config(lab, "glance", etc / "glance-api-paste.ini", paste.read_text())
    conf = etc / "glance-api.conf"
    _write_config(lab, "glance", conf, _glance_conf(lab, base, password))
    (base / "lab_glance_wsgi.py").write_text(GLANCE_WSGI)
    env = dict(os.environ, OS_GLANCE_CONFIG_DIR=str(etc))
    done = base / "db-synced"
    if not done.is_file():
        start = time.monotonic()
        run([lab.bin("glance-manage"), "--config-file", str(conf), "db_sync"],
            lab.log_dir / "glance-manage.log", env, "glance-manage db_sync")
        done.touch()
        say(f"glance database ready in {time.monotonic() - start:.1f} s")
    use_wal(base / "glance.db")
    return env


# ---------------------------------------------------------------- gunicorn

def service_pid(lab: Lab, service: str) -> int | None:
    """Pid of the lab's gunicorn master for ``service`` if it runs, else None."""
    return recorded(lab.run_dir, service)


def _config_digest(env: dict[str, str]) -> str:
    """sha256 of a service's config files (Keystone's file, Glance's directory)."""
    digest = hashlib.sha256()
    for path in _config_paths(env):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _config_paths(env: dict[str, str]) -> list[Path]:
    paths = [Path(p) for p in env.get("OS_KEYSTONE_CONFIG_FILES", "").split(",") if p]
    if env.get("OS_GLANCE_CONFIG_DIR"):
        paths += sorted(Path(env["OS_GLANCE_CONFIG_DIR"]).glob("*"))
    return paths


def _restart_when_changed(lab: Lab, service: str, digest: str) -> None:
    """Stop the lab's running ``service`` when it was started with another config (a lab
    updated under it); the caller starts it again. Its old master must be gone first, or the
    new one cannot bind the port."""
    pid = service_pid(lab, service)
    stamp = lab.run_dir / f"{service}.config.sha256"
    # the stamp names the pid it was written for: a stamp left by an earlier run says nothing
    stamped = stamp.read_text().split() if stamp.is_file() else []
    if not pid or stamped == [str(pid), digest]:
        return
    changed = lab.run_dir / f"{service}.config-changed"
    if (not stamped or stamped[0] != str(pid)) and not changed.is_file():
        stamp.write_text(f"{pid} {digest}\n")  # started by an older lab, with this config
        return
    say(f"{service} (pid {pid}) runs with an older config: restarting it "
        f"({stop(pid, lab.marker(service))})")
    forget(lab.run_dir, service)
    deadline = time.monotonic() + 15
    while port_busy(lab.glance_port if service == "glance" else lab.keystone_port):
        if time.monotonic() > deadline:
            raise LabError(f"{service}'s port is still taken after stopping it")
        time.sleep(0.1)


def start_gunicorn(lab: Lab, service: str, app: str, port: int, env: dict[str, str],
                   chdir: Path) -> None:
    """Start gunicorn daemonised for ``service`` unless the lab's one already runs with the
    same config (restarted when its config changed)."""
    digest = _config_digest(env)
    _restart_when_changed(lab, service, digest)
    if service_pid(lab, service):
        return
    forget(lab.run_dir, service)
    pidfile = lab.run_dir / f"{service}.gunicorn.pid"
    stale = read_pidfile(pidfile)
    if stale and not matches(stale, lab.marker(service)):
        pidfile.unlink(missing_ok=True)
    if port_busy(port):
        raise LabError(f"127.0.0.1:{port} is taken by another program; pick another port with "
                       f"SNAPTUI_LAB_{service.upper()}_PORT")
    log = lab.log_dir / f"{service}-gunicorn.log"
    argv = [lab.bin("gunicorn"), "--name", lab.marker(service), "--bind", f"127.0.0.1:{port}",
            "--workers", "2", "--timeout", "600", "--graceful-timeout", "5",
            "--chdir", str(chdir), "--pid", str(pidfile), "--daemon",
            "--error-logfile", str(log), "--capture-output", app]
    run(argv, log, env, f"gunicorn for {service}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pid = read_pidfile(pidfile)
        if matches(pid, lab.marker(service)):
            record(lab.run_dir, service, pid, lab.marker(service))
            (lab.run_dir / f"{service}.config.sha256").write_text(f"{pid} {digest}\n")
            (lab.run_dir / f"{service}.config-changed").unlink(missing_ok=True)
            return
        time.sleep(0.1)
    raise LabError(f"gunicorn for {service} did not start, see {log}")


def wait_ready(lab: Lab, service: str, url: str, since: float, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers; fail early, naming the log, if the master dies."""
    log = lab.log_dir / f"{service}-gunicorn.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url):
            say(f"{service} ready in {time.monotonic() - since:.1f} s ({url})")
            return
        if not service_pid(lab, service):
            raise LabError(f"{service} exited while starting, see {log} "
                           f"and {lab.log_dir / (service + '.log')}")
        time.sleep(0.25)
    raise LabError(f"{service} does not answer at {url} after {timeout:.0f} s, see {log}")


# ---------------------------------------------------------------- catalog

REGISTER = r"""
import os, sys
import openstack
url = sys.argv[1]
conn = openstack.connect(cloud=os.environ["OS_CLOUD"])
ident = conn.identity
svc = next((s for s in ident.services() if s.type == "image"), None)
if svc is None:
    svc = ident.create_service(name="glance", type="image", description="snaptui lab Glance")
eps = list(ident.endpoints(service_id=svc.id))
for iface in ("public", "internal", "admin"):
    ep = next((e for e in eps if e.interface == iface and e.region_id == "RegionOne"), None)
    if ep is None:
        ident.create_endpoint(service_id=svc.id, interface=iface, url=url, region_id="RegionOne")
    elif ep.url != url:
        ident.update_endpoint(ep, url=url)
"""


def register_glance(lab: Lab) -> None:
    """Make sure Keystone's catalog lists Glance (type image) at its URL, once per URL."""
    done = lab.root / "glance" / "catalog-registered"
    if done.is_file() and done.read_text().strip() == lab.glance_url:
        return
    start = time.monotonic()
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(lab.clouds_yaml), OS_CLOUD=CLOUD)
    run([lab.bin("python"), "-c", REGISTER, lab.glance_url], lab.log_dir / "catalog.log", env,
        "registering Glance in Keystone")
    done.write_text(lab.glance_url + "\n")
    say(f"glance registered in the catalog in {time.monotonic() - start:.1f} s")
