"""Streamed snapshots on the real lab: a pull-mode backup read over NBD straight into Glance.

The image downloaded from Glance must compare equal to the source disk (qemu-img compare -U; the
lab's guests run no OS and never write), its sha512 must be Glance's os_hash_value, the scratch
dir must hold nothing but the export's socket and copy-before-write file, and the guest must
stay running throughout. The fault cases (cancel, SIGKILL + recover, Glance failures, libvirtd
restart) are in tests/test_fault_matrix.py ("stream-*").
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest
from cli_tools import snaptui

from snaptui.core.engine.jobs import follow, get_job, launch, prepare
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.engine.preflight.stream import qcow2_writer_unavailable
from snaptui.core.errors import BadInput
from snaptui.core.paths import scratch_dir

NAME = "snaptui-test-stream"


@dataclass
class Watch:
    """Polls the guest's state and the scratch dir from a thread while a job runs."""

    dom: libvirt.virDomain
    states: set[int] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    peak_bytes: int = 0
    samples: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        scratch = scratch_dir()
        while not self.stop.is_set():
            self.states.add(self.dom.state()[0])
            total = 0
            for path in scratch.iterdir():
                self.names.add(path.name)
                try:
                    total += path.stat().st_blocks * 512
                except FileNotFoundError:
                    continue
            self.peak_bytes = max(self.peak_bytes, total)
            self.samples += 1
            self.stop.wait(0.005)


def run_watched(request: SnapshotRequest, dom: libvirt.virDomain) -> tuple[str, dict, Watch]:
    plan, steps = asyncio.run(prepare(request))
    assert plan.stream and plan.mode == Mode.BACKUP, plan.mode_reason
    watch = Watch(dom)
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    try:
        job_id = launch(plan, request, steps)
        events = list(follow(job_id, timeout_s=300))
    finally:
        watch.stop.set()
        thread.join()
    return job_id, events[-1], watch


def download(store, image_id: str, path: Path) -> str:
    with open(path, "wb") as out:
        store.download(image_id, out)
    digest = hashlib.sha512()
    with open(path, "rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_streamed(lab, store, own_images, job_id: str, last: dict, watch: Watch, fmt: str,
                   tmp_path: Path, state: int = libvirt.VIR_DOMAIN_RUNNING) -> None:
    assert last["event"] == "done", last
    job = get_job(job_id)
    assert [s.name for s in job.steps][:1] == ["export"]
    assert all(s.state == "done" for s in job.steps), [(s.name, s.state) for s in job.steps]
    # never paused (nor resumed): every sample in the state it had, no downtime recorded
    assert watch.samples > 10 and watch.states == {state}
    assert last["downtime_s"] == 0.0 and "guest_stopped_at" not in job.facts
    # the scratch dir held the socket's own directory and the CoW scratch only, and is empty now
    allowed = {f"{job_id}.nbd"} | {f"{job_id}-{t}.cow.qcow2" for t, _, _ in lab.disks}
    assert watch.names <= allowed and f"{job_id}.nbd" in watch.names, watch.names
    assert watch.peak_bytes < 8 << 20, watch.peak_bytes
    assert list(scratch_dir().iterdir()) == []
    dom = lab.dom
    assert dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
    with pytest.raises(libvirt.libvirtError):
        dom.backupGetXMLDesc(0)
    for image in last["images"]:
        own_images.append(image["image_id"])
        record = store.show(image["image_id"])
        assert record.status == "active" and record.disk_format == fmt
        assert record.properties["snaptui_method"] == "backup-stream"
        out = tmp_path / f"{image['target']}.{fmt}"
        digest = download(store, record.id, out)
        assert digest == record.os_hash_value == image["checksum"]
        assert record.size == out.stat().st_size == image["sizes"]["uploaded"]
        source = lab.disk_path(image["target"])
        compare = subprocess.run(["qemu-img", "compare", "-U", "-f", "qcow2", "-F", fmt,
                                  str(source), str(out)], capture_output=True, text=True)
        assert compare.returncode == 0, compare.stdout + compare.stderr
        if fmt == "qcow2":
            subprocess.run(["qemu-img", "check", "-q", str(out)], check=True)
    # progress carried bytes read over NBD next to bytes sent, with rate and ETA
    from fault_tools import journal_events

    progress = [ev for ev in journal_events(job_id)
                if ev.get("event") == "progress" and str(ev.get("step")).startswith("stream:")]
    assert progress and all({"read", "rate", "eta_s"} <= ev.keys() for ev in progress)
    assert progress[-1]["done"] == progress[-1]["total"]


@pytest.mark.parametrize(("state", "ndisks"), [("running", 2), ("paused", 1)])
def test_raw_stream_equals_source(make_domain, store, own_images, tmp_path, state, ndisks):
    lab = make_domain(state=state, size="256M", seed="40M", ndisks=ndisks)
    request = SnapshotRequest(domain=lab.name, name=NAME, out_format="raw", all_disks=True,
                              destination="glance")
    job_id, last, watch = run_watched(request, lab.dom)
    check_streamed(lab, store, own_images, job_id, last, watch, "raw", tmp_path,
                   lab.dom.state()[0])
    assert last["mode"] == "backup" and len(last["images"]) == ndisks
    assert lab.dom.state()[0] == (libvirt.VIR_DOMAIN_PAUSED if state == "paused"
                                  else libvirt.VIR_DOMAIN_RUNNING)


def test_qcow2_streams_once_the_writer_is_there(make_domain, store, own_images, tmp_path):
    """qcow2 streams through snaptui's qcow2 stream writer; until it is installed, auto says
    why and takes the copy path, and --stream is refused."""
    lab = make_domain(state="running", size="256M", seed="40M")
    request = SnapshotRequest(domain=lab.name, name=NAME, out_format="qcow2",
                              destination="glance")
    missing = qcow2_writer_unavailable()
    if missing is None:
        job_id, last, watch = run_watched(request, lab.dom)
        check_streamed(lab, store, own_images, job_id, last, watch, "qcow2", tmp_path)
        return
    plan, _ = asyncio.run(prepare(request))
    assert not plan.stream and f"not streamed: {missing}" in plan.notes
    with pytest.raises(BadInput, match="cannot stream: snaptui's qcow2 stream writer"):
        asyncio.run(prepare(SnapshotRequest(domain=lab.name, name=NAME, out_format="qcow2",
                                            destination="glance", stream="on")))


def test_dry_run_shows_the_pull_backup_and_nbd_commands(make_domain):
    lab = make_domain(state="running")
    result = snaptui("snapshot", lab.name, "--name", NAME, "--format", "raw", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "auto chose streamed: pull-mode backup over NBD" in out
    assert f"virsh backup-begin {lab.name} backup-pull.xml --reuse-external" in out
    assert "nbdcopy 'nbd+unix:///vda?socket=" in out and f"virsh domjobabort {lab.name}" in out
    assert "snaptui_method=backup-stream" in out
    xml = next(line for line in out.splitlines() if line.startswith("# backup-pull.xml: "))
    assert "<domainbackup mode='pull'><server transport='unix' socket=" in xml
    assert """<disk name="vda" backup='yes' type='file'><scratch file=""" in xml
    assert list(scratch_dir().iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (("--mode", "live", "--stream"), "--stream is the pull-mode form of backup mode; it "
     "cannot be combined with --mode live"),
    (("--stream", "--to", "library"), "cannot stream: the local library keeps the copy path"),
    (("--stream", "--compress", "--format", "qcow2"),
     "cannot stream: --compress needs the copy path"),
    (("--stream", "--keep-local", "/tmp/snaptui-test-stream-kept.raw"),
     "cannot stream: --keep-local needs a local image file"),
])
def test_stream_refused_in_one_line(make_domain, args, message):
    lab = make_domain(state="running")
    xml = lab.dom.XMLDesc(0)
    result = snaptui("snapshot", lab.name, "--name", NAME, "--format", "raw", *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and lab.dom.XMLDesc(0) == xml
    assert list(scratch_dir().iterdir()) == []


def test_stream_refused_for_shut_off_guest(make_domain):
    lab = make_domain(state="shut off")
    result = snaptui("snapshot", lab.name, "--name", NAME, "--format", "raw", "--stream")
    assert result.returncode != 0
    assert "cannot stream: streaming needs a running guest" in result.stderr


def test_auto_without_libnbd_says_why_and_copies(make_domain, monkeypatch):
    """No libnbd binding (sys.modules entry None makes ``import nbd`` fail as when it is not
    installed): auto keeps the copy path and says why; --stream is refused."""
    lab = make_domain(state="running")
    monkeypatch.setitem(sys.modules, "nbd", None)
    request = SnapshotRequest(domain=lab.name, name=NAME, out_format="raw",
                              destination="glance")
    plan, _ = asyncio.run(prepare(request))
    assert not plan.stream and plan.mode == Mode.LIVE
    assert any(note.startswith("not streamed: libnbd's Python binding is not installed")
               for note in plan.notes), plan.notes
    with pytest.raises(BadInput, match="cannot stream: libnbd's Python binding"):
        asyncio.run(prepare(SnapshotRequest(domain=lab.name, name=NAME, out_format="raw",
                                            destination="glance", stream="on")))


def test_no_stream_and_explicit_backup_keep_the_copy_path(make_domain):
    lab = make_domain(state="running")
    for extra, mode in (({"stream": "off"}, Mode.LIVE), ({"mode": Mode.BACKUP}, Mode.BACKUP)):
        request = SnapshotRequest(domain=lab.name, name=NAME, out_format="raw",
                                  destination="glance", **extra)  # type: ignore[arg-type]
        plan, steps = asyncio.run(prepare(request))
        assert not plan.stream and plan.mode == mode
        assert "export" not in [s.name for s in steps]


def test_quiesce_freezes_around_backup_begin_only(make_domain, store, own_images, monkeypatch):
    """--quiesce auto: frozen just before the export begins and thawed right after it, inside
    the export step (the lab's guests have no agent: the freeze and thaw are made to succeed
    with SNAPTUI_FAULT, as in tests/test_injected_faults.py)."""
    from fault_seam import snaptui_faults as faults
    from fault_tools import journal_events

    lab = make_domain(state="running")
    faults.install_in(monkeypatch, "export:fsFreeze=ok,export:fsThaw=ok")
    request = SnapshotRequest(domain=lab.name, name=NAME, out_format="raw",
                              destination="glance")
    job_id, last, _ = run_watched(request, lab.dom)
    assert last["event"] == "done", last
    own_images.append(last["image_id"])
    events = journal_events(job_id)
    notes = [(ev.get("step"), ev["text"].split(" in ")[0].split(" after ")[0])
             for ev in events if ev.get("event") == "note" and "filesystems" in ev["text"]]
    assert notes == [("export", "filesystems frozen"), ("export", "filesystems thawed")], notes
    assert not get_job(job_id).facts.get("frozen")


def test_progress_text_of_a_stream_says_sent_and_read():
    from snaptui.core.engine.states import progress_text

    text = progress_text({"done": 1 << 30, "total": 2 << 30, "unit": "bytes", "read": 512 << 20,
                          "rate": 100 << 20, "eta_s": 10.0})
    assert text == "1.0 GiB / 2.0 GiB sent, 512 MiB read · 100 MiB/s · ETA 10.0 s"


def test_cleanup_knows_a_dead_jobs_cow_scratch(tmp_path):
    """A CoW scratch a dead streamed job left (its recover never ran) is snaptui's, and safe."""
    import json

    cow = scratch_dir() / "20260101-000000-abc123-vda.cow.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(cow), "64M"], check=True)
    result = snaptui("cleanup", "--dry-run", "--only", "scratch", "--older-than", "0s", "--json",
                     "--library", str(tmp_path / "lib"))
    assert result.returncode == 0, result.stderr
    found = [f for f in json.loads(result.stdout)["findings"] if f["location"] == str(cow)]
    assert found, result.stdout
    assert "pull-backup copy-before-write scratch of snaptui job 20260101-000000-abc123" in \
        found[0]["reason"] and found[0]["safe"] is True, found[0]
    assert cow.exists()


def test_cli_says_streamed(make_domain, store, own_images):
    lab = make_domain(state="running")
    result = snaptui("snapshot", lab.name, "--name", NAME, "--format", "raw")
    ids = [i.id for i in store.iter_images() if i.name == NAME
           and i.properties.get("snaptui_domain") == lab.name]
    own_images.extend(ids)
    assert result.returncode == 0, result.stderr
    assert f"{lab.name}  mode backup (streamed)  done" in result.stdout
    assert "allocated → streamed 64.0 MiB; guest downtime 0.0 s" in result.stdout
    assert len(ids) == 1 and ids[0] in result.stdout
    # piped: the live view's last frame ends its line, the outcome starts its own
    assert any(line.startswith(f"image '{NAME}' id ") for line in result.stdout.splitlines()), \
        result.stdout


def test_chunk_reader_hands_whole_chunks_over_and_splits_the_rest():
    from snaptui.core.images.store import ChunkReader

    big = bytes(range(256)) * 16
    reader = ChunkReader(iter([b"abc", big, b"", b"xy"]))
    first = reader.read(1 << 20)
    assert first == b"abc"
    whole = reader.read(1 << 20)
    assert whole is big  # not copied
    assert reader.read(2) == b"xy" and reader.read(5) == b"" and reader.read() == b""
    parts = ChunkReader(iter([big]))
    assert b"".join(iter(lambda: parts.read(1000), b"")) == big


@pytest.mark.parametrize("streamed", [False, True], ids=["file", "stream"])
def test_upload_is_sent_in_send_chunk_pieces(streamed):
    """glanceclient asks the reader for 1 MiB at a time; the reader hands out pieces of at
    most SEND_CHUNK (Glance ingests those faster, docs/streaming.md), complete and in order,
    hashed as sent."""
    from snaptui.core.images.store import SEND_CHUNK, ChunkReader, HashingReader

    data = os.urandom(3 << 20) + b"tail"
    source = (ChunkReader(data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20))
              if streamed else io.BytesIO(data))
    with source, HashingReader(source, len(data)) as reader:
        pieces = list(iter(lambda: reader.read(1 << 20), b""))
    assert b"".join(pieces) == data
    assert max(map(len, pieces)) == SEND_CHUNK < 1 << 20
    assert all(len(p) == SEND_CHUNK for p in pieces[:-1])
    assert reader.hexdigest() == hashlib.sha512(data).hexdigest()
