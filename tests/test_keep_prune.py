"""``snaptui prune`` on the lab: a year of nightly backups in the library (sidecars carry any
time), and real Glance rows with protected and foreign images among them."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_tools import snaptui
from fault_tools import wait_until

from snaptui.core.images.library import ImageLibrary

TYPE = "i26-prune"
POLICY = ("--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6")


def _made(lab, *where: str) -> dict:
    proc = snaptui("snapshot", lab.name, "--name", "i26-prune", "--mode", "cold",
                   "--backup-type", TYPE, "--json", *where)
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["event"] == "done"
    return done


def _copy(lib: Path, source_id: str, when: datetime, **change) -> str:
    """Another image like ``source_id`` (same job, guest and type) made at ``when``."""
    meta = json.loads((lib / f"{source_id}.json").read_text())
    new = str(uuid.uuid4())
    meta.update(id=new, disk_format="raw", size=1,
                created_at=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    props = change.pop("properties", None)
    if props is not None:
        meta["properties"] = {**meta["properties"], **props}
    meta.update(change)
    (lib / f"{new}.raw").write_bytes(b"x")
    (lib / f"{new}.json").write_text(json.dumps(meta))
    return new


def _prune(*argv: str) -> tuple[int, dict | str, str]:
    proc = snaptui("prune", *argv)
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stderr
    except json.JSONDecodeError:
        return proc.returncode, proc.stdout, proc.stderr


def test_a_year_of_nightly_backups_in_the_library(make_domain, tmp_path: Path) -> None:
    lab = make_domain(state="shut off", size="16M", seed="1M")
    lib = tmp_path / "lib"
    first = _made(lab, "--to", "library", "--library", str(lib))["image_id"]
    night = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    nightly = [_copy(lib, first, night - timedelta(days=d)) for d in range(1, 366, 3)]
    guarded = _copy(lib, first, night - timedelta(days=2), protected=True)
    foreign = _copy(lib, first, night - timedelta(days=400),
                    properties={"snaptui_job": ""})
    elsewhere = _copy(lib, first, night - timedelta(days=200),
                      properties={"snaptui_host": "another-host"})
    uploading = _copy(lib, first, night - timedelta(days=100), status="queued")
    lib_args = ("--library", str(lib), "--domain", lab.name)

    code, out, err = _prune(*lib_args, *POLICY)
    assert code == 2 and "--dry-run" in err and len(err.strip().splitlines()) == 1
    code, out, err = _prune(*lib_args, "--dry-run")
    assert code == 2 and "would remove every image" in err

    code, sim, err = _prune(*lib_args, *POLICY, "--dry-run", "--json")
    assert code == 0, err
    assert isinstance(sim, dict)
    rows = {r["image_id"]: r for r in sim["images"]}
    assert len(rows) == len(nightly) + 5
    kept = {}
    for r in rows.values():
        if r["mark"] == "keep":
            kept[r["rule"]] = kept.get(r["rule"], 0) + 1
    assert kept == {"daily": 7, "weekly": 4, "monthly": 6}
    assert rows[first]["rule"] == "daily"  # today's, the newest
    assert rows[guarded]["mark"] == "protected"
    assert "not made by snaptui" in rows[foreign]["reason"]
    assert "another-host" in rows[elsewhere]["reason"]
    assert rows[uploading]["mark"] == "left" and "queued" in rows[uploading]["reason"]
    doomed = {i for i, r in rows.items() if r["mark"] == "remove"}
    assert len(doomed) == len(nightly) + 1 - 17
    assert len(list(ImageLibrary(lib).iter_images())) == len(rows)  # the simulator deleted none

    human = snaptui("prune", *lib_args, *POLICY, "--dry-run")
    assert human.returncode == 0, human.stderr
    assert f"would remove {len(doomed)} of {len(rows)} images" in human.stdout
    assert "keep (keep-weekly)" in human.stdout and "remove" in human.stdout

    code, done, err = _prune(*lib_args, *POLICY, "--yes", "--json")
    assert code == 0, err
    assert isinstance(done, dict)
    assert {r["image_id"] for r in done["images"] if r.get("result") == "deleted"} == doomed
    assert {i.id for i in ImageLibrary(lib).iter_images()} == set(rows) - doomed
    audit = json.loads(snaptui("audit", "--json").stdout)
    assert {a["image"] for a in audit if a["action"] == "prune"} == doomed


def test_prune_in_glance_keeps_protected_and_foreign_images(make_domain, store, own_images,
                                                            tmp_path: Path) -> None:
    lab = make_domain(state="shut off", size="16M", seed="1M")
    done = _made(lab, "--to", "glance")
    own_images.append(done["image_id"])
    made = store.show(done["image_id"])
    data = tmp_path / "d.raw"
    data.write_bytes(b"\0" * 4096)

    def image(name: str, **props: str) -> str:
        started = int(time.time())  # created_at has whole seconds: one image per second
        wait_until(lambda: int(time.time()) > started, 3, "the next second")
        record = store.create(name, "raw", "bare", {**{k: str(v) for k, v in
                                                       made.properties.items()}, **props})
        own_images.append(record.id)
        store.upload(record.id, data)
        return record.id

    foreign = image("i26-foreign", snaptui_job="")
    guarded = image("i26-guarded")
    store.set_protected(guarded, True)
    newest = image("i26-newest")
    try:
        code, sim, err = _prune("--domain", lab.name, "--backup-type", TYPE, "--keep-last", "1",
                                "--dry-run", "--json")
        assert code == 0, err
        assert isinstance(sim, dict)
        marks = {r["image_id"]: (r["mark"], r["rule"]) for r in sim["images"]}
        assert marks == {newest: ("keep", "last"), guarded: ("protected", None),
                         foreign: ("left", None), done["image_id"]: ("remove", None)}
        code, out, err = _prune("--domain", lab.name, "--backup-type", TYPE, "--keep-last", "1",
                                "--yes", "--json")
        assert code == 0, err
        left = {i.id for i in store.iter_images() if i.instance_uuid == made.instance_uuid}
        assert left == {newest, guarded, foreign}
    finally:
        store.set_protected(guarded, False)
