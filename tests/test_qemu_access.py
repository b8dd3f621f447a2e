"""libvirt/qemu_access.py without the lab: labels, capabilities, and the kernel's DAC decision for
QEMU's uid/gid on each directory of a path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from snaptui.core.errors import BadInput
from snaptui.core.libvirt import qemu_access
from snaptui.core.libvirt.qemu_access import QemuIdentity

CAPS = """<capabilities><host>
  <secmodel><model>none</model><doi>0</doi></secmodel>
  <secmodel><model>dac</model><doi>0</doi>
    <baselabel type='kvm'>+64055:+107</baselabel>
    <baselabel type='qemu'>+64055:+107</baselabel>
  </secmodel>
</host></capabilities>"""

LIVE_XML = """<domain type='kvm' id='3'><name>g</name>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+107:+107</label><imagelabel>+107:+107</imagelabel>
  </seclabel></domain>"""

# Neither this process's uid nor any group of it, so "other" bits decide.
STRANGER = QemuIdentity(54321, 54321, frozenset({54321}))


def test_identity_from_capabilities_and_from_a_running_domain() -> None:
    who = qemu_access.from_capabilities(CAPS)
    assert who is not None and (who.uid, who.gid) == (64055, 107)
    assert 107 in who.groups
    live = qemu_access.from_domain_xml(LIVE_XML)
    assert live is not None and (live.uid, live.gid) == (107, 107)
    # the test driver and unprivileged daemons have no DAC model: QEMU runs as the caller
    assert qemu_access.from_capabilities("<capabilities><host><secmodel><model>testSecurity"
                                         "</model></secmodel></host></capabilities>") is None
    assert qemu_access.from_domain_xml("<domain><name>x</name></domain>") is None
    root = qemu_access.parse_label("+0:+0")
    assert root is not None and root.is_root
    assert qemu_access.parse_label("garbage") is None


def test_blocker_names_the_first_directory_qemu_cannot_enter(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    # pytest's tmp root is private to us: judge from `outer` down by opening the way above
    opened = [p for p in [tmp_path, *tmp_path.parents] if p != Path("/")]
    modes = {p: p.stat().st_mode & 0o7777 for p in opened}
    try:
        for p in opened:
            os.chmod(p, modes[p] | 0o011)
        outer.chmod(0o700)
        why = qemu_access.blocker(inner, STRANGER)
        assert why is not None and f"cannot enter {outer} (drwx------" in why
        outer.chmod(0o711)
        inner.chmod(0o711)
        assert qemu_access.blocker(inner, STRANGER) is None
        # QEMU creates the NBD socket itself: it must be able to write into that directory
        why = qemu_access.blocker(inner, STRANGER, create=True)
        assert why is not None and f"cannot write into {inner}" in why
        inner.chmod(0o733)
        assert qemu_access.blocker(inner, STRANGER, create=True) is None
        # group bits decide for a member of the directory's group
        member = QemuIdentity(54321, 54321, frozenset({54321, inner.stat().st_gid}))
        inner.chmod(0o710)
        assert qemu_access.blocker(inner, member) is None
        assert qemu_access.blocker(inner, STRANGER) is not None
        # root enters anything; a missing directory is judged by the one that would hold it
        assert qemu_access.blocker(inner, qemu_access.ROOT) is None
        assert qemu_access.blocker(inner / "not" / "yet", member) is None
    finally:
        for p in opened:
            os.chmod(p, modes[p])


def test_unreachable_scratch_is_one_line_with_the_fix(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(BadInput) as caught:
        qemu_access.refuse_unless_reachable(private, STRANGER, "live copy")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("live copy: QEMU (54321:54321) cannot")
    assert "SNAPTUI_SCRATCH_DIR" in message and "chmod o+x" in message
    # no identity (test driver, session daemon): nothing to check
    qemu_access.refuse_unless_reachable(private, None, "live copy")


def test_socket_dir_is_private_unless_qemu_is_someone_else(tmp_path: Path) -> None:
    mine = qemu_access.socket_dir(tmp_path, "20260101-000000-abcdef")
    assert mine.name == "20260101-000000-abcdef.nbd"
    qemu_access.make_socket_dir(mine, qemu_access.ROOT)
    assert mine.stat().st_mode & 0o777 == 0o700
    (mine / "x.sock").touch()
    qemu_access.remove_socket_dir(mine)
    assert not mine.exists()
    qemu_access.remove_socket_dir(mine)  # idempotent
    link = tmp_path / "20260101-000000-bbbbbb.nbd"
    link.symlink_to(tmp_path)
    with pytest.raises(BadInput, match="is not a directory"):
        qemu_access.make_socket_dir(link, qemu_access.ROOT)


def test_socket_dir_lets_only_qemus_group_in(host_dirs) -> None:
    """With QEMU as another user, the NBD socket's directory is 0770 with QEMU's group: QEMU
    can create its socket there, nobody else can enter, whatever mode QEMU gives the socket
    before snaptui tightens it. (chown to another group needs root, as snaptui runs.)"""
    if os.geteuid() != 0:
        pytest.fail("run as root, as snaptui runs (chgrp to QEMU's group)")
    qemu = QemuIdentity(64055, 54322, frozenset({54322}))
    directory = qemu_access.socket_dir(host_dirs.scratch(), "20260101-000000-cccccc")
    qemu_access.make_socket_dir(directory, qemu)
    st = directory.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 54322, 0o770)
    assert qemu_access.blocker(directory, qemu, create=True) is None
    assert qemu_access.blocker(directory, STRANGER) is not None
