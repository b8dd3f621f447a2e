"""Schedules over a fleet (the lab's sshd stands in for host ``lab2``, tests/fleet_tools.py):
a schedule over two hosts snapshots and prunes each host's guests on that host, and
``schedule VERB lab2:NAME`` runs on lab2, the Keystone login forwarded on the SSH channel's
stdin (lab2 has no cloud of its own)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fleet_tools import HOST, Fleet, snaptui

from snaptui.core.images.library import ImageLibrary

pytestmark = pytest.mark.lab


def _ids(lib: Path) -> set[str]:
    return {i.id for i in ImageLibrary(lib).iter_images()} if lib.exists() else set()


def test_a_schedule_over_two_hosts_prunes_each_on_its_host(fleet: Fleet, make_domain,
                                                          tmp_path: Path) -> None:
    here, there = (make_domain(state="shut off", size="16M", seed="1M") for _ in range(2))
    lib = tmp_path / "lib"  # this host's library; lab2's is its own default one
    lab2_lib = fleet.remote_home / "data" / "library"
    add = snaptui("schedule", "add", "i26b-two", "--domain", here.name, "--domain",
                  f"{HOST}:{there.name}", "--on", "daily", "--to", "library", "--library",
                  str(lib), "--keep-last", "1", "--json")
    assert add.returncode == 0, add.stderr

    first = snaptui("schedule", "run", "i26b-two", "--json")
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)
    made = {g["domain"]: g["image_id"] for g in run["guests"]}
    assert set(made) == {here.name, f"{HOST}:{there.name}"}
    assert _ids(lib) == {made[here.name]} and _ids(lab2_lib) == {made[f"{HOST}:{there.name}"]}
    assert [(p["host"], p["images"], p["removed"]) for p in run["prunes"]] == [
        ("local", 1, 0), (HOST, 1, 0)]

    second = snaptui("schedule", "run", "i26b-two", "--json")
    assert second.returncode == 0, second.stderr
    run = json.loads(second.stdout)
    newest = {g["domain"]: g["image_id"] for g in run["guests"]}
    assert [(p["host"], p["images"], p["removed"], p["error"]) for p in run["prunes"]] == [
        ("local", 2, 1, None), (HOST, 2, 1, None)]
    assert _ids(lib) == {newest[here.name]}
    assert _ids(lab2_lib) == {newest[f"{HOST}:{there.name}"]}
    assert f"schedule i26b-two: prune on {HOST} (keep-last 1): removed 1 of 2 images" \
        in second.stderr
    snaptui("schedule", "remove", "i26b-two")


def test_schedule_commands_run_on_the_host_named(fleet: Fleet, make_domain, store,
                                                 own_images) -> None:
    dom = make_domain(state="shut off", size="16M", seed="1M")
    target = f"{HOST}:i26b-there"
    add = snaptui("schedule", "add", target, "--domain", dom.name, "--on", "daily",
                  "--keep-last", "1")
    assert add.returncode == 0, add.stderr
    assert "does not run systemd" in add.stdout  # lab2's answer: no timer there
    saved = fleet.remote_home / "config" / "schedules" / "i26b-there.toml"
    assert saved.exists()
    assert not (Path(os.environ["SNAPTUI_CONFIG_DIR"]) / "schedules" / "i26b-there.toml").exists()
    listed = json.loads(snaptui("schedule", "list", f"{HOST}:", "--json").stdout)
    assert [r["name"] for r in listed] == ["i26b-there"]

    runs = []
    for _ in range(2):  # into Glance, on the login this side sends (lab2 has no cloud)
        proc = snaptui("schedule", "run", target, "--json")
        report = json.loads(proc.stdout) if proc.stdout.strip() else {}
        own_images.extend(g["image_id"] for g in report.get("guests", []) if g["image_id"])
        assert proc.returncode == 0, proc.stderr
        runs.append(report)
    assert [(p["host"], p["images"], p["removed"]) for p in runs[1]["prunes"]] == [
        ("local", 2, 1)]  # "local" to lab2: the prune ran there
    kept = runs[1]["guests"][0]["image_id"]
    gone = runs[0]["guests"][0]["image_id"]
    assert store.show(kept).properties["backup_type"] == "i26b-there"
    assert gone not in {i.id for i in store.iter_images()}

    assert snaptui("schedule", "pause", target).returncode == 0
    assert json.loads(snaptui("schedule", "list", target, "--json").stdout)[0]["paused"]
    assert snaptui("schedule", "remove", target).returncode == 0
    assert not saved.exists()
    for path in [*fleet.remote_state.rglob("*"), *fleet.remote_home.rglob("*")]:
        if path.is_file():
            assert b"auth_token" not in path.read_bytes(), path
