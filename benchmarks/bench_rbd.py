"""Ceph RBD disks: snaptui's direct snapshot and its stream into the file store, each against
the same sequence by hand, on the real lab (one-node Ceph, memstore, cephx; Glance's ``ceph``
store on pool ``images``).

    eval "$(python3 scripts/lab env)"
    .venv/bin/python benchmarks/bench_rbd.py [--sizes 1G,4G,16G] [--data 256M] [--runs 3]

Per size, one running disk-only domain (tests/lab_rbd.py's, ``snaptui-test-rbd-*``) on
``vms/<uuid>_disk`` holding the
same --data (random bytes from offset 0, written with librbd before the guest starts; the rest
of the disk never written). Each round, alternately:

- **direct, by hand** (Nova's ``direct_snapshot`` with the ``rbd`` CLI and glanceclient):
  ``rbd snap create`` + ``snap protect`` on the disk, ``rbd clone`` into ``images/<id>``,
  ``rbd flatten``, ``rbd snap create`` + ``protect`` of ``@snap``, ``images.create`` with that
  id and the location ``rbd://<fsid>/images/<id>/snap``, wait ``active``, ``snap unprotect`` +
  ``snap rm`` of the disk's snapshot;
- **snaptui direct**: ``snaptui snapshot DOMAIN --mode direct --to glance --json`` (run with
  this interpreter, ``python -m snaptui``).

On the smallest disk also the stream into Glance's default (file) store:

- **by hand**: ``rbd snap create``, ``rbd export vms/IMG@snap -`` piped into glanceclient's
  ``images.upload`` (what ``rbd export … | openstack image create --file /dev/stdin`` does),
  wait ``active``, ``rbd snap rm``;
- **snaptui stream**: ``snaptui snapshot DOMAIN --mode backup --stream --format raw --to glance``
  (QEMU's pull-mode export of the RBD disk read over NBD into the upload).

Writes ``results/rbd.md``; removes every domain, RBD image and Glance image it makes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import libvirt
import rbd
from bench_lab import REPO, Glance, h, machine_note, median, parse_size, spread
from lab_rbd import MIB, CephLab, RbdDomain, create_rbd_domain, purge_image

RESULTS = REPO / "benchmarks" / "results"
CHUNK = 4 * MIB


@dataclass
class Timed:
    """One run: wall seconds and, for snaptui, its steps' seconds."""

    wall_s: float
    steps: dict[str, float] = field(default_factory=dict)
    image_bytes: int | None = None


def rbd_cli(ceph: CephLab) -> list[str]:
    return ["rbd", "-c", ceph.conf, "--id", ceph.user,
            "--keyring", os.environ["SNAPTUI_LAB_CEPH_KEYRING"]]


def run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}…: {proc.stderr.strip()}")


def make_domain(conn: libvirt.virConnect, ceph: CephLab, size: int, data: bytes) -> RbdDomain:
    """A running bench domain on an RBD disk of ``size`` whose first bytes are ``data``."""
    domain = create_rbd_domain(conn, ceph, size=size, seed=0)
    try:
        with ceph.ioctx() as ioctx, rbd.Image(ioctx, domain.image) as image:
            for offset in range(0, len(data), CHUNK):
                image.write(data[offset:offset + CHUNK], offset)
        domain.set_state("running")
    except BaseException:
        domain.remove()
        raise
    return domain


def wait_active(glance: Glance, image_id: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while (status := glance.client.images.get(image_id)["status"]) != "active":
        if status in ("killed", "deleted") or time.monotonic() > deadline:
            raise RuntimeError(f"image {image_id} is {status}")
        time.sleep(0.05)


def add_location(glance: Glance, image_id: str, url: str, store: str) -> None:
    """glanceclient's location call: the older PATCH (show_multiple_locations), else the
    newer locations API (service users)."""
    try:
        glance.client.images.add_location(image_id, url, {"store": store})
    except Exception:  # noqa: BLE001 - the other API then; its error is the one shown
        glance.client.images.add_image_location(image_id, url)


def forget_image(glance: Glance, ceph: CephLab, image_id: str | None) -> None:
    """Delete the Glance image; its RBD image too when Glance left it."""
    if not image_id:
        return
    glance.delete(image_id)
    with ceph.ioctx(ceph.images_pool) as ioctx:
        purge_image(ioctx, image_id)


def bare_direct(domain: RbdDomain, glance: Glance, fsid: str, store: str) -> Timed:
    ceph, cli = domain.ceph, rbd_cli(domain.ceph)
    snap = f"{ceph.pool}/{domain.image}@bench-{uuid.uuid4().hex[:8]}"
    image_id = str(uuid.uuid4())
    clone = f"{ceph.images_pool}/{image_id}"
    t0 = time.monotonic()
    try:
        run([*cli, "snap", "create", snap])
        run([*cli, "snap", "protect", snap])
        run([*cli, "clone", "--image-feature", "layering", snap, clone])
        run([*cli, "flatten", "--no-progress", clone])
        run([*cli, "snap", "create", f"{clone}@snap"])
        run([*cli, "snap", "protect", f"{clone}@snap"])
        glance.client.images.create(id=image_id, name=f"snaptui-bench-{image_id[:6]}",
                                    disk_format="raw", container_format="bare")
        add_location(glance, image_id, f"rbd://{fsid}/{ceph.images_pool}/{image_id}/snap", store)
        wait_active(glance, image_id)
        run([*cli, "snap", "unprotect", snap])
        run([*cli, "snap", "rm", snap])
        wall = time.monotonic() - t0
    finally:
        forget_image(glance, ceph, image_id)
        with ceph.ioctx() as ioctx, rbd.Image(ioctx, domain.image) as image:
            name = snap.partition("@")[2]
            if name in {s["name"] for s in image.list_snaps()}:
                if image.is_protected_snap(name):
                    image.unprotect_snap(name)
                image.remove_snap(name)
    return Timed(wall)


def bare_stream(domain: RbdDomain, glance: Glance) -> Timed:
    ceph, cli = domain.ceph, rbd_cli(domain.ceph)
    snap = f"{ceph.pool}/{domain.image}@bench-{uuid.uuid4().hex[:8]}"
    image_id = None
    t0 = time.monotonic()
    try:
        run([*cli, "snap", "create", snap])
        image_id = glance.client.images.create(name=f"snaptui-bench-{uuid.uuid4().hex[:6]}",
                                               disk_format="raw", container_format="bare")["id"]
        proc = subprocess.Popen([*cli, "export", "--no-progress", snap, "-"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        glance.client.images.upload(image_id, proc.stdout)
        if proc.wait() != 0:
            raise RuntimeError(f"rbd export: {proc.stderr.read().decode() if proc.stderr else ''}")
        wait_active(glance, image_id)
        run([*cli, "snap", "rm", snap])
        wall = time.monotonic() - t0
        size = glance.client.images.get(image_id)["size"]
    finally:
        glance.delete(image_id)
        with ceph.ioctx() as ioctx, rbd.Image(ioctx, domain.image) as image:
            name = snap.partition("@")[2]
            if name in {s["name"] for s in image.list_snaps()}:
                image.remove_snap(name)
    return Timed(wall, image_bytes=size)


def snaptui_run(domain: RbdDomain, glance: Glance, state: Path, *extra: str) -> Timed:
    argv = [sys.executable, "-m", "snaptui", "snapshot", domain.name, "--name",
            f"snaptui-bench-{uuid.uuid4().hex[:6]}", "--to", "glance", "--json", *extra]
    env = {**os.environ, "SNAPTUI_STATE_DIR": str(state),
           "SNAPTUI_SCRATCH_DIR": str(state / "scratch")}
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    last = events[-1] if events else {}
    forget_image(glance, domain.ceph, last.get("image_id"))
    if proc.returncode != 0 or last.get("event") != "done":
        raise RuntimeError(f"snaptui {' '.join(extra)} failed: {last} {proc.stderr.strip()}")
    steps = {e["step"]: e["seconds"] for e in events if e.get("event") == "step_finished"}
    return Timed(wall, steps, (last.get("sizes") or {}).get("uploaded"))


def rbd_store(glance: Glance) -> tuple[str, str, str]:
    """(store id, pool, fsid) of Glance's rbd store."""
    for store in glance.client.images.get_stores_info_detail()["stores"]:
        if store.get("type") == "rbd":
            props = store.get("properties", {})
            return store["id"], props["pool"], props["fsid"]
    raise SystemExit("Glance has no rbd store: is the lab's Ceph up?")


def rng(runs: list[Timed]) -> str:
    text = spread(r.wall_s for r in runs)
    return f" ({text})" if text else ""


def render(args: argparse.Namespace, direct: dict[str, dict[str, list[Timed]]],
           stream: dict[str, list[Timed]], meta: dict[str, str]) -> str:
    def med(runs: list[Timed]) -> float:
        return median(r.wall_s for r in runs) or 0.0

    lines = [
        f"# Ceph RBD: direct snapshot and stream, snaptui vs by hand ({args.data} of data)",
        "",
        f"Run {meta['when']} on the lab (one-node Ceph, memstore OSD in RAM, cephx, pool size "
        f"1; {os.cpu_count()} cores), {args.runs} rounds alternating by hand / snaptui, "
        "medians (min–max).",
        f"Machine at start: {meta['load_start']}.",
        f"Machine at end: {meta['load_end']}.",
        "",
        "## Direct snapshot (Nova's direct_snapshot), by disk size, same data",
        "",
        "| disk | data | by hand | snaptui direct | snaptui / by hand | snaptui's flatten step |",
        "|---|---|---|---|---|---|",
    ]
    for size, runs in direct.items():
        bare, ours = runs["bare"], runs["snaptui"]
        flatten = median(r.steps.get("flatten:vda") for r in ours)
        lines.append(
            f"| {size} | {args.data} | {med(bare):.2f} s{rng(bare)} "
            f"| {med(ours):.2f} s{rng(ours)} "
            f"| {med(ours) / med(bare):.2f}× | {flatten or 0:.2f} s |")
    first = next(iter(direct.values()), {}).get("snaptui", [])
    if first:
        lines += ["", "snaptui direct's steps (median seconds, smallest disk): " + ", ".join(
            f"{step} {median(r.steps.get(step) for r in first) or 0:.2f}"
            for step in first[0].steps) + "."]
    if stream:
        bare, ours = stream["bare"], stream["snaptui"]
        nbytes = median(r.image_bytes for r in bare + ours) or 0
        lines += [
            "",
            f"## Stream of the {args.sizes.split(',')[0]} disk into Glance's file store (raw)",
            "",
            "| what | end to end | rate (image bytes / s) |",
            "|---|---|---|",
            f"| by hand: `rbd export @snap - \\| images.upload` | {med(bare):.2f} s"
            f"{rng(bare)} | {nbytes / med(bare) / MIB:.0f} MiB/s |",
            f"| snaptui --mode backup --stream | {med(ours):.2f} s"
            f"{rng(ours)} | {nbytes / med(ours) / MIB:.0f} MiB/s |",
            f"| snaptui / by hand | {med(ours) / med(bare):.2f}× | |",
            "",
            f"Image size {h(nbytes)} (raw: the whole disk, zeros included).",
        ]
    lines += [
        "",
        "By hand = the `rbd` CLI (one process per command, as an operator types them) and "
        "glanceclient on a keystoneauth session from the lab's clouds.yaml; snaptui = "
        "`python -m snaptui snapshot … --json` as a subprocess (Python start-up, preflight "
        "asking Glance and the cluster, journal). The guest runs throughout; no run pauses it.",
        "",
        "Command: `" + meta["command"] + "`",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1G,4G,16G")
    parser.add_argument("--data", default="256M")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-stream", action="store_true")
    args = parser.parse_args()
    meta = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_start": machine_note(), "command": " ".join(["bench_rbd.py", *sys.argv[1:]])}
    ceph = CephLab.from_env()
    glance = Glance.connect()
    store, _pool, fsid = rbd_store(glance)
    data = os.urandom(parse_size(args.data))
    conn = libvirt.open(os.environ.get("LIBVIRT_DEFAULT_URI", "qemu:///system"))
    direct: dict[str, dict[str, list[Timed]]] = {}
    stream: dict[str, list[Timed]] = {"bare": [], "snaptui": []}
    with tempfile.TemporaryDirectory(prefix="snaptui-bench-", dir="/var/tmp") as tmp:
        state = Path(tmp) / "state"
        (state / "scratch").mkdir(parents=True)
        for directory in (Path(tmp), state, state / "scratch"):
            directory.chmod(0o711)  # QEMU (libvirt-qemu) enters scratch for the NBD socket
        for index, size in enumerate(args.sizes.split(",")):
            domain = make_domain(conn, ceph, parse_size(size), data)
            try:
                runs: dict[str, list[Timed]] = {"bare": [], "snaptui": []}
                for _ in range(args.runs):
                    runs["bare"].append(bare_direct(domain, glance, fsid, store))
                    runs["snaptui"].append(snaptui_run(domain, glance, state, "--mode", "direct"))
                    print(f"{size} direct: by hand {runs['bare'][-1].wall_s:.2f} s, "
                          f"snaptui {runs['snaptui'][-1].wall_s:.2f} s", flush=True)
                direct[size] = runs
                if index == 0 and not args.no_stream:
                    for _ in range(args.runs):
                        stream["bare"].append(bare_stream(domain, glance))
                        stream["snaptui"].append(snaptui_run(
                            domain, glance, state, "--mode", "backup", "--stream",
                            "--format", "raw"))
                        print(f"{size} stream: by hand {stream['bare'][-1].wall_s:.2f} s, "
                              f"snaptui {stream['snaptui'][-1].wall_s:.2f} s", flush=True)
            finally:
                domain.remove()
    conn.close()
    meta["load_end"] = machine_note()
    text = render(args, direct, stream if stream["bare"] else {}, meta)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rbd.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
