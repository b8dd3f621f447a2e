"""Who QEMU runs as, and whether it can reach the files snaptui hands it.

On a stock host QEMU is not root: Debian and Ubuntu run it as ``libvirt-qemu:kvm``, RHEL as
``qemu:qemu``. libvirt's DAC driver chowns each file it hands to QEMU (the block copy target,
the backup target and copy-before-write scratch, a transient domain's disks) and gives the
owner back afterwards (``remember_owner``), but it does not open the directories above them:
QEMU must be able to enter every one, and to create the pull-mode backup's NBD socket it must
be able to write into the socket's directory.

This module is the one place that decides it. QEMU's uid:gid comes from the domain's live DAC
label when it runs, else from the host's capabilities (``<secmodel><model>dac</model>…
<baselabel type='kvm'>+64055:+107</baselabel>``). A path is judged by the permission bits of
each directory on the way, as the kernel would for that uid, its group and the user's
supplementary groups. snaptui's own files stay 0600: the scratch directory it creates is 0711
(QEMU may enter it, nobody may list it), the NBD socket gets a per-job directory 0770 with
QEMU's group. MAC (SELinux, AppArmor) is libvirt's to label; docs/stock-hosts.md says what it needs.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from snaptui.core.errors import BadInput

_LABEL = re.compile(r"^\+?(?P<user>[^:]+):\+?(?P<group>[^:]+)$")
_DAC_SECLABEL = re.compile(
    r"<seclabel\b[^>]*\bmodel=['\"]dac['\"][^>]*>.*?<label>(?P<label>[^<]+)</label>", re.S)
_DAC_SECMODEL = re.compile(r"<secmodel>\s*<model>dac</model>(?P<body>.*?)</secmodel>", re.S)
_BASELABEL = re.compile(r"<baselabel type=['\"](?P<type>[^'\"]+)['\"]>(?P<label>[^<]+)"
                        r"</baselabel>")
SOCKET_DIR_SUFFIX = ".nbd"
SCRATCH_FIX_VAR = "SNAPTUI_SCRATCH_DIR"


@dataclass(frozen=True)
class QemuIdentity:
    """The uid, gid and supplementary groups QEMU's processes run with."""

    uid: int
    gid: int
    groups: frozenset[int] = frozenset()

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)

    @property
    def group(self) -> str:
        return _group_name(self.gid)

    def __str__(self) -> str:
        return f"{self.user}:{self.group}"

    def same_as_this_process(self) -> bool:
        return self.uid == os.geteuid()


ROOT = QemuIdentity(0, 0)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _number(text: str, lookup: str) -> int | None:
    if text.isdigit():
        return int(text)
    try:
        return (pwd.getpwnam(text).pw_uid if lookup == "user"
                else grp.getgrnam(text).gr_gid)
    except KeyError:
        return None


def parse_label(label: str) -> QemuIdentity | None:
    """``+64055:+107`` or ``libvirt-qemu:kvm`` → the identity (with the user's groups)."""
    found = _LABEL.match(label.strip())
    if not found:
        return None
    uid = _number(found.group("user"), "user")
    gid = _number(found.group("group"), "group")
    if uid is None or gid is None:
        return None
    groups = {gid}
    try:
        groups.update(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        pass  # a uid with no account here: its own gid only
    return QemuIdentity(uid, gid, frozenset(groups))


def from_domain_xml(xml: str) -> QemuIdentity | None:
    """The DAC label of a domain (the live XML of a running one carries the one in use)."""
    found = _DAC_SECLABEL.search(xml)
    return parse_label(found.group("label")) if found else None


def from_capabilities(xml: str, domain_type: str = "kvm") -> QemuIdentity | None:
    """QEMU's default identity per the host's capabilities (None: no DAC model, e.g. the
    test driver or an unprivileged libvirtd, where QEMU runs as the connecting user)."""
    model = _DAC_SECMODEL.search(xml)
    if not model:
        return None
    labels = {m.group("type"): m.group("label") for m in _BASELABEL.finditer(model.group("body"))}
    label = labels.get(domain_type) or labels.get("kvm") or labels.get("qemu")
    return parse_label(label) if label else None


def _mode_text(st: os.stat_result) -> str:
    return (f"{stat.filemode(st.st_mode)} {_owner_name(st.st_uid)}:{_group_name(st.st_gid)}")


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _allowed(st: os.stat_result, who: QemuIdentity, want: int) -> bool:
    """The kernel's DAC decision for ``who`` and ``want`` (bits of 0o7: r=4 w=2 x=1)."""
    if who.is_root:
        return True
    if st.st_uid == who.uid:
        bits = st.st_mode >> 6
    elif st.st_gid in who.groups or st.st_gid == who.gid:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & want == want


def blocker(path: Path | str, who: QemuIdentity, *, create: bool = False) -> str | None:
    """Why ``who`` cannot reach directory ``path`` (enter every directory down to it, and with
    ``create`` make entries in it), or None when it can. A missing part is judged by the
    directory that would hold it."""
    walk = Path(os.path.abspath(path))
    parts = [walk, *walk.parents]
    for directory in reversed(parts):
        try:
            st = directory.stat()
        except FileNotFoundError:
            break
        except OSError as err:
            return f"{directory}: {err.strerror}"
        want = 0o3 if create and directory == walk else 0o1
        if not _allowed(st, who, want):
            verb = "write into" if want & 0o2 else "enter"
            return f"QEMU ({who}) cannot {verb} {directory} ({_mode_text(st)})"
    return None


def fix_hint(directory: Path | str, who: QemuIdentity) -> str:
    """What an operator can do about an unreachable scratch directory."""
    return (f"set {SCRATCH_FIX_VAR} to a directory QEMU can enter (e.g. /var/lib/snaptui/scratch, "
            f"which snaptui creates 0711 as root), or let it in: "
            f"chmod o+x (or chgrp {who.group} and chmod g+x) on each directory above")


def refuse_unless_reachable(directory: Path, who: QemuIdentity | None, what: str) -> None:
    """BadInput (exit 2, nothing touched) when QEMU cannot enter ``directory``."""
    why = unreachable(directory, who)
    if why:
        raise BadInput(f"{what}: {why}")


def unreachable(directory: Path, who: QemuIdentity | None) -> str | None:
    """One line saying why QEMU cannot use ``directory`` and how to fix it, or None."""
    if who is None:
        return None
    why = blocker(directory, who)
    return f"{why}; {fix_hint(directory, who)}" if why else None


def socket_dir(scratch: Path, job_id: str) -> Path:
    """The job's directory for the NBD socket QEMU creates (QEMU must write into it)."""
    return scratch / f"{job_id}{SOCKET_DIR_SUFFIX}"


def make_socket_dir(directory: Path, who: QemuIdentity | None) -> None:
    """Create ``directory`` where QEMU may create its socket: 0700 when QEMU runs as us (or
    root), else 0770 owned by us with QEMU's group (nobody else may enter or list it)."""
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        if directory.is_symlink() or not directory.is_dir():
            raise BadInput(f"{directory} exists and is not a directory") from None
    if who is not None and not who.is_root and not who.same_as_this_process():
        os.chown(directory, -1, who.gid)
        directory.chmod(0o770)


def remove_socket_dir(directory: Path) -> None:
    """Remove the socket directory and what QEMU left in it (idempotent)."""
    if not directory.is_dir() or directory.is_symlink():
        return
    for entry in directory.iterdir():
        entry.unlink(missing_ok=True)
    directory.rmdir()


def reclaim(path: Path | str) -> bool:
    """Make a file libvirt handed to QEMU ours again once QEMU is done with it (libvirt gives
    the owner back with ``remember_owner``; without it the file stays QEMU's). True when the
    owner had to be changed."""
    st = os.stat(path)
    if st.st_uid == os.geteuid() and st.st_gid == os.getegid():
        return False
    os.chown(path, os.geteuid(), os.getegid())
    os.chmod(path, 0o600)
    return True
