"""The lab's second "host": an sshd of its own on a loopback port, key login only.

Everything lives under ``$SNAPTUI_LAB_DIR/ssh`` (0700): the sshd config, its host key, the
client key whose public half is the only line of ``authorized_keys``, a known_hosts file with
the host key, and the pid file. The daemon is recorded like the other lab services and stopped
by that pid on ``lab down``. Tests reach libvirtd through it as
``qemu+ssh://root@127.0.0.1:PORT/system?keyfile=KEY&no_verify=1`` and run snaptui "on the other
host" through ``ssh`` with the same options. ``no_verify=1`` because libvirt's plain ``ssh``
transport ignores ``known_hosts=`` (only its libssh transports read it; tried: "Host key
verification failed"); libvirt's ssh then records the key in the user's ~/.ssh/known_hosts,
while snaptui's own ssh remembers nothing for a no_verify URI. SNAPTUI_LAB_SSH_KNOWN_HOSTS
holds the host key for a strict client.
"""

from __future__ import annotations

import os
import subprocess
import time
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
    write_private,
)

SSHD = "/usr/sbin/sshd"
DEFAULT_PORT = 22422


def port() -> int:
    return int(os.environ.get("SNAPTUI_LAB_SSH_PORT") or DEFAULT_PORT)


def ssh_dir(root: Path) -> Path:
    return root / "ssh"


def client_key(root: Path) -> Path:
    return ssh_dir(root) / "id_ed25519"


def marker(root: Path) -> str:
    """What identifies our sshd in /proc: its config file's path."""
    return str(ssh_dir(root) / "sshd_config")


def uri(root: Path) -> str:
    return (f"qemu+ssh://root@127.0.0.1:{port()}/system?keyfile={client_key(root)}"
            "&no_verify=1")


def env_vars(root: Path) -> dict[str, str]:
    return {"SNAPTUI_LAB_SSH_URI": uri(root),
            "SNAPTUI_LAB_SSH_KEY": str(client_key(root)),
            "SNAPTUI_LAB_SSH_PORT": str(port()),
            "SNAPTUI_LAB_SSH_KNOWN_HOSTS": str(ssh_dir(root) / "known_hosts")}


def _keygen(path: Path, log: Path) -> None:
    if not path.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "snaptui-lab",
             "-f", str(path)], log, what="ssh-keygen")


def _config(root: Path) -> str:
    d = ssh_dir(root)
    return "\n".join([
        "# snaptui lab: a second 'host' on loopback (scripts/lab_sshd.py)",
        f"Port {port()}",
        "ListenAddress 127.0.0.1",
        f"HostKey {d / 'ssh_host_ed25519_key'}",
        f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "PermitUserEnvironment no",
        "UsePAM no",
        # the lab dir sits in /var/tmp (mode 1777), which StrictModes refuses for key files
        "StrictModes no",
        "X11Forwarding no",
        "PrintMotd no",
        "LogLevel INFO",
        "",
    ])


def sshd_pid(root: Path) -> int | None:
    return recorded(root / "run", "sshd")


def ensure_sshd(root: Path, log_dir: Path) -> None:
    """Create the keys and config once; start the sshd unless ours already runs."""
    d = private_dir(ssh_dir(root))
    log = log_dir / "sshd.log"
    if sshd_pid(root):
        return
    forget(root / "run", "sshd")
    if port_busy(port()):
        raise LabError(f"127.0.0.1:{port()} is taken by another program; choose another "
                       "port with SNAPTUI_LAB_SSH_PORT")
    _keygen(d / "ssh_host_ed25519_key", log)
    _keygen(client_key(root), log)
    pub = (d / "id_ed25519.pub").read_text()
    write_private(d / "authorized_keys", pub)
    host_pub = (d / "ssh_host_ed25519_key.pub").read_text().split()
    write_private(d / "known_hosts", f"[127.0.0.1]:{port()} {host_pub[0]} {host_pub[1]}\n")
    write_private(d / "sshd_config", _config(root))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    (d / "sshd.pid").unlink(missing_ok=True)
    # sshd forks into the background once it listens; -E keeps its log in the lab's.
    subprocess.run([SSHD, "-f", marker(root), "-E", str(log)], check=False,
                   stdin=subprocess.DEVNULL, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = read_pidfile(d / "sshd.pid")
        if matches(pid, marker(root)) and port_busy(port()):
            record(root / "run", "sshd", pid, marker(root))  # type: ignore[arg-type]
            say(f"sshd on 127.0.0.1:{port()} (pid {pid})")
            return
        time.sleep(0.1)
    raise LabError(f"sshd did not start on 127.0.0.1:{port()}; see {log}")
