"""The lab's real guests: they boot (BIOS and UEFI, under TCG), the agent answers and freezes,
the writer's records grow, and the host-side checker tells a good disk from a corrupted one.

Boots are slow under TCG, so one BIOS guest is shared by the module's tests; each guest is
destroyed as soon as the tests that need it are done.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import lab_guests  # noqa: E402
from lab_guests import Guest, lab_guest, lab_guest_check  # noqa: E402

# The fixtures this module uses (conftest.py does not load lab_guests as a plugin).
guest_artefacts = lab_guests.guest_artefacts
make_guest = lab_guests.make_guest
module_guests = lab_guests.module_guests

check_records = lab_guest_check.check_records
record_sum = lab_guest_check.record_sum


def _record(seq: int, uptime: str = "1.00") -> bytes:
    line = f"{seq} {uptime}".encode()
    return line + b" " + record_sum(str(seq).encode(), uptime.encode()) + b"\n"


def _wait_records_beyond(guest: Guest, last: int, timeout: float = 120.0):
    """Poll the records through the agent until they go past ``last``."""
    deadline = time.monotonic() + timeout
    while True:
        found = guest.records()
        assert found.ok, found.problem
        if found.last > last or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


# ---------------------------------------------------------------- the checker's rules

def test_records_checker_accepts_a_sequence_with_a_cut_last_record():
    data = b"".join(_record(n) for n in range(1, 6))
    whole = check_records(data)
    assert (whole.ok, whole.last, whole.cut_tail) == (True, 5, False)
    cut = check_records(data + _record(6)[:7])
    assert (cut.ok, cut.last, cut.cut_tail) == (True, 5, True)
    assert check_records(b"") == lab_guest_check.RecordsCheck(True, 0, 0)


@pytest.mark.parametrize(("data", "problem"), [
    (_record(1) + _record(3), "record 3, expected 2"),
    (_record(2), "record 2, expected 1"),
    (_record(1) + _record(2).replace(b" 1.00 ", b" 1.01 "), "record 2 has a bad checksum"),
    (_record(1) + b"\0\0\0\0\n" + _record(3), "line 2 is not a record"),
    (_record(1) + b"\0\0\0", "the last line is neither a record nor a cut one"),
])
def test_records_checker_flags_gaps_bad_sums_and_garbage(data, problem):
    found = check_records(data)
    assert not found.ok
    assert problem in found.problem
    assert found.last == (1 if data.startswith(_record(1)) else 0)


# ---------------------------------------------------------------- the cached artefacts

def test_artefacts_are_keyed_by_package_versions_and_reused(guest_artefacts):
    manifest = guest_artefacts.manifest()
    versions = lab_guest.package_versions()
    assert manifest["packages"] == versions
    assert guest_artefacts.root.name == lab_guest.cache_key(versions)
    bumped = dict(versions, **{"busybox-static": versions["busybox-static"] + "+1"})
    assert lab_guest.cache_key(bumped) != lab_guest.cache_key(versions)
    built = guest_artefacts.disk.stat().st_mtime_ns
    assert lab_guest.ensure() == guest_artefacts  # warm cache: nothing is rebuilt
    assert guest_artefacts.disk.stat().st_mtime_ns == built


def test_lab_guest_check_command(guest_artefacts, tmp_path: Path):
    lab = [sys.executable, str(lab_guests.SCRIPTS / "lab"), "guest", "check"]
    # The pristine disk: a clean filesystem, but the writer never ran on it.
    proc = subprocess.run([*lab, str(guest_artefacts.disk)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["filesystem  clean",
                                        "records     BAD: no /records on the data disk; last 0"]
    proc = subprocess.run([*lab, str(tmp_path / "missing.qcow2")], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"lab: error: no image file "
                                                f"{tmp_path / 'missing.qcow2'}"]


# ---------------------------------------------------------------- one BIOS guest, shared

@pytest.fixture(scope="module")
def bios_guest(module_guests) -> Guest:
    guest = module_guests()
    print(f"\nBIOS guest: userspace after {guest.boot_seconds:.1f} s", file=sys.stderr)
    return guest


def test_bios_guest_boots_from_its_own_disk_and_its_agent_answers(bios_guest: Guest):
    console = bios_guest.console()
    assert "SYSLINUX" in console  # the bootloader on the disk, not a direct kernel boot
    assert "snaptui-guest: agent started on /dev/vport" in console
    bios_guest.wait_agent()
    assert bios_guest.agent("guest-ping") == {}
    mounts = bios_guest.dom.fsInfo()
    assert [(m[0], m[2]) for m in mounts] == [("/data", "ext4")]


def test_writer_records_grow_over_time(bios_guest: Guest):
    first = bios_guest.records()
    assert first.ok, first.problem
    later = _wait_records_beyond(bios_guest, first.last)
    assert later.last > first.last
    assert later.ok, later.problem


def test_a_copy_taken_while_frozen_is_clean_and_thaw_resumes_the_writer(bios_guest: Guest,
                                                                       tmp_path: Path):
    dom = bios_guest.dom
    assert dom.fsFreeze() == 1
    try:
        assert bios_guest.agent("guest-fsfreeze-status") == "frozen"
        # Frozen, the filesystem on the disk is consistent: no journal to replay, no cut record.
        frozen = lab_guest_check.check_image(bios_guest.disk, scratch=tmp_path)
    finally:
        assert dom.fsThaw() == 1
    assert bios_guest.agent("guest-fsfreeze-status") == "thawed"
    assert frozen.fs_clean and not frozen.needs_recovery, frozen.fsck_output
    assert frozen.records.ok and not frozen.records.cut_tail, frozen.records.problem
    assert frozen.last_record > 0
    assert _wait_records_beyond(bios_guest, frozen.last_record).last > frozen.last_record


def _data_block(raw: Path, offset: int) -> tuple[int, int]:
    """(byte offset of /records' first data block in ``raw``, block size)."""
    device = f"{raw}?offset={offset}"
    stats = subprocess.run(["dumpe2fs", "-h", device], capture_output=True, text=True,
                           check=True).stdout
    block_size = int(re.search(r"^Block size:\s*(\d+)", stats, re.M).group(1))
    bmap = subprocess.run(["debugfs", "-R", "bmap /records 0", device], capture_output=True,
                          text=True, check=True).stdout
    return offset + int(bmap.split()[0]) * block_size, block_size


def test_checker_passes_a_shut_off_disk_and_flags_a_corrupted_record(bios_guest: Guest,
                                                                     tmp_path: Path):
    seen = bios_guest.records().last
    bios_guest.shutdown()  # through the agent: the writer stops, /data is unmounted
    assert "snaptui-guest: data disk unmounted" in bios_guest.console()
    copy = tmp_path / "copy.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(bios_guest.disk),
                    str(copy)], check=True)
    good = lab_guest_check.check_image(copy, scratch=tmp_path)
    assert good.fs_clean and not good.needs_recovery, good.fsck_output
    assert good.records.ok, good.records.problem
    assert good.last_record >= seen and not good.records.cut_tail

    # One hex digit of record 2's checksum changes on the disk: the filesystem stays clean,
    # the records do not.
    start, _ = _data_block(copy, lab_guest_check.data_offset(copy))
    with open(copy, "r+b") as fh:
        fh.seek(start)
        head = fh.read(200)
        second = head.index(b"\n") + 1
        sum_at = head.index(b"\n", second) - 1
        fh.seek(start + sum_at)
        fh.write(b"0" if head[sum_at:sum_at + 1] != b"0" else b"1")
    bad = lab_guest_check.check_image(copy, scratch=tmp_path)
    assert bad.fs_clean, bad.fsck_output
    assert not bad.records.ok and not bad.ok
    assert "record 2 has a bad checksum" in bad.records.problem
    assert bad.last_record == 1


# ---------------------------------------------------------------- UEFI and no-agent guests

def test_uefi_guest_boots_its_agent_answers_and_a_hard_stop_needs_only_journal_replay(
        make_guest, tmp_path: Path):
    guest = make_guest(uefi=True)
    print(f"\nUEFI guest: userspace after {guest.boot_seconds:.1f} s", file=sys.stderr)
    assert "BdsDxe: starting" in guest.console()  # OVMF found the disk's EFI loader
    guest.wait_agent()
    assert guest.agent("guest-ping") == {}
    assert guest.dom.fsFreeze() == 1
    assert guest.dom.fsThaw() == 1
    running = _wait_records_beyond(guest, 0)
    guest.destroy()  # power cut while the writer runs
    found = lab_guest_check.check_image(guest.disk, scratch=tmp_path)
    assert found.needs_recovery and found.fs_clean, found.fsck_output
    assert found.records.ok, found.records.problem
    assert found.last_record >= running.last


def test_no_agent_guest_boots_has_no_agent_and_resumes_after_a_power_cut(make_guest,
                                                                        tmp_path: Path):
    guest = make_guest(agent=False)
    print(f"\nno-agent guest: userspace after {guest.boot_seconds:.1f} s", file=sys.stderr)
    assert "snaptui-guest: no agent port" in guest.console()
    with pytest.raises(libvirt.libvirtError) as err:
        guest.agent("guest-ping")
    assert err.value.get_error_code() == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED
    guest.wait_console("snaptui-guest: record 50")
    guest.destroy()
    found = lab_guest_check.check_image(guest.disk, scratch=tmp_path)
    assert found.fs_clean and found.records.ok, (found.fsck_output, found.records.problem)
    assert found.last_record >= 50

    # Booted again from the cut-off disk (as from a crash-consistent snapshot), the writer
    # drops a cut last record and continues the sequence.
    guest.start()
    guest.wait_console(f"writer resumes after record {found.last_record}")
    target = (found.last_record // 50 + 1) * 50
    guest.wait_console(f"snaptui-guest: record {target}")
    guest.destroy()
    again = lab_guest_check.check_image(guest.disk, scratch=tmp_path)
    assert again.fs_clean and again.records.ok, (again.fsck_output, again.records.problem)
    assert again.last_record >= target


def test_factory_removes_its_guests_after_losing_its_connection(guest_artefacts, tmp_path,
                                                                 libvirt_uri):
    """A libvirtd restart (other tests on the shared lab do it) closes the factory's
    connection; its guests must still go at the end, not run on eating a core."""
    conn = libvirt.open(libvirt_uri)
    factory = lab_guests.GuestFactory(conn, tmp_path, guest_artefacts)
    guest = factory(start=False)
    conn.close()  # as a libvirtd restart leaves it
    factory.remove_all()
    check = libvirt.open(libvirt_uri)
    try:
        assert guest.name not in [d.name() for d in check.listAllDomains()]
    finally:
        check.close()
        factory.conn.close()
    assert not guest.disk.exists()
