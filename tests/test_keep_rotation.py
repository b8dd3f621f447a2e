"""Rotation (``snapshot --backup-type T --rotate N``) on the real lab Glance, with a protected
backup and a backup snaptui did not make present, and the rules on their own."""

from __future__ import annotations

import json
from pathlib import Path

from cli_tools import snaptui

from snaptui.core.errors import CloudError
from snaptui.core.images.library import ImageLibrary
from snaptui.core.keep.rotation import plan_rotation, rotate
from snaptui.core.models import ImageRecord

TYPE = "i26-nightly"


def _backup(store, own_images, path: Path, instance_uuid: str) -> str:
    """A backup of the guest's type made by someone else (as Nova's createBackup would)."""
    path.write_bytes(b"\0" * 65536)
    image = store.create("i26-foreign-backup", "raw", "bare",
                         {"image_type": "backup", "backup_type": TYPE,
                          "instance_uuid": instance_uuid})
    own_images.append(image.id)
    store.upload(image.id, path)
    return image.id


def _snapshot(lab, own_images, *extra: str) -> dict:
    proc = snaptui("snapshot", lab.name, "--name", "i26-rot", "--mode", "cold", "--to",
                   "glance", "--backup-type", TYPE, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["event"] == "done"
    own_images.append(done["image_id"])
    return done


def _rows(done: dict) -> dict[str, dict]:
    [disk] = done["rotation"]["disks"]
    return {row["image_id"]: row for row in disk["images"]}


def test_rotation_keeps_protected_and_foreign_backups(make_domain, store, own_images,
                                                      tmp_path: Path) -> None:
    lab = make_domain(state="shut off", size="16M", seed="1M")
    uuid = lab.dom.UUIDString()
    foreign = _backup(store, own_images, tmp_path / "foreign.raw", uuid)
    guarded = _snapshot(lab, own_images, "--rotate", "1", "--protected")["image_id"]
    try:
        second = _snapshot(lab, own_images, "--rotate", "1")
        image = store.show(second["image_id"])
        assert image.properties["image_type"] == "backup"
        assert image.properties["backup_type"] == TYPE
        rows = _rows(second)
        assert rows[guarded]["action"] == "keep" and rows[guarded]["reason"] == "protected"
        assert rows[foreign]["action"] == "keep"
        assert "not made by snaptui" in rows[foreign]["reason"]

        third = _snapshot(lab, own_images, "--rotate", "1")
        rows = _rows(third)
        assert rows[second["image_id"]]["action"] == "deleted"
        assert rows[third["image_id"]]["reason"] == "the image just made"
        left = {i.id for i in store.iter_images() if i.instance_uuid == uuid}
        assert left == {foreign, guarded, third["image_id"]}

        # Asked to, rotation takes the foreign backup too; never the protected one.
        fourth = _snapshot(lab, own_images, "--rotate", "1", "--rotate-unowned")
        rows = _rows(fourth)
        assert rows[foreign]["action"] == rows[third["image_id"]]["action"] == "deleted"
        left = {i.id for i in store.iter_images() if i.instance_uuid == uuid}
        assert left == {guarded, fourth["image_id"]}
        audit = json.loads(snaptui("audit", "--json").stdout)
        deleted = {a.get("image") for a in audit if a.get("action") == "rotate"}
        assert {second["image_id"], third["image_id"], foreign} <= deleted
    finally:
        store.set_protected(guarded, False)


def test_bad_rotation_options_change_nothing(make_domain) -> None:
    lab = make_domain(state="shut off", size="16M", seed="1M")
    for extra, says in ((["--rotate", "2"], "--rotate needs --backup-type"),
                        (["--backup-type", TYPE, "--rotate", "0"], "--rotate must be from 1"),
                        (["--backup-type", "a\nb"], "--backup-type")):
        proc = snaptui("snapshot", lab.name, "--name", "i26-bad", "--to", "library", *extra)
        assert proc.returncode == 2, proc.stderr
        assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert json.loads(snaptui("jobs", "--json").stdout) == []


def _img(id_: str, created: str, **kw) -> ImageRecord:
    props = {"image_type": "backup", "backup_type": TYPE, "instance_uuid": "u",
             "snaptui_job": "j"}
    return ImageRecord(id_, id_, kw.pop("status", "active"), "raw", "bare", 1, created,
                       props, **kw)


def test_the_image_just_made_counts_first_and_is_never_deleted() -> None:
    images = [_img("old", "2026-01-01T00:00:00Z"), _img("mid", "2026-01-02T00:00:00Z"),
              _img("new", "2025-01-01T00:00:00Z"),  # a clock gone back: still the one made
              _img("busy", "2026-01-03T00:00:00Z", status="saving")]
    rows = {r.image_id: r for r in plan_rotation(images, keep=2, new_ids={"new"},
                                                 not_ours=lambda i: None)}
    assert rows["new"].action == "keep" and rows["mid"].action == "keep"
    assert rows["old"].action == "delete"
    assert rows["busy"].action == "keep" and "not active" in rows["busy"].reason


class _FailingLibrary(ImageLibrary):
    """A library whose delete of one image fails, as a Glance answering 500 would."""

    fail_id = ""

    def delete(self, image_id: str) -> None:
        if image_id == self.fail_id:
            raise CloudError("HTTP 500 deleting image")
        super().delete(image_id)


def test_a_failed_delete_is_reported_and_rotation_goes_on(tmp_path: Path) -> None:
    lib = _FailingLibrary(tmp_path / "lib")
    made = []
    for day in (1, 2, 3):
        rec = lib.create(f"b{day}", "raw", "bare", {"image_type": "backup", "backup_type": TYPE,
                                                    "instance_uuid": "u"})
        (tmp_path / "d").write_bytes(b"x")
        lib.upload(rec.id, tmp_path / "d")
        made.append(lib.show(rec.id))
    made = [ImageRecord(**{**m.__dict__, "created_at": f"2026-01-0{n}T00:00:00Z"})
            for n, m in enumerate(made, 1)]
    lib.fail_id = made[0].id
    result = rotate(lib, made, instance_uuid="u", backup_type=TYPE, disk="vda",
                    root_disk="vda", keep=1, new_ids={made[2].id}, not_ours=lambda i: None)
    actions = {r.image_id: r.action for r in result.rows}
    assert actions == {made[2].id: "keep", made[1].id: "deleted", made[0].id: "failed"}
    assert "HTTP 500" in result.failed[0].reason
    assert {i.id for i in lib.iter_images()} == {made[0].id, made[2].id}
