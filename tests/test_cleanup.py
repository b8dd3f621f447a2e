"""``snaptui cleanup`` on the real lab: one leftover of each kind, made the way an interrupted
run leaves it, next to things that must not be touched.

The lab is shared: scans also see other people's leftovers, so every assertion and every
removal is limited to findings this test made (by path, domain uuid or image id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest
from cleanup_fixtures import (
    backdate,
    dead_job,
    internal_snapshot,
    job_id,
    overlay,
    partial_file,
    qemu_compare,
    retrying,
    sha256,
    snapshot_names,
)
from cli_tools import snaptui

from snaptui.core import audit
from snaptui.core.cleanup import Finding, Kind, ScanProgress, remove, remove_all, scan
from snaptui.core.errors import NotFound
from snaptui.core.images.glance import GlanceImages
from snaptui.core.images.store import add_image
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.paths import scratch_dir

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Leftovers:
    """What the scenario made: leftovers by name, and what must stay byte-identical."""

    keys: dict[str, str] = field(default_factory=dict)  # label -> expected finding key
    paths: dict[str, Path] = field(default_factory=dict)
    labs: dict[str, object] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    untouched: dict[Path, str] = field(default_factory=dict)  # shut-off files -> sha256
    copies: dict[Path, Path] = field(default_factory=dict)  # running disk -> copy made before
    scan_dir: Path | None = None

    def own(self, findings: list[Finding]) -> dict[str, Finding]:
        """The findings this scenario made, by label."""
        by_key = {f.key: f for f in findings}
        return {label: by_key[key] for label, key in self.keys.items() if key in by_key}


def _running(lab) -> bool:
    return lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


@pytest.fixture
def leftovers(make_domain, store: GlanceImages, own_images: list[str],
              tmp_path: Path) -> Iterator[Leftovers]:
    made = Leftovers()
    real = os.path.realpath

    # Internal snapshots left by dead internal-mode jobs: on a shut-off guest's disk, and on
    # a disk whose guest was started again afterwards (libvirt knows nothing of it).
    off = make_domain(state="shut off")
    snap_off = f"snaptui-{job_id()}"
    internal_snapshot(off.disk_path(), snap_off)
    made.keys["internal-off"] = f"internal:{real(off.disk_path())}#1:{snap_off}"
    made.labs["off"] = off

    running = make_domain(state="shut off")
    snap_run = f"snaptui-{job_id()}"
    internal_snapshot(running.disk_path(), snap_run)
    running.set_state("running")
    made.keys["internal-running"] = f"internal:{real(running.disk_path())}#1:{snap_run}"
    made.labs["running"] = running

    # A libvirt-managed internal snapshot (full checkpoint) of a running guest.
    managed = make_domain(state="running")
    snap_managed = f"snaptui-{job_id()}"
    managed.dom.snapshotCreateXML(
        f"<domainsnapshot><name>{snap_managed}</name></domainsnapshot>", 0)
    made.keys["internal-managed"] = f"internal:{managed.uuid}@{snap_managed}"
    made.labs["managed"] = managed

    # A managed save a dead cold job never restored.
    saved = make_domain(state="saved")
    dead_job(saved.uuid, saved.name, facts={"guest_saved": True})
    save_file = Path(f"/var/lib/libvirt/qemu/save/{saved.name}.save")
    backdate(save_file, 7200)
    made.keys["managed-save"] = f"managed-save:{saved.uuid}"
    made.labs["saved"] = saved

    # A stray delta in a --scan directory (backing file: a domain's disk, used by no domain),
    # and a user's overlay there that is not named like ours.
    scan_dir = tmp_path / "scan"
    scan_dir.mkdir()
    made.scan_dir = scan_dir
    delta = overlay(scan_dir / f"{job_id()}-vda.delta.qcow2", off.disk_path())
    made.paths["delta"] = delta
    made.keys["delta"] = f"scratch:{real(delta)}"
    user_overlay = overlay(scan_dir / "user-overlay.qcow2", off.disk_path())
    made.keys["user-overlay"] = f"scratch:{real(user_overlay)}"
    made.untouched[user_overlay] = sha256(user_overlay)

    # A partial output in the scratch directory.
    partial = partial_file(scratch_dir() / f"{job_id()}-vda.qcow2.partial")
    made.paths["partial"] = partial
    made.keys["partial"] = f"scratch:{real(partial)}"

    # Things that must not be touched: a healthy running guest, a shut-off guest with a
    # snapshot of the user's own, and an active image.
    healthy = make_domain(state="running")
    copy = tmp_path / "healthy-copy.qcow2"
    shutil.copyfile(healthy.disk_path(), copy)
    made.copies[healthy.disk_path()] = copy
    made.labs["healthy"] = healthy
    user = make_domain(state="shut off")
    internal_snapshot(user.disk_path(), "before-upgrade")
    made.keys["user-snapshot"] = f"internal:{real(user.disk_path())}#1:before-upgrade"
    made.untouched[user.disk_path()] = sha256(user.disk_path())
    made.untouched[off.disk_path()] = sha256(off.disk_path())  # changes: checked apart

    # An upload a dead job of this host's journal never finished (its snaptui_job says so).
    uploader = dead_job(str(uuid.uuid4()), "snaptui-test-cleanup-uploader")
    queued = retrying(store.create, "snaptui-test-cleanup-queued", "qcow2", "bare",
                      {"snaptui_job": uploader})
    own_images.append(queued.id)
    made.images["queued"] = queued.id
    made.keys["queued"] = f"images:glance:{queued.id}"
    blob = tmp_path / "active.raw"
    blob.write_bytes(b"\x5a" * 65536)
    active = retrying(add_image, store, blob, name="snaptui-test-cleanup-active", disk_format="raw")
    own_images.append(active.id)
    made.images["active"] = active.id
    try:
        yield made
    finally:
        for path in made.paths.values():
            path.unlink(missing_ok=True)


def _scan(made: Leftovers, store, progress: list[ScanProgress] | None = None):
    host = LibvirtHost().connect()
    try:
        return asyncio.run(scan(host, store, scan_dirs=[made.scan_dir], older_than_s=0,
                                on_progress=progress.append if progress is not None else None))
    finally:
        host.close()


def test_scan_finds_every_leftover_and_removes_only_the_safe(leftovers: Leftovers, store):
    made = leftovers
    progress: list[ScanProgress] = []
    report = _scan(made, store, progress)
    own = made.own(report.findings)
    assert set(own) == set(made.keys), sorted(set(made.keys) - set(own))
    assert {p.kind for p in progress} >= {Kind.INTERNAL, Kind.SCRATCH, Kind.MANAGED_SAVE,
                                          Kind.IMAGES}

    safe = {label for label, f in own.items() if f.safe}
    assert safe == {"internal-off", "internal-managed", "managed-save", "delta", "partial",
                    "queued"}, {label: f.reason for label, f in own.items()}
    assert own["internal-running"].refused and "in use" in own["internal-running"].refused
    assert "not made by snaptui" in own["user-snapshot"].reason
    assert "not named like a snaptui delta" in own["user-overlay"].reason
    assert own["internal-managed"].details["managed"] is True
    assert own["internal-off"].details["managed"] is False
    assert own["managed-save"].size and own["managed-save"].size > 0
    assert own["partial"].size == os.stat(made.paths["partial"]).st_blocks * 512
    assert own["internal-off"].commands == (
        f"qemu-img snapshot -d {own['internal-off'].details['name']} "
        f"{made.labs['off'].disk_path()}",)
    assert own["managed-save"].commands[0].startswith("virsh -c ")
    assert own["queued"].commands[0].startswith("openstack --os-cloud ")
    # The active image is no finding at all.
    assert not [f for f in report.findings if made.images["active"] in f.key]

    # Remove what is safe, and try the refused one too: it must be refused with the reason.
    chosen = [own[label] for label in sorted(safe)] + [own["internal-running"]]
    host = LibvirtHost().connect()
    try:
        results = {r.key: r for r in asyncio.run(remove_all(chosen, host, store))}
        # A refusal is checked again at removal time, not only trusted from the scan.
        unflagged = Finding(**{**own["internal-running"].__dict__, "refused": None})
        again = asyncio.run(remove(unflagged, host, store))
    finally:
        host.close()
    for label in safe:
        result = results[made.keys[label]]
        assert result.ok, (label, result.reason)
    refused = results[made.keys["internal-running"]]
    assert not refused.ok and "qemu-img must not modify an image in use" in refused.reason
    assert not again.ok and again.reason.startswith("refused: ")
    assert "running" in again.reason

    # Every removal attempt is in the audit log: started, then ok or failed with the reason.
    entries = [e for e in audit.read() if e["action"].startswith("cleanup:")]
    for label in safe:
        mine = [e["result"] for e in entries if e.get("key") == made.keys[label]]
        assert mine == ["started", "ok"], (label, mine)
    refused_entries = [e for e in entries if e.get("key") == made.keys["internal-running"]]
    assert [e["result"] for e in refused_entries] == ["started", "failed"]
    assert "running" in refused_entries[-1]["error"]

    # Reclaimed space is measured: a deleted file gives back all it held.
    partial_result = results[made.keys["partial"]]
    assert partial_result.reclaimed == partial_result.before == own["partial"].size > 0
    assert partial_result.after == 0
    assert results[made.keys["delta"]].reclaimed == own["delta"].size > 0
    assert results[made.keys["managed-save"]].reclaimed > 0

    # What was removed is gone.
    labs = made.labs
    assert own["internal-off"].details["name"] not in snapshot_names(labs["off"].disk_path())
    assert labs["managed"].dom.snapshotListNames(0) == []
    assert own["internal-managed"].details["name"] not in snapshot_names(
        labs["managed"].disk_path())
    assert not labs["saved"].dom.hasManagedSaveImage(0)
    assert not made.paths["delta"].exists() and not made.paths["partial"].exists()
    with pytest.raises(NotFound):
        store.show(made.images["queued"])

    # What was refused or not selected is still there, byte for byte; guests keep running.
    assert own["internal-running"].details["name"] in snapshot_names(
        labs["running"].disk_path())
    for label in ("running", "managed", "healthy"):
        assert _running(labs[label]), label
    for path, digest in made.untouched.items():
        if path != labs["off"].disk_path():
            assert sha256(path) == digest, path
    for disk, copy in made.copies.items():
        assert qemu_compare(disk, copy) == 0
    assert store.show(made.images["active"]).status == "active"

    # A second scan no longer lists what was removed.
    left = made.own(_scan(made, store).findings)
    assert set(left) == {"internal-running", "user-snapshot", "user-overlay"}


# ---------------------------------------------------------------- the CLI


def _own_json(made: Leftovers, data: dict) -> dict[str, dict]:
    by_key = {f["key"]: f for f in data["findings"]}
    return {label: by_key[key] for label, key in made.keys.items() if key in by_key}


@pytest.fixture
def small(make_domain, tmp_path: Path) -> Leftovers:
    """A shut-off guest with a leftover snapshot, a stray delta on it, a partial file, and a
    running guest with a leftover snapshot (the unsafe one)."""
    made = Leftovers()
    real = os.path.realpath
    off = make_domain(state="shut off")
    name = f"snaptui-{job_id()}"
    internal_snapshot(off.disk_path(), name)
    made.keys["internal-off"] = f"internal:{real(off.disk_path())}#1:{name}"
    made.labs["off"] = off
    running = make_domain(state="shut off")
    name = f"snaptui-{job_id()}"
    internal_snapshot(running.disk_path(), name)
    running.set_state("running")
    made.keys["internal-running"] = f"internal:{real(running.disk_path())}#1:{name}"
    made.labs["running"] = running
    made.scan_dir = tmp_path / "scan"
    made.scan_dir.mkdir()
    delta = overlay(made.scan_dir / f"{job_id()}-vda.delta.qcow2", off.disk_path())
    made.paths["delta"] = delta
    made.keys["delta"] = f"scratch:{real(delta)}"
    partial = partial_file(scratch_dir() / f"{job_id()}-vdb.raw.partial")
    made.paths["partial"] = partial
    made.keys["partial"] = f"scratch:{real(partial)}"
    made.untouched = {p: sha256(p) for p in (off.disk_path(), delta, partial)}
    return made


def test_cli_dry_run_json_changes_nothing(small: Leftovers):
    proc = snaptui("cleanup", "--dry-run", "--json", "--older-than", "0", "--only",
                   "internal,scratch", "--scan", str(small.scan_dir))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["dry_run"] is True
    own = _own_json(small, data)
    assert set(own) == set(small.keys)
    assert {f["kind"] for f in data["findings"]} <= {"internal", "scratch"}
    for label in ("internal-off", "delta", "partial"):
        finding = own[label]
        assert finding["safe"] and finding["selected"], finding
        assert set(finding) >= {"kind", "location", "size", "safe", "reason", "action"}
        assert finding["result"]["dry_run"] and finding["result"]["reclaimed"] == 0
    assert own["delta"]["commands"] == [f"rm -- {small.paths['delta']}"]
    assert not own["internal-running"]["selected"]
    assert "in use" in own["internal-running"]["reason"]
    for path, digest in small.untouched.items():
        assert sha256(path) == digest
    assert _running(small.labs["running"])

    # The text form prints the equivalent commands, and still changes nothing.
    proc = snaptui("cleanup", "--dry-run", "--older-than", "0", "--only", "scratch")
    assert proc.returncode == 0, proc.stderr
    assert f"rm -- {small.paths['partial']}" in proc.stdout.splitlines()
    assert small.paths["partial"].exists()


def test_cli_refuses_without_yes_when_not_a_tty(small: Leftovers):
    proc = snaptui("cleanup", "--older-than", "0", "--only", "scratch", input="y\n")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert "not on a terminal" in proc.stderr and "--yes" in proc.stderr
    assert proc.stdout == ""
    assert small.paths["partial"].exists()


def test_cli_only_scratch_yes_removes_and_measures(small: Leftovers):
    # The scratch dir is this test's own (isolated state dir), so --yes acts on ours only.
    before = os.stat(small.paths["partial"]).st_blocks * 512
    proc = snaptui("cleanup", "--yes", "--json", "--older-than", "0", "--only", "scratch")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {f["kind"] for f in data["findings"]} == {"scratch"}
    partial = _own_json(small, data)["partial"]
    assert partial["result"]["ok"] and partial["result"]["reclaimed"] == before
    assert data["reclaimed"] == before
    assert not small.paths["partial"].exists()
    # Not scanned (--only scratch without --scan): the snapshot is untouched.
    assert sha256(small.labs["off"].disk_path()) == small.untouched[small.labs["off"].disk_path()]


def test_cli_key_acts_on_chosen_findings_and_reports_refusals(small: Leftovers):
    keys = [small.keys["internal-off"], small.keys["internal-running"], small.keys["delta"]]
    argv = ["cleanup", "--yes", "--json", "--older-than", "0", "--scan", str(small.scan_dir),
            "--only", "internal,scratch"]
    for key in keys:
        argv += ["--key", key]
    proc = snaptui(*argv)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    own = _own_json(small, data)
    assert own["internal-off"]["result"]["ok"]
    assert own["delta"]["result"]["ok"] and own["delta"]["result"]["reclaimed"] > 0
    refused = own["internal-running"]["result"]
    assert not refused["ok"] and "qemu-img must not modify an image in use" in refused["reason"]
    assert data["failed"] == 1
    # Only the chosen ones were acted on: the partial file (also safe) is still there.
    assert "result" not in own["partial"] and small.paths["partial"].exists()
    off, running = small.labs["off"], small.labs["running"]
    assert not [n for n in snapshot_names(off.disk_path()) if n.startswith("snaptui-")]
    assert [n for n in snapshot_names(running.disk_path()) if n.startswith("snaptui-")]
    assert _running(running)

    # A key that names nothing is a failure with its reason, not silence.
    proc = snaptui("cleanup", "--yes", "--json", "--only", "scratch", "--key", "scratch:/nope")
    assert proc.returncode == 1
    assert "no such finding" in json.loads(proc.stdout)["missing"][0]["reason"]


def test_cli_bad_options_are_one_line(small: Leftovers):
    for argv, words in ((["--only", "bogus"], "unknown kind"),
                        (["--older-than", "soon"], "not a duration"),
                        (["--scan", "/nonexistent-dir"], "not a directory")):
        proc = snaptui("cleanup", "--dry-run", *argv)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and words in proc.stderr, proc.stderr


# ---------------------------------------------------------------- libvirt leftovers


def _scan_only(*kinds: Kind):
    host = LibvirtHost().connect()
    try:
        return asyncio.run(scan(host, None, only=kinds, older_than_s=0))
    finally:
        host.close()


def _remove(finding: Finding):
    host = LibvirtHost().connect()
    try:
        return asyncio.run(remove(finding, host))
    finally:
        host.close()


def test_transient_domain_with_journal_is_defined_again(make_domain):
    lab = make_domain(state="running")
    other = make_domain(state="running")  # transient too, but no journal of ours names it
    xml = lab.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    dead_job(lab.uuid, lab.name, mode="live", facts={"persistent_xml": xml})
    lab.dom.undefine()  # what a Nova-style live copy does before its block copy
    other.dom.undefine()
    assert not lab.dom.isPersistent()

    findings = {f.key: f for f in _scan_only(Kind.TRANSIENT).findings}
    assert f"transient:{other.uuid}" not in findings
    finding = findings[f"transient:{lab.uuid}"]
    assert finding.safe and "saved its definition" in finding.reason
    assert finding.commands[-1].endswith(f"define {lab.name}.xml")

    result = _remove(finding)
    assert result.ok, result.reason
    assert lab.dom.isPersistent() and _running(lab)
    assert lab.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE) \
        == xml
    assert not other.dom.isPersistent()


def test_leftover_verify_domain_is_destroyed_not_defined(conn, disk_dir):
    """A boot check whose job died before recover (snaptui-verify-<job>, transient)."""
    from snaptui.core.verify import boot as verify_boot

    job_id = "20260101-000000-abcdef"
    files = verify_boot.VerifyFiles.for_prefix(disk_dir / f"{job_id}-vda")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(files.overlay), "16M"],
                   check=True)
    files.console.touch()
    name = f"{verify_boot.VERIFY_PREFIX}{job_id}"
    dom = conn.createXML(verify_boot.verify_xml(None, name=name, files=files, accel="tcg"), 0)
    try:
        findings = {f.key: f for f in _scan_only(Kind.TRANSIENT).findings}
        finding = findings[f"transient:{dom.UUIDString()}"]
        assert finding.safe and finding.action == "virsh destroy", finding.reason
        assert f"job {job_id}" in finding.reason
        result = _remove(finding)
        assert result.ok, result.reason
        assert name not in [d.name() for d in conn.listAllDomains()]
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()


def test_stray_block_job_is_aborted_and_its_delta_then_found(make_domain):
    lab = make_domain(state="running")
    delta = scratch_dir() / f"{job_id()}-vda.delta.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(lab.disk_path()),
                    "-F", "qcow2", str(delta)], check=True)
    flags = (libvirt.VIR_DOMAIN_BLOCK_COPY_SHALLOW | libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT
             | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
    lab.dom.blockCopy("vda", f"<disk type='file'><driver type='qcow2'/><source file='{delta}'/>"
                      "</disk>", None, flags)
    try:
        findings = {f.key: f for f in _scan_only(Kind.BLOCKJOB, Kind.SCRATCH).findings}
        job = findings[f"blockjob:{lab.uuid}:vda"]
        assert job.safe, job.reason
        assert job.details["mirror"] == str(delta)
        # While QEMU writes into it, the delta is in use: listed, refused.
        held = findings[f"scratch:{os.path.realpath(delta)}"]
        assert not held.safe and held.refused and "open by process" in held.refused

        result = _remove(job)
        assert result.ok, result.reason
        assert lab.dom.blockJobInfo("vda", 0) == {}
        assert _running(lab)

        delta_finding = {f.key: f for f in _scan_only(Kind.SCRATCH).findings}[
            f"scratch:{os.path.realpath(delta)}"]
        assert delta_finding.safe, delta_finding.reason
        assert _remove(delta_finding).ok and not delta.exists()
    finally:
        delta.unlink(missing_ok=True)


def test_cli_on_a_terminal_lists_and_asks(small: Leftovers):
    import pty

    def run(answer: str) -> tuple[int, str]:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "snaptui", "cleanup", "--older-than", "0", "--only",
             "scratch"], stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
            env={**os.environ, "COLUMNS": "200"})
        os.close(slave)
        output = b""
        answered = False
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"[y/N]" in output:
                os.write(master, answer.encode() + b"\n")
                answered = True
        os.close(master)
        return proc.wait(timeout=60), output.decode(errors="replace")

    rc, out = run("n")
    assert rc == 1 and "nothing removed" in out
    assert "scratch" in out and "reclaimable" in out and "safe" in out
    assert small.paths["partial"].exists()
    rc, out = run("y")
    assert rc == 0, out
    assert "reclaimed (measured)" in out
    assert not small.paths["partial"].exists()


def test_cli_images_flags_snapshots_of_missing_instances(make_domain, store, own_images,
                                                         tmp_path):
    lab = make_domain(state="shut off")
    blob = tmp_path / "img.raw"
    blob.write_bytes(b"\x11" * 65536)
    gone = retrying(add_image, store, blob, name="snaptui-test-cleanup-orphan", disk_format="raw",
                    properties={"image_type": "snapshot",
                                "instance_uuid": str(uuid.uuid4())})
    own_images.append(gone.id)
    here = retrying(add_image, store, blob, name="snaptui-test-cleanup-here", disk_format="raw",
                    properties={"image_type": "snapshot", "instance_uuid": lab.uuid})
    own_images.append(here.id)
    uploader = dead_job(str(uuid.uuid4()), "snaptui-test-cleanup-uploader")
    queued = retrying(store.create, "snaptui-test-cleanup-queued", "raw", "bare",
                      {"snaptui_job": uploader})
    own_images.append(queued.id)

    proc = snaptui("cleanup", "--dry-run", "--json", "--only", "images", "--older-than", "0")
    assert proc.returncode == 0, proc.stderr
    by_id = {f["details"]["image_id"]: f for f in json.loads(proc.stdout)["findings"]}
    assert here.id not in by_id
    orphan = by_id[gone.id]
    assert not orphan["safe"] and not orphan["selected"] and "flagged only" in orphan["reason"]
    assert by_id[queued.id]["selected"] and "queued" in by_id[queued.id]["reason"]
    # A threshold older than the image keeps it out of the selection.
    proc = snaptui("cleanup", "--dry-run", "--json", "--only", "images", "--older-than", "1d")
    by_id = {f["details"]["image_id"]: f for f in json.loads(proc.stdout)["findings"]}
    assert not by_id[queued.id]["selected"] and "--older-than" in by_id[queued.id]["reason"]
    assert {store.show(i).status for i in own_images} == {"active", "queued"}


def test_leftover_nbd_socket_directory_is_found_and_removed(lab_env):
    """A streamed job killed before its undo leaves ``<job>.nbd/`` with QEMU's socket in it."""
    import socket as sockets

    jid = job_id()
    directory = scratch_dir() / f"{jid}.nbd"
    directory.mkdir(mode=0o700)
    listener = sockets.socket(sockets.AF_UNIX)
    listener.bind(str(directory / f"{jid}.sock"))
    listener.close()  # the socket file stays, as QEMU's does when it is killed
    backdate(directory, 7200)
    found = {f.key: f for f in _scan_only(Kind.SCRATCH).findings}
    finding = found[f"scratch:{os.path.realpath(directory)}"]
    assert finding.safe and finding.details["job_id"] == jid
    assert finding.reason.startswith("NBD socket directory of snaptui job")
    assert finding.commands == (f"rm -r -- {directory}",)
    _remove(finding)
    assert not directory.exists()


def test_stuck_images_are_preselected_only_when_a_job_of_this_host_made_them(
        store: GlanceImages, own_images: list[str]):
    """A queued image is pre-selected only when its snaptui_job names a job of this host's
    journal (and its snaptui_host, if set, is this host): someone else's upload in progress,
    or another host's job, is listed with its reason and never pre-selected."""
    import socket

    ours = dead_job(str(uuid.uuid4()), "snaptui-test-cleanup-gone")
    here = socket.gethostname()
    cases = {
        "foreign": {},
        "ours": {"snaptui_job": ours, "snaptui_host": here},
        "ours-no-host": {"snaptui_job": ours},
        "other-host": {"snaptui_job": ours, "snaptui_host": f"not-{here}"},
        "unknown-job": {"snaptui_job": job_id()},
        "not-a-job-id": {"snaptui_job": "../../x", "snaptui_host": here},
    }
    ids = {}
    for label, props in cases.items():
        image = retrying(store.create, f"snaptui-test-cleanup-{label}", "raw", "bare", props)
        own_images.append(image.id)
        ids[label] = image.id
    report = asyncio.run(scan(None, store, only={Kind.IMAGES}, older_than_s=0))
    by_id = {f.details["image_id"]: f for f in report.findings}
    found = {label: by_id[image_id] for label, image_id in ids.items()}
    safe = {label for label, f in found.items() if f.safe}
    assert safe == {"ours", "ours-no-host"}, {label: f.reason for label, f in found.items()}
    assert "not made by snaptui" in found["foreign"].reason
    assert "another host" in found["other-host"].reason
    assert "not in this host's journal" in found["unknown-job"].reason
    assert "not in this host's journal" in found["not-a-job-id"].reason
    for label in cases.keys() - safe:
        assert found[label].unowned and not found[label].unowned_ok, label
    assert {store.show(i).status for i in ids.values()} == {"queued"}
