"""Real leftovers for the cleanup tests: made with qemu-img, libvirt and Glance, like an
interrupted snapshot run would leave them (nothing faked)."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import time
from pathlib import Path

from snaptui.core.engine.journal import JournalWriter, journal_path


def job_id(age_s: float = 7200) -> str:
    """A snaptui job id (as preflight makes them) of a job started ``age_s`` ago."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() - age_s))
    return f"{stamp}-{secrets.token_hex(3)}"


def internal_snapshot(path: Path, name: str) -> None:
    """qemu-img snapshot -c on a disk no guest runs on (an internal-mode job's first step)."""
    subprocess.run(["qemu-img", "snapshot", "-c", name, str(path)], check=True)


def snapshot_names(path: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "snapshot", "-U", "-l", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return [line.split()[1] for line in out.splitlines()[2:] if line.split()]


def overlay(path: Path, backing: Path, *, seed: str = "2M", age_s: float = 7200) -> Path:
    """A qcow2 delta on ``backing`` holding ``seed`` bytes of its own, ``age_s`` old."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F",
                    "qcow2", str(path)], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -q -P 0xcd 0 {seed}", str(path)],
                   check=True, capture_output=True)
    backdate(path, age_s)
    return path


def partial_file(path: Path, nbytes: int = 3 << 20, age_s: float = 7200) -> Path:
    """A partial output as a killed convert leaves it (real, allocated bytes)."""
    with open(path, "wb") as handle:
        handle.write(os.urandom(nbytes))
    backdate(path, age_s)
    return path


def backdate(path: Path, age_s: float) -> None:
    when = time.time() - age_s
    os.utime(path, (when, when))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def qemu_compare(a: Path, b: Path) -> int:
    """qemu-img compare -U (read-only, shared): 0 when the guest-visible contents match."""
    return subprocess.run(["qemu-img", "compare", "-U", str(a), str(b)],
                          capture_output=True).returncode


def dead_job(domain_uuid: str, domain_name: str, *, mode: str = "cold",
             facts: dict | None = None) -> str:
    """A journal of a job that died (ended 'failed') on this domain, as recover leaves it."""
    jid = job_id()
    journal = JournalWriter(journal_path(jid))
    try:
        journal.append("job", job_id=jid, plan={"job_id": jid, "domain_uuid": domain_uuid,
                                                "domain_name": domain_name, "mode": mode,
                                                "disks": []},
                       request={"domain": domain_name}, steps=[])
        journal.append("pid", pid=1 << 22)
        for key, value in (facts or {}).items():
            journal.append("fact", key=key, value=value)
        journal.append("failed", error="job process died; rolled back by recover",
                       recovered=True)
    finally:
        journal.close()
    return jid


def retrying(call, *args, attempts: int = 3, **kwargs):
    """Call a Glance operation again when the shared lab's Glance fails transiently (its
    sqlite database reports 'database is locked' under other engineers' load)."""
    from snaptui.core.errors import CloudError

    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except CloudError:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")
