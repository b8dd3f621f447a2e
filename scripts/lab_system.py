"""System side of the lab: Debian packages, qemu.conf, and virtlogd/libvirtd without systemd."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lab_proc import LabError, forget, matches, read_pidfile, record, recorded, run, say

PACKAGES = ("qemu-utils", "qemu-system-x86", "libvirt-daemon-system", "libvirt-clients",
            "libvirt-dev", "pkg-config", "tmux", "openssh-server", "openssh-client")
URI = "qemu:///system"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
QEMU_MARKER = "# --- snaptui lab: QEMU without systemd/cgroups/namespaces (scripts/lab) ---"
QEMU_SETTINGS = {
    "security_driver": '"none"',
    "namespaces": "[ ]",
    "cgroup_controllers": "[ ]",
    "stdio_handler": '"file"',
    "user": '"root"',
    "group": '"root"',
}
DAEMONS = {"virtlogd": Path("/run/virtlogd.pid"), "libvirtd": Path("/run/libvirtd.pid")}


def _installed(pkg: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and proc.stdout.strip().endswith("install ok installed")


def _venv_usable() -> bool:
    """Debian's python3 can only build venvs (with pip) once python3-venv is installed."""
    probe = "import ensurepip, venv; ensurepip.version()"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True,
                          check=False).returncode == 0


def ensure_packages(log_dir: Path, packages: tuple[str, ...] = PACKAGES) -> None:
    """apt-get install what is missing (apt-get update only when something is)."""
    missing = [p for p in packages if not _installed(p)]
    if packages is PACKAGES and not _venv_usable() and not _installed("python3-venv"):
        missing.append("python3-venv")
    if not missing:
        return
    if os.geteuid() != 0:
        raise LabError(f"missing packages {' '.join(missing)}; run scripts/lab up as root")
    start = time.monotonic()
    say(f"installing {' '.join(missing)} (log {log_dir / 'apt.log'})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = log_dir / "apt.log"
    run(["apt-get", "update", "-q"], log, env, "apt-get update")
    with _no_service_starts():
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], log, env,
            "apt-get install")
    say(f"packages installed in {time.monotonic() - start:.1f} s")


POLICY_RC = Path("/usr/sbin/policy-rc.d")


@contextlib.contextmanager
def _no_service_starts() -> Iterator[None]:
    """Packages must not start their system services (openssh-server's sshd on port 22): a
    policy-rc.d saying "no" (Debian's own mechanism) while apt runs, unless one exists."""
    if POLICY_RC.exists():
        yield
        return
    POLICY_RC.write_text("#!/bin/sh\n# scripts/lab: no service starts during apt-get\nexit 101\n")
    POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC.unlink(missing_ok=True)


def _active_settings(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def ensure_qemu_conf() -> None:
    """Append the container-friendly qemu.conf settings once, under a marker comment."""
    text = QEMU_CONF.read_text()
    if QEMU_MARKER in text:
        return
    active = _active_settings(text)
    missing = {k: v for k, v in QEMU_SETTINGS.items() if active.get(k) != v}
    if not missing:
        return  # someone already set them (e.g. by hand, following LAB.md)
    lines = [f"{k} = {v}" for k, v in missing.items()]
    with open(QEMU_CONF, "a") as fh:
        fh.write(("\n" if not text.endswith("\n") else "") + QEMU_MARKER + "\n"
                 + "\n".join(lines) + "\n")
    say(f"appended {', '.join(missing)} to {QEMU_CONF}")


def libvirt_answers() -> bool:
    """True when ``virsh -c qemu:///system version`` succeeds."""
    try:
        proc = subprocess.run(["virsh", "-c", URI, "version"], capture_output=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def daemon_pid(name: str) -> int | None:
    """The pid of a running ``name`` daemon per its /run pid file, whoever started it."""
    pid = read_pidfile(DAEMONS[name])
    return pid if matches(pid, name) else None


def _start_daemon(name: str, run_dir: Path, log_dir: Path) -> None:
    log = log_dir / f"{name}.log"
    run([name, "-d"], log, what=f"{name} -d")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = daemon_pid(name)
        if pid:
            record(run_dir, name, pid, name)
            return
        time.sleep(0.1)
    raise LabError(f"{name} started but wrote no live pid to {DAEMONS[name]}, see {log}")


def ensure_libvirtd(run_dir: Path, log_dir: Path) -> None:
    """Start virtlogd and libvirtd unless they already run; wait until libvirtd answers."""
    start = time.monotonic()
    Path("/run/libvirt").mkdir(parents=True, exist_ok=True)
    if not daemon_pid("virtlogd"):
        forget(run_dir, "virtlogd")
        _start_daemon("virtlogd", run_dir, log_dir)
    if libvirt_answers():
        return
    if not daemon_pid("libvirtd"):
        forget(run_dir, "libvirtd")
        _start_daemon("libvirtd", run_dir, log_dir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if libvirt_answers():
            say(f"libvirtd ready in {time.monotonic() - start:.1f} s")
            return
        if not daemon_pid("libvirtd"):
            break
        time.sleep(0.2)
    raise LabError(f"libvirtd does not answer on {URI}; see {log_dir / 'libvirtd.log'} "
                   "and /var/log/libvirt/")


def started_by_lab(run_dir: Path, name: str) -> int | None:
    """The pid of ``name`` if this lab started it and it still runs."""
    return recorded(run_dir, name)


def accel() -> str:
    """"kvm" when /dev/kvm is usable, else "tcg" (tests pick the domain type themselves)."""
    return "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"
