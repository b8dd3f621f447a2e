"""Check a real guest's disk image from the host, without mounting it (stdlib only).

``check_image(path)`` copies the image to raw in a private scratch directory, finds the ext4
data partition (MBR type 0x83, or the whole image when it has no partition table), replays
the journal on the copy when the filesystem needs recovery (as the guest's next mount would),
runs ``e2fsck -fn`` and reads the writer's records with ``debugfs -R "cat /records"``.

A good records file is an unbroken sequence "SEQ UPTIME SUM" from 1, each SUM the first 16 hex
digits of sha256("SEQ UPTIME"); only the last record may be cut (no newline after it).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

RECORDS_PATH = "/records"
RECORD = re.compile(rb"(\d+) (\d+(?:\.\d+)?) ([0-9a-f]{16})")
CUT_RECORD = re.compile(rb"\d*(?: [\d.]*(?: [0-9a-f]*)?)?")


@dataclass
class RecordsCheck:
    """What the records file says: a good sequence, its last number and the first problem."""

    ok: bool
    last: int
    count: int
    cut_tail: bool = False
    problem: str | None = None


@dataclass
class ImageCheck:
    """The verdict on one image: filesystem and records."""

    fs_clean: bool
    needs_recovery: bool
    records: RecordsCheck
    fsck_output: str = field(repr=False, default="")

    @property
    def ok(self) -> bool:
        return self.fs_clean and self.records.ok

    @property
    def last_record(self) -> int:
        return self.records.last


def record_sum(seq: bytes, uptime: bytes) -> bytes:
    """The checksum the guest's writer puts after "SEQ UPTIME"."""
    return hashlib.sha256(seq + b" " + uptime).hexdigest()[:16].encode()


def check_records(data: bytes) -> RecordsCheck:
    """Verify the writer's records: numbered from 1, each checksum right, only the last cut."""
    lines = data.split(b"\n")
    tail = lines.pop()  # "" when the file ends with a newline
    expected = 1
    for number, line in enumerate(lines, start=1):
        match = RECORD.fullmatch(line)
        if not match:
            return RecordsCheck(False, expected - 1, number - 1,
                                problem=f"line {number} is not a record: {line[:60]!r}")
        seq, uptime, checksum = match.groups()
        if int(seq) != expected:
            return RecordsCheck(False, expected - 1, number - 1,
                                problem=f"line {number}: record {int(seq)}, expected {expected}")
        if record_sum(seq, uptime) != checksum:
            return RecordsCheck(False, expected - 1, number - 1,
                                problem=f"line {number}: record {expected} has a bad checksum")
        expected += 1
    if tail and not CUT_RECORD.fullmatch(tail):
        return RecordsCheck(False, expected - 1, len(lines),
                            problem=f"the last line is neither a record nor a cut one: "
                                    f"{tail[:60]!r}")
    return RecordsCheck(True, expected - 1, len(lines), cut_tail=bool(tail))


def _image_format(path: Path) -> str:
    proc = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)["format"]


def data_offset(raw: Path) -> int:
    """Byte offset of the ext4 data partition (first MBR type 0x83), 0 without a table."""
    with open(raw, "rb") as fh:
        sector = fh.read(512)
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return 0
    for index in range(4):
        entry = sector[446 + 16 * index:462 + 16 * index]
        ptype, start = entry[4], struct.unpack("<I", entry[8:12])[0]
        if ptype == 0x83 and start:
            return start * 512
    return 0


def _needs_recovery(device: str) -> bool:
    proc = subprocess.run(["dumpe2fs", "-h", device], capture_output=True, text=True,
                          check=False)
    features = re.search(r"^Filesystem features:\s*(.*)$", proc.stdout, re.M)
    return bool(features) and "needs_recovery" in features.group(1).split()


def check_raw(raw: Path, records_path: str = RECORDS_PATH) -> ImageCheck:
    """Check a raw image file in place (its journal is replayed when needed: use a copy)."""
    device = f"{raw}?offset={data_offset(raw)}"  # e2fsprogs' unix_io option, no loop device
    recovery = _needs_recovery(device)
    if recovery:
        subprocess.run(["e2fsck", "-E", "journal_only", "-p", device], capture_output=True,
                       check=False)
    fsck = subprocess.run(["e2fsck", "-fn", device], capture_output=True, text=True,
                          check=False)
    dump = subprocess.run(["debugfs", "-R", f"cat {records_path}", device],
                          capture_output=True, check=False)
    if b"File not found" in dump.stderr:
        records = RecordsCheck(False, 0, 0, problem=f"no {records_path} on the data disk")
    else:
        records = check_records(dump.stdout)
    return ImageCheck(fsck.returncode == 0, recovery, records, fsck.stdout + fsck.stderr)


def check_image(image: Path, records_path: str = RECORDS_PATH,
                scratch: Path | None = None) -> ImageCheck:
    """Check an image (raw or qcow2; never modified) through a raw copy in a 0700 scratch dir."""
    fmt = _image_format(image)
    with tempfile.TemporaryDirectory(prefix="snaptui-check-", dir=scratch) as tmp:
        raw = Path(tmp) / "image.raw"
        subprocess.run(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", str(image),
                        str(raw)], check=True, capture_output=True)
        raw.chmod(0o600)
        return check_raw(raw, records_path)
