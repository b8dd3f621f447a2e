"""The lab's Ceph: a one-node cluster on loopback, in RAM, with cephx on (as clouds run it).

One mon (``a``), one mgr (``x``) and one OSD (``0``) on **memstore** (RAM: the cluster is made
anew whenever it is not running, in about 8 s), pool size 1, messenger v1 on 127.0.0.1:PORT
(SNAPTUI_LAB_CEPH_PORT, default 26789). Pools ``vms`` (guests' disks, Nova's name) and ``images``
(Glance's). Users as an OpenStack deployment has them: ``client.snaptui-lab`` (Nova's role: rbd
on ``vms`` and ``images``, which Nova's direct snapshot writes to) and ``client.glance`` (rbd on
``images``); each keyring 0600 in the lab's directory. A libvirt secret of usage type ``ceph``
holds the client key (``private='no'``, as Nova defines it), so guests' disks carry
``<auth username='snaptui-lab'><secret type='ceph' uuid=…/></auth>``.

Everything lives under ``$SNAPTUI_LAB_DIR/ceph`` (0700); the daemons are started and stopped
by recorded pids like the other lab services. ``python3-rbd``/``python3-rados`` are linked into
the lab's OpenStack venv (glance_store's rbd driver imports them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from lab_proc import (
    LabError,
    forget,
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

PACKAGES = ("ceph-mon", "ceph-osd", "ceph-mgr", "ceph-common", "qemu-block-extra",
            "python3-rbd", "python3-rados")
DEFAULT_PORT = 26789
CLIENT = "snaptui-lab"  # the client.nova-style user guests' disks authenticate as
GLANCE_CLIENT = "glance"
POOLS = ("vms", "images")
PG_NUM = "8"
OSD_RAM = 2 << 30  # memstore's device size: the OSD's RAM budget for all objects
DAEMONS = (("mon", "a"), ("mgr", "x"), ("osd", "0"))  # start order; stopped in reverse
MODULES = ("rados", "rbd")  # python3-rados, python3-rbd: built for the system python only
# Nova's documented caps for its user, with rbd on images too (direct snapshots clone there).
CLIENT_CAPS = ("mon", "profile rbd",
               "osd", "profile rbd pool=vms, profile rbd pool=images",
               "mgr", "profile rbd pool=vms, profile rbd pool=images")
GLANCE_CAPS = ("mon", "profile rbd", "osd", "profile rbd pool=images",
               "mgr", "profile rbd pool=images")


def port() -> int:
    return int(os.environ.get("SNAPTUI_LAB_CEPH_PORT") or DEFAULT_PORT)


def ceph_dir(root: Path) -> Path:
    return root / "ceph"


def conf_path(root: Path) -> Path:
    return ceph_dir(root) / "ceph.conf"


def keyring(root: Path, name: str) -> Path:
    """The keyring of ``client.NAME`` (the [client] section's ``keyring`` pattern)."""
    return ceph_dir(root) / f"ceph.client.{name}.keyring"


def _marker(root: Path, kind: str, ident: str) -> str:
    """What identifies a lab daemon in /proc: its argv's config path and id."""
    return f"-c {conf_path(root)} -i {ident}"


def _record_name(kind: str) -> str:
    return f"ceph-{kind}"


def daemon_pid(root: Path, kind: str) -> int | None:
    return recorded(root / "run", _record_name(kind))


def secret_uuid(root: Path) -> str | None:
    try:
        return (ceph_dir(root) / "secret-uuid").read_text().strip() or None
    except OSError:
        return None


def fsid(root: Path) -> str | None:
    try:
        return (ceph_dir(root) / "fsid").read_text().strip() or None
    except OSError:
        return None


def env_vars(root: Path) -> dict[str, str]:
    """What tests and a shell need to put guests on RBD (the key itself is never printed)."""
    return {"SNAPTUI_LAB_CEPH_MON": f"127.0.0.1:{port()}",
            "SNAPTUI_LAB_CEPH_CONF": str(conf_path(root)),
            "SNAPTUI_LAB_CEPH_USER": CLIENT,
            "SNAPTUI_LAB_CEPH_KEYRING": str(keyring(root, CLIENT)),
            "SNAPTUI_LAB_CEPH_SECRET_UUID": secret_uuid(root) or "",
            "SNAPTUI_LAB_CEPH_POOL": "vms",
            "SNAPTUI_LAB_CEPH_IMAGES_POOL": "images"}


def _conf(root: Path, cluster_fsid: str) -> str:
    d = ceph_dir(root)
    logs = root / "logs"
    daemon = [f"run_dir = {d / 'run'}",
              f"pid_file = {d / 'run'}/$name.pid",
              f"admin_socket = {d / 'run'}/$name.asok",
              f"log_file = {logs}/ceph-$name.log",
              "keyring = $mon_data/keyring"]
    return "\n".join([
        "# snaptui lab: a one-node Ceph on loopback, in RAM (scripts/lab_ceph.py)",
        "[global]",
        f"fsid = {cluster_fsid}",
        f"mon_host = v1:127.0.0.1:{port()}",
        "mon_initial_members = a",
        "auth_cluster_required = cephx",
        "auth_service_required = cephx",
        "auth_client_required = cephx",
        "ms_bind_msgr2 = false",
        "osd_pool_default_size = 1",
        "osd_pool_default_min_size = 1",
        "mon_allow_pool_size_one = true",
        "mon_warn_on_pool_no_redundancy = false",
        "osd_crush_chooseleaf_type = 0",
        "auth_allow_insecure_global_id_reclaim = false",
        "mon_data_avail_warn = 2",  # the lab's disk is shared: no warning at 30 % free
        "osd_objectstore = memstore",
        f"memstore_device_bytes = {OSD_RAM}",
        "",
        "[mon]",
        *daemon,
        f"mon_data = {d / 'mon'}/$cluster-$id",
        "mon_cluster_log_file = /dev/null",
        "",
        "[mgr]",
        *daemon[:-1],
        f"mgr_data = {d / 'mgr'}/$cluster-$id",
        "keyring = $mgr_data/keyring",
        "",
        "[osd]",
        *daemon[:-1],
        f"osd_data = {d / 'osd'}/$cluster-$id",
        "keyring = $osd_data/keyring",
        "osd_max_object_name_len = 256",
        "osd_max_object_namespace_len = 64",
        "",
        "[client]",
        f"keyring = {d}/$cluster.$name.keyring",
        "",
    ])


def _ceph(root: Path, *args: str) -> list[str]:
    """argv of the ``ceph`` CLI as client.admin on the lab's cluster."""
    return ["ceph", "-c", str(conf_path(root)), "--connect-timeout", "20", *args]


def _output(argv: list[str], log: Path, what: str) -> str:
    with open(log, "ab") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n".encode())
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=fh, stdin=subprocess.DEVNULL,
                              timeout=120, check=False)
    if proc.returncode != 0:
        raise LabError(f"{what} failed (exit {proc.returncode}), see {log}")
    return proc.stdout.decode()


def _start(root: Path, kind: str, ident: str, log: Path) -> None:
    """Start one daemon (it forks into the background) and record its pid."""
    if daemon_pid(root, kind):
        return
    forget(root / "run", _record_name(kind))
    pidfile = ceph_dir(root) / "run" / f"{kind}.{ident}.pid"
    pidfile.unlink(missing_ok=True)
    run([f"ceph-{kind}", "-c", str(conf_path(root)), "-i", ident], log, what=f"ceph-{kind}")
    marker = _marker(root, kind, ident)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pid = read_pidfile(pidfile)
        if matches(pid, marker):
            record(root / "run", _record_name(kind), pid, marker)  # type: ignore[arg-type]
            return
        time.sleep(0.1)
    raise LabError(f"ceph-{kind} did not start; see {root / 'logs'}/ceph-{kind}.{ident}.log")


def _bootstrap(root: Path, log: Path) -> None:
    """A new cluster: keys, monmap, the mon's store; the mgr's and OSD's keys once it runs."""
    d = ceph_dir(root)
    for path in d.iterdir():  # all but the libvirt secret's uuid (kept: guests name it)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != "secret-uuid":
            path.unlink()
    for sub in ("mon", "mgr", "osd", "run"):
        private_dir(d / sub)
    cluster_fsid = str(uuid.uuid4())
    write_private(conf_path(root), _conf(root, cluster_fsid))
    mon_keyring = d / "mon.keyring"
    admin = keyring(root, "admin")
    run(["ceph-authtool", "--create-keyring", str(mon_keyring), "--gen-key", "-n", "mon.",
         "--cap", "mon", "allow *"], log, what="ceph-authtool (mon.)")
    run(["ceph-authtool", "--create-keyring", str(admin), "--gen-key", "-n", "client.admin",
         "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *",
         "--cap", "mds", "allow *"], log, what="ceph-authtool (client.admin)")
    run(["ceph-authtool", str(mon_keyring), "--import-keyring", str(admin)], log,
        what="ceph-authtool --import-keyring")
    monmap = d / "monmap"
    run(["monmaptool", "--create", "--fsid", cluster_fsid, "--addv", "a",
         f"[v1:127.0.0.1:{port()}]", str(monmap)], log, what="monmaptool")
    run(["ceph-mon", "-c", str(conf_path(root)), "-i", "a", "--mkfs", "--monmap", str(monmap),
         "--keyring", str(mon_keyring)], log, what="ceph-mon --mkfs")
    for path in (mon_keyring, admin, monmap):
        path.chmod(0o600)
    (d / "fsid").write_text(cluster_fsid + "\n")


def _init_mgr_osd(root: Path, log: Path) -> None:
    """Keys for the mgr and the OSD and the OSD's (memstore) filesystem, on the running mon."""
    d = ceph_dir(root)
    mgr_dir = private_dir(d / "mgr" / "ceph-x")
    _output(_ceph(root, "auth", "get-or-create", "mgr.x", "mon", "allow profile mgr", "osd",
                  "allow *", "mds", "allow *", "-o", str(mgr_dir / "keyring")), log,
            "ceph auth get-or-create mgr.x")
    osd_uuid = str(uuid.uuid4())
    osd_id = _output(_ceph(root, "osd", "create", osd_uuid), log, "ceph osd create").strip()
    if osd_id != "0":
        raise LabError(f"the new OSD got id {osd_id}, not 0; remove {d} and try again")
    osd_dir = private_dir(d / "osd" / "ceph-0")
    _output(_ceph(root, "auth", "get-or-create", "osd.0", "osd", "allow *", "mon",
                  "allow profile osd", "mgr", "allow profile osd", "-o",
                  str(osd_dir / "keyring")), log, "ceph auth get-or-create osd.0")
    # The OSD id and fsid must be the ones the mon handed out ("wrong fsid" otherwise).
    run(["ceph-osd", "-c", str(conf_path(root)), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid],
        log, what="ceph-osd --mkfs")


def _init_pools_users(root: Path, log: Path) -> None:
    """Pools vms and images (rbd), and the users guests and Glance authenticate as."""
    for pool in POOLS:
        _output(_ceph(root, "osd", "pool", "create", pool, PG_NUM), log,
                f"ceph osd pool create {pool}")
        _output(_ceph(root, "osd", "pool", "application", "enable", pool, "rbd"), log,
                f"ceph osd pool application enable {pool}")
    for name, caps in ((CLIENT, CLIENT_CAPS), (GLANCE_CLIENT, GLANCE_CAPS)):
        path = keyring(root, name)
        _output(_ceph(root, "auth", "get-or-create", f"client.{name}", *caps,
                      "-o", str(path)), log, f"ceph auth get-or-create client.{name}")
        path.chmod(0o600)


def _wait_writable(root: Path, log: Path, timeout: float = 60.0) -> None:
    """Until each pool takes a write (its placement groups are active)."""
    deadline = time.monotonic() + timeout
    for pool in POOLS:
        argv = ["rados", "-c", str(conf_path(root)), "-p", pool, "put", "snaptui-lab-probe",
                "/dev/null"]
        while True:
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=max(1.0, deadline
                                      - time.monotonic()), check=False)
            except subprocess.TimeoutExpired:
                proc = None
            if proc is not None and proc.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise LabError(f"pool {pool} takes no write after {timeout:.0f} s; see "
                               f"{root / 'logs'}/ceph-osd.0.log and {log}")
            time.sleep(0.3)
        subprocess.run(["rados", "-c", str(conf_path(root)), "-p", pool, "rm",
                        "snaptui-lab-probe"], capture_output=True, timeout=30, check=False)


def _client_key(root: Path) -> str:
    """client.snaptui-lab's key (base64) from its keyring."""
    for line in keyring(root, CLIENT).read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "key":
            return value.strip()
    raise LabError(f"no key in {keyring(root, CLIENT)}")


def ensure_secret(root: Path, log: Path) -> None:
    """The libvirt ``ceph`` secret with client.snaptui-lab's key (defined once, value set each
    time: a rebuilt cluster has a new key). The key reaches virsh through a 0600 file."""
    d = ceph_dir(root)
    ident = secret_uuid(root) or str(uuid.uuid4())
    xml = d / "secret.xml"
    xml.write_text(f"<secret ephemeral='no' private='no'><uuid>{ident}</uuid>"
                   f"<usage type='ceph'><name>client.{CLIENT} snaptui lab</name></usage>"
                   "</secret>\n")
    run(["virsh", "-c", "qemu:///system", "secret-define", str(xml)], log,
        what="virsh secret-define")
    (d / "secret-uuid").write_text(ident + "\n")
    keyfile = d / "client.key"
    write_private(keyfile, _client_key(root))
    try:
        run(["virsh", "-c", "qemu:///system", "secret-set-value", ident, "--file",
             str(keyfile)], log, what="virsh secret-set-value")
    finally:
        keyfile.unlink(missing_ok=True)


def link_modules(python: Path, log: Path) -> None:
    """Make python3-rados/python3-rbd importable by ``python`` (a venv of the same minor
    version): symlink the system build into its site-packages, as scripts/setup does."""
    dist = Path("/usr/lib/python3/dist-packages")
    probe = ("import sysconfig; print(sysconfig.get_paths()['purelib']); "
             "print(sysconfig.get_config_var('EXT_SUFFIX'))")
    site, tag = _output([str(python), "-c", probe], log, "venv paths").split()
    for name in MODULES:
        built = dist / f"{name}{tag}"
        if not built.is_file():
            raise LabError(f"{built} is missing: python3-{name} has no build for {python}")
        link = Path(site) / built.name
        if not link.exists():
            link.unlink(missing_ok=True)
            link.symlink_to(built)


def ensure_ceph(root: Path, log_dir: Path) -> None:
    """Start the cluster unless the lab's daemons all run; return once both pools take writes.

    memstore keeps the objects in the OSD's RAM only (a restarted OSD finds its placement
    groups gone), so a cluster that is not fully running is made anew: new fsid, keys and
    pools; the libvirt secret keeps its uuid and gets the new key.
    """
    start = time.monotonic()
    d = private_dir(ceph_dir(root))
    log = log_dir / "ceph-setup.log"
    running = all(daemon_pid(root, kind) for kind, _ in DAEMONS)
    if not running:
        stop_ceph(root)
        if port_busy(port()):
            raise LabError(f"127.0.0.1:{port()} is taken by another program; choose another "
                           "port with SNAPTUI_LAB_CEPH_PORT")
        _bootstrap(root, log)
        private_dir(d / "run")
        _start(root, "mon", "a", log)
        _init_mgr_osd(root, log)
        _start(root, "mgr", "x", log)
        _start(root, "osd", "0", log)
        _init_pools_users(root, log)
    _wait_writable(root, log)
    ensure_secret(root, log)
    if not running:
        say(f"ceph ready in {time.monotonic() - start:.1f} s (fsid {fsid(root)}, "
            f"127.0.0.1:{port()}, in RAM)")


def stop_ceph(root: Path) -> None:
    """Stop the lab's daemons by their recorded pids, the OSD first (it saves its RAM store)."""
    for kind, ident in reversed(DAEMONS):
        pid = daemon_pid(root, kind)
        if pid:
            say(f"ceph-{kind} (pid {pid}) {stop(pid, _marker(root, kind, ident), timeout=30)}")
        forget(root / "run", _record_name(kind))


def status_lines(root: Path) -> tuple[bool, list[str]]:
    """One line per daemon, and whether the cluster answers."""
    ok, lines = True, []
    for kind, ident in DAEMONS:
        pid = daemon_pid(root, kind)
        ok &= bool(pid)
        state = f"running pid={pid} (lab)" if pid else "stopped"
        lines.append(f"{'ceph-' + kind:9} {state:28} {kind}.{ident}")
    if ok:
        try:
            proc = subprocess.run(_ceph(root, "health", "-f", "json"), capture_output=True,
                                  text=True, timeout=20, check=False)
            health = json.loads(proc.stdout).get("status", "?") if proc.returncode == 0 \
                else "not answering"
        except (subprocess.TimeoutExpired, ValueError):
            health = "not answering"
        ok &= health != "not answering"
        lines[0] += f"  127.0.0.1:{port()} {health}"
    return ok, lines


if __name__ == "__main__":  # a quick manual check: python3 scripts/lab_ceph.py
    lab_root = Path(os.environ.get("SNAPTUI_LAB_DIR") or "/var/tmp/snaptui-lab")
    print("\n".join(status_lines(lab_root)[1]), file=sys.stderr)
