"""Switch the lab's libvirtd between the QEMU users of stock hosts (``scripts/lab qemu-user``):
Debian/Ubuntu's ``libvirt-qemu:kvm`` (the lab's default), RHEL's ``qemu:qemu`` and ``root``."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

LAB = Path(__file__).resolve().parent.parent / "scripts" / "lab"
USERS = ("libvirt-qemu", "qemu", "root")


def current() -> str:
    """The user QEMU runs as, per the running libvirtd."""
    proc = subprocess.run([sys.executable, str(LAB), "qemu-user"], capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stdout.strip()


def switch(user: str) -> None:
    """Make libvirtd run new guests' QEMU as ``user`` (restarting it when needed)."""
    proc = subprocess.run([sys.executable, str(LAB), "qemu-user", user], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == user, proc.stdout + proc.stderr


def uid_of(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def qemu_process_uid(name: str) -> int:
    """The real uid of the running domain's QEMU process (libvirt's pid file for it)."""
    pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for QEMU pid {pid}")


def ownership(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o7777
