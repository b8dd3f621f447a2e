"""Inventory of guests on Ceph RBD disks, on the real lab: ``domains`` and ``info`` show the
pool/image, provisioned and used sizes, RBD snapshots with protection and clone children, and
QEMU's view of the disk, and never the cephx key."""

from __future__ import annotations

import json
import os

import rbd
from cli_tools import snaptui
from lab_rbd import MIB, purge_image


def _client_key(keyring: str) -> str:
    with open(keyring, encoding="utf-8") as handle:
        return next(line.split("=", 1)[1].strip() for line in handle
                    if line.strip().startswith("key"))


def test_info_and_domains_show_an_rbd_disk(make_rbd_domain, ceph_lab) -> None:
    guest = make_rbd_domain(state="running", seed=8 * MIB)
    clone = f"{guest.uuid}-child"
    with ceph_lab.ioctx() as ioctx:
        with rbd.Image(ioctx, guest.image) as image:
            image.create_snap("base")
            image.protect_snap("base")
        with ceph_lab.ioctx(ceph_lab.images_pool) as child_pool:
            rbd.RBD().clone(ioctx, guest.image, "base", child_pool, clone,
                            features=rbd.RBD_FEATURE_LAYERING)
    try:
        listed = snaptui("domains", "--json")
        assert listed.returncode == 0, listed.stderr
        row = next(d for d in json.loads(listed.stdout) if d["name"] == guest.name)
        assert row["disks"][0]["source_type"] == "network"
        assert row["disks"][0]["network"]["name"] == f"vms/{guest.image}"
        table = snaptui("domains")
        assert "vda:rbd" in table.stdout

        shown = snaptui("info", "--json", guest.name)
        assert shown.returncode == 0, shown.stderr
        disk = json.loads(shown.stdout)[0]
        assert disk["target"] == "vda" and disk["url"].startswith(f"rbd:vms/{guest.image}:")
        image = disk["rbd"]
        assert (image["pool"], image["name"]) == ("vms", guest.image)
        assert (image["size"], image["used"]) == (64 * MIB, 8 * MIB)
        assert image["snapshots"] == [{"name": "base", "size": 64 * MIB, "protected": True,
                                       "children": [f"images/{clone}"]}]
        assert disk["qemu_img"] == {"format": "raw", "virtual-size": 64 * MIB,
                                    "cluster-size": 4 * MIB}

        text = snaptui("info", f"{guest.name}:vda")
        assert text.returncode == 0, text.stderr
        for words in (f"vms/{guest.image}", "provisioned", "64.0 MiB", "used", "8.0 MiB",
                      "RBD snapshots", "base", "yes", f"images/{clone}", "id=snaptui-lab"):
            assert words in text.stdout, (words, text.stdout)
        key = _client_key(os.environ["SNAPTUI_LAB_CEPH_KEYRING"])
        for out in (listed, table, shown, text):
            assert key not in out.stdout + out.stderr
    finally:
        with ceph_lab.ioctx(ceph_lab.images_pool) as child_pool:
            purge_image(child_pool, clone)


def test_info_of_a_clone_names_its_parent(make_rbd_domain, ceph_lab, conn) -> None:
    """A Nova-style disk: a copy-on-write clone of a Glance image's ``snap``."""
    guest = make_rbd_domain(state="shut off", seed=0)
    base = f"{guest.uuid}-base"
    with ceph_lab.ioctx(ceph_lab.images_pool) as images, ceph_lab.ioctx() as vms:
        rbd.RBD().create(images, base, 64 * MIB, old_format=False,
                         features=rbd.RBD_FEATURE_LAYERING)
        with rbd.Image(images, base) as image:
            image.write(b"\xcd" * MIB, 0)
            image.create_snap("snap")
            image.protect_snap("snap")
        rbd.RBD().remove(vms, guest.image)
        rbd.RBD().clone(images, base, "snap", vms, guest.image,
                        features=rbd.RBD_FEATURE_LAYERING)
    try:
        shown = snaptui("info", "--json", guest.name)
        assert shown.returncode == 0, shown.stderr
        image = json.loads(shown.stdout)[0]["rbd"]
        assert image["parent"] == f"images/{base}@snap" and image["used"] == 0
        text = snaptui("info", guest.name)
        assert f"images/{base}@snap" in text.stdout
    finally:
        with ceph_lab.ioctx() as vms:
            purge_image(vms, guest.image)
        with ceph_lab.ioctx(ceph_lab.images_pool) as images:
            purge_image(images, base)

