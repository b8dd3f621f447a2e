"""``snaptui cleanup --domain NAME [--include-unowned]`` on the real lab: an operator's own
internal snapshots (``qemu-img snapshot -c``, as the seed's runbook leaves them) and old Nova's
32-hex ones, selected per domain without copying a key per snapshot; other domains' leftovers
and a running guest's disk left alone.

The lab is shared: --domain names only this test's domains, so nothing else can be selected.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import libvirt
import pytest
from cleanup_fixtures import (
    dead_job,
    internal_snapshot,
    job_id,
    overlay,
    partial_file,
    sha256,
    snapshot_names,
)
from cli_tools import snaptui

from snaptui.core.paths import scratch_dir


def _by_key(proc) -> dict[str, dict]:
    assert proc.returncode in (0, 1), proc.stderr
    return {f["key"]: f for f in json.loads(proc.stdout)["findings"]}


def _key(lab, name: str, snap_id: int) -> str:
    return f"internal:{os.path.realpath(lab.disk_path())}#{snap_id}:{name}"


@pytest.fixture
def operator(make_domain) -> dict:
    """Three guests with leftovers snaptui did not make: a shut-off one holding an operator's
    snapshot and a Nova-like one, another shut-off one with an operator's snapshot, and a
    running one whose disk holds an operator's snapshot made while it was off."""
    off = make_domain(state="shut off")
    nova = uuid.uuid4().hex
    internal_snapshot(off.disk_path(), "runbook-before-seed")
    internal_snapshot(off.disk_path(), nova)
    other = make_domain(state="shut off")
    internal_snapshot(other.disk_path(), "runbook-before-seed")
    running = make_domain(state="shut off")
    internal_snapshot(running.disk_path(), "runbook-before-seed")
    running.set_state("running")
    return {
        "off": off, "other": other, "running": running, "nova": nova,
        "keys": {"operator": _key(off, "runbook-before-seed", 1), "nova": _key(off, nova, 2),
                 "other": _key(other, "runbook-before-seed", 1),
                 "running": _key(running, "runbook-before-seed", 1)},
    }


ARGS = ("--json", "--older-than", "0", "--only", "internal")


def test_domain_include_unowned_selects_and_removes_only_that_domain(operator):
    off, other, running = operator["off"], operator["other"], operator["running"]
    keys = operator["keys"]
    other_digest = sha256(other.disk_path())

    # By default: listed, labelled, not selected.
    found = _by_key(snaptui("cleanup", "--dry-run", *ARGS))
    for label, key in keys.items():
        finding = found[key]
        assert not finding["selected"] and finding["unowned"], (label, finding)
        assert "not made by snaptui" in finding["reason"]
    assert found[keys["operator"]]["label"] == "not made by snaptui"
    assert found[keys["operator"]]["domain"] == off.name
    nova = found[keys["nova"]]
    assert nova["label"] == "likely Nova leftover" and nova["domain"] == off.name
    assert nova["reason"].startswith("likely Nova leftover (32 hex digits, no libvirt metadata")
    assert found[keys["running"]]["refused"] and "in use" in found[keys["running"]]["refused"]

    # --domain alone narrows the list to that domain; nothing unowned is selected.
    found = _by_key(snaptui("cleanup", "--dry-run", "--domain", off.name, *ARGS))
    assert set(found) == {keys["operator"], keys["nova"]}
    assert not any(f["selected"] for f in found.values())

    # With --include-unowned, that domain's are selected; the running guest's is refused.
    proc = snaptui("cleanup", "--dry-run", "--domain", off.name, "--domain", running.name,
                   "--include-unowned", *ARGS)
    found = _by_key(proc)
    assert set(found) == {keys["operator"], keys["nova"], keys["running"]}
    assert found[keys["operator"]]["selected"] and found[keys["nova"]]["selected"]
    assert not found[keys["running"]]["selected"]
    data = json.loads(proc.stdout)
    assert data["selected"] == 2 and data["include_unowned"] is True
    assert data["domains"] == [off.name, running.name]

    proc = snaptui("cleanup", "--yes", "--domain", off.name, "--domain", running.name,
                   "--include-unowned", *ARGS)
    assert proc.returncode == 0, proc.stderr
    found = _by_key(proc)
    for label in ("operator", "nova"):
        assert found[keys[label]]["result"]["ok"], found[keys[label]]
    assert "result" not in found[keys["running"]]
    assert snapshot_names(off.disk_path()) == []
    # Another domain's leftover and the running guest's stay, and the guest keeps running.
    assert snapshot_names(other.disk_path()) == ["runbook-before-seed"]
    assert sha256(other.disk_path()) == other_digest
    assert snapshot_names(running.disk_path()) == ["runbook-before-seed"]
    assert running.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    # Chosen by key anyway, the running guest's snapshot is refused at removal time too.
    proc = snaptui("cleanup", "--yes", "--domain", running.name, "--key", keys["running"],
                   *ARGS)
    assert proc.returncode == 1
    result = _by_key(proc)[keys["running"]]["result"]
    assert not result["ok"] and result["reason"].startswith("refused: ")
    assert snapshot_names(running.disk_path()) == ["runbook-before-seed"]


def test_unowned_libvirt_snapshot_of_running_guest_is_selectable(make_domain):
    """libvirt manages it, so it goes through libvirt even while the guest runs."""
    lab = make_domain(state="running")
    lab.dom.snapshotCreateXML(
        "<domainsnapshot><name>operator-checkpoint</name></domainsnapshot>", 0)
    key = f"internal:{lab.uuid}@operator-checkpoint"
    found = _by_key(snaptui("cleanup", "--dry-run", "--domain", lab.name, *ARGS))
    assert not found[key]["selected"] and not found[key]["refused"]
    assert found[key]["label"] == "not made by snaptui"
    proc = snaptui("cleanup", "--yes", "--domain", lab.name, "--include-unowned", *ARGS)
    assert proc.returncode == 0, proc.stderr
    assert _by_key(proc)[key]["result"]["ok"]
    assert lab.dom.snapshotListNames(0) == []
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_young_unowned_snapshot_waits_for_older_than(make_domain):
    """Minutes old, it may be a Nova snapshot in progress: --older-than still holds it back."""
    lab = make_domain(state="shut off")
    internal_snapshot(lab.disk_path(), uuid.uuid4().hex)
    proc = snaptui("cleanup", "--dry-run", "--json", "--only", "internal", "--domain",
                   lab.name, "--include-unowned")
    (finding,) = _by_key(proc).values()
    assert not finding["selected"] and "--older-than" in finding["reason"]
    assert finding["label"] == "likely Nova leftover"


def test_bad_domain_and_include_unowned_alone_are_one_line(operator):
    off = operator["off"]
    before = snapshot_names(off.disk_path())
    partial = partial_file(scratch_dir() / f"{job_id()}-vda.qcow2.partial")
    try:
        for argv, words in (
                (["--domain", "no-such-domain-snaptui"], "--domain: no domain 'no-such-domain"),
                (["--domain", off.name, "--domain", "nope-snaptui", "--include-unowned"],
                 "no domain 'nope-snaptui'"),
                (["--include-unowned"], "--include-unowned needs --domain")):
            proc = snaptui("cleanup", "--yes", "--older-than", "0", *argv)
            assert proc.returncode == 2, proc.stderr
            assert len(proc.stderr.splitlines()) == 1 and words in proc.stderr, proc.stderr
            assert proc.stdout == ""
        assert snapshot_names(off.disk_path()) == before
        assert partial.exists()
    finally:
        partial.unlink(missing_ok=True)


def test_scratch_files_belong_to_their_jobs_domain(make_domain, tmp_path: Path):
    """A dead job's partial output is its domain's leftover: --domain lists and selects it."""
    lab = make_domain(state="shut off")
    other = make_domain(state="shut off")
    jid = dead_job(lab.uuid, lab.name)
    partial = partial_file(scratch_dir() / f"{jid}-vda.qcow2.partial")
    key = f"scratch:{os.path.realpath(partial)}"
    try:
        argv = ("cleanup", "--dry-run", "--json", "--older-than", "0", "--only", "scratch")
        found = _by_key(snaptui(*argv, "--domain", lab.name))
        assert found[key]["domain"] == lab.name and found[key]["selected"]
        assert found[key]["label"] == "snaptui" and not found[key]["unowned"]
        assert key not in _by_key(snaptui(*argv, "--domain", other.name))
    finally:
        partial.unlink(missing_ok=True)


def test_unowned_overlay_on_a_domains_disk_is_its_leftover(make_domain, tmp_path: Path):
    """A user's overlay on the domain's disk, in a --scan directory, used by no domain."""
    lab = make_domain(state="shut off")
    scan_dir = tmp_path / "scan"
    scan_dir.mkdir()
    user = overlay(scan_dir / "user-overlay.qcow2", lab.disk_path())
    key = f"scratch:{os.path.realpath(user)}"
    argv = ("cleanup", "--dry-run", "--json", "--older-than", "0", "--only", "scratch",
            "--scan", str(scan_dir), "--domain", lab.name)
    finding = _by_key(snaptui(*argv))[key]
    assert not finding["selected"] and finding["unowned"]
    assert finding["label"] == "not made by snaptui" and finding["domain"] == lab.name
    assert _by_key(snaptui(*argv, "--include-unowned"))[key]["selected"]
    assert user.exists()
