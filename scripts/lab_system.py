"""System side of the lab: Debian packages, qemu.conf, and virtlogd/libvirtd without systemd."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lab_proc import LabError, forget, matches, read_pidfile, record, recorded, run, say, stop

PACKAGES = ("qemu-utils", "qemu-system-x86", "libvirt-daemon-system", "libvirt-clients",
            "libvirt-dev", "pkg-config", "tmux", "openssh-server", "openssh-client")
URI = "qemu:///system"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
QEMU_MARKER = "# --- snaptui lab: QEMU without systemd/cgroups/namespaces (scripts/lab) ---"
QEMU_END = "# --- end of snaptui lab settings ---"
# As a stock host runs QEMU: Debian/Ubuntu's libvirt-qemu:kvm by default; RHEL's qemu:qemu and
# root:root (some operators) on request (SNAPTUI_LAB_QEMU_USER or `scripts/lab qemu-user`).
QEMU_USERS = {"libvirt-qemu": "kvm", "qemu": "qemu", "root": "root"}
DEFAULT_QEMU_USER = "libvirt-qemu"
QEMU_SETTINGS = {
    "security_driver": '"none"',  # no AppArmor/SELinux here; libvirt's DAC driver stays on
    "namespaces": "[ ]",
    "cgroup_controllers": "[ ]",
    "stdio_handler": '"file"',
    "dynamic_ownership": "1",
    "remember_owner": "1",
}
KVM_DEVICE = Path("/dev/kvm")
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
    if set(PACKAGES) <= set(packages) and not _venv_usable() and not _installed("python3-venv"):
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


def qemu_user_wanted() -> str:
    """The QEMU user the lab runs (SNAPTUI_LAB_QEMU_USER, default libvirt-qemu)."""
    user = os.environ.get("SNAPTUI_LAB_QEMU_USER") or DEFAULT_QEMU_USER
    if user not in QEMU_USERS:
        raise LabError(f"SNAPTUI_LAB_QEMU_USER={user}: choose one of {', '.join(QEMU_USERS)}")
    return user


def _ensure_account(user: str) -> None:
    """RHEL's qemu:qemu does not exist on Debian: create it (system account, no login, in kvm
    as RHEL's udev rules effectively allow with /dev/kvm 0666)."""
    group = QEMU_USERS[user]
    if subprocess.run(["getent", "group", group], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", group], check=True)
    if subprocess.run(["getent", "passwd", user], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--gid", group, "--groups", "kvm",
                        "--home-dir", "/var/lib/libvirt", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", user], check=True)


def _strip_lab_block(text: str) -> str:
    """``text`` without the lab's settings block (this version's or an older one)."""
    kept, inside = [], False
    for line in text.splitlines():
        if line.strip() == QEMU_MARKER:
            inside = True
            continue
        if inside:
            if line.strip() == QEMU_END:
                inside = False
                continue
            key = line.partition("=")[0].strip()
            if key in QEMU_SETTINGS or key in ("user", "group"):
                continue  # an older block had no end marker: its lines are key = value
            inside = False
        kept.append(line)
    return "\n".join(kept).rstrip("\n") + "\n"


def ensure_qemu_conf(user: str) -> bool:
    """Write the lab's qemu.conf block (QEMU as ``user``); True when the file changed."""
    if user != "root":
        _ensure_account(user)
    text = QEMU_CONF.read_text()
    settings = {**QEMU_SETTINGS, "user": f'"{user}"', "group": f'"{QEMU_USERS[user]}"'}
    block = "\n".join([QEMU_MARKER, *(f"{k} = {v}" for k, v in settings.items()), QEMU_END])
    new = _strip_lab_block(text) + block + "\n"
    if new == text:
        return False
    QEMU_CONF.write_text(new)
    say(f"{QEMU_CONF}: QEMU runs as {user}:{QEMU_USERS[user]}")
    return True


def ensure_kvm_device() -> None:
    """/dev/kvm as udev leaves it on a stock host: root:kvm 0660 (the container's is 0600)."""
    if KVM_DEVICE.exists():
        os.chown(KVM_DEVICE, 0, grp.getgrnam("kvm").gr_gid)
        KVM_DEVICE.chmod(0o660)


def qemu_identity(uri: str = URI) -> str | None:
    """QEMU's "+uid:+gid" as the running libvirtd reports it (capabilities' DAC baselabel)."""
    try:
        proc = subprocess.run(["virsh", "-c", uri, "capabilities"], capture_output=True,
                              text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"<model>dac</model>.*?<baselabel type='(?:kvm|qemu)'>([^<]+)</baselabel>",
                      proc.stdout, re.S)
    return found.group(1) if found else None


def wanted_identity(user: str) -> str:
    return f"+{pwd.getpwnam(user).pw_uid}:+{grp.getgrnam(QEMU_USERS[user]).gr_gid}"


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


def apply_qemu_user(run_dir: Path, log_dir: Path, user: str) -> None:
    """qemu.conf, /dev/kvm and a running libvirtd that all say QEMU runs as ``user``
    (libvirtd is restarted when it runs QEMU as someone else; running guests keep theirs)."""
    ensure_qemu_conf(user)
    ensure_kvm_device()
    ensure_libvirtd(run_dir, log_dir)
    want = wanted_identity(user)
    have = qemu_identity()
    if have == want:
        return
    # The lab owns qemu.conf's settings (above), so the daemon that reads them is restarted
    # whoever started it (tests restart libvirtd too); running guests keep running.
    pid = daemon_pid("libvirtd")
    if pid:
        say(f"libvirtd (pid {pid}) runs QEMU as {have}: restarting it for {user} ({want})")
        stop(pid, "libvirtd")
    forget(run_dir, "libvirtd")
    ensure_libvirtd(run_dir, log_dir)
    have = qemu_identity()
    if have != want:
        raise LabError(f"libvirtd restarted but runs QEMU as {have}, not {user} ({want}); "
                       f"see {QEMU_CONF}")
