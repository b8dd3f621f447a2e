"""``snaptui schedule``: the systemd units it writes (checked by ``systemd-analyze verify``,
which works without a running systemd), the crontab line where systemd does not run, and
``schedule run`` end to end on a disk-only guest."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cli_tools import snaptui

from snaptui.core.images.library import ImageLibrary
from snaptui.core.keep.systemd_units import systemd_running
from snaptui.core.paths import config_dir

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def test_units_are_written_and_verified(tmp_path: Path) -> None:
    units = tmp_path / "units"
    proc = snaptui("schedule", "add", "i26-nightly", "--all", "--exclude", "db1", "--on",
                   "*-*-* 02:00", "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly",
                   "6", "--priority", "idle", "--json", env={"SNAPTUI_SYSTEMD_DIR": str(units)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    timer = units / "snaptui-schedule-i26-nightly.timer"
    service = units / "snaptui-schedule-i26-nightly.service"
    assert sorted(report["units"]) == sorted([str(service), str(timer)])
    text = timer.read_text()
    assert "OnCalendar=*-*-* 02:00\n" in text and "Persistent=true\n" in text
    assert "RandomizedDelaySec=15min\n" in text
    assert '"schedule" "run" "i26-nightly"' in service.read_text()
    verify = subprocess.run(["systemd-analyze", "verify", str(timer), str(service)],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stderr
    saved = config_dir() / "schedules" / "i26-nightly.toml"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    assert report["next"]

    again = snaptui("schedule", "add", "i26-nightly", "--all", "--on", "daily",
                    env={"SNAPTUI_SYSTEMD_DIR": str(units)})
    assert again.returncode == 2 and "--replace" in again.stderr

    gone = snaptui("schedule", "remove", "i26-nightly",
                   env={"SNAPTUI_SYSTEMD_DIR": str(units)})
    assert gone.returncode == 0, gone.stderr
    assert not timer.exists() and not service.exists() and not saved.exists()


def test_a_bad_calendar_writes_nothing(tmp_path: Path) -> None:
    units = tmp_path / "units"
    for extra, says in ((["--on", "every night"], "--on 'every night'"),
                        (["--on", "daily", "--randomized-delay", "soon"], "--randomized-delay"),
                        (["--on", "daily", "--keep-daily", "0"], "would remove every image")):
        proc = snaptui("schedule", "add", "i26-bad", "--domain", "d1", *extra,
                       env={"SNAPTUI_SYSTEMD_DIR": str(units)})
        assert proc.returncode == 2 and says in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not units.exists()
    assert not (config_dir() / "schedules" / "i26-bad.toml").exists()


@pytest.mark.skipif(systemd_running(), reason="this host runs systemd")
def test_without_systemd_the_crontab_line_is_printed() -> None:
    proc = snaptui("schedule", "add", "i26-cron", "--domain", "d1", "--on", "Mon..Fri 22:30",
                   unset=("SNAPTUI_SYSTEMD_DIR",))
    assert proc.returncode == 0, proc.stderr
    assert "does not run systemd" in proc.stdout
    cron = [ln for ln in proc.stdout.splitlines() if ln.startswith("30 22 ")]
    assert cron and cron[0].startswith("30 22 * * 1-5 ") and "schedule run i26-cron" in cron[0]


def test_schedule_run_end_to_end(make_domain, tmp_path: Path) -> None:
    lab = make_domain(state="shut off", size="16M", seed="1M")
    lib = tmp_path / "lib"
    add = snaptui("schedule", "add", "i26-run", "--domain", lab.name, "--on", "daily",
                  "--to", "library", "--library", str(lib), "--keep-last", "1",
                  env={"SNAPTUI_SYSTEMD_DIR": str(tmp_path / "units")})
    assert add.returncode == 0, add.stderr

    first = snaptui("schedule", "run", "i26-run")
    assert first.returncode == 0, first.stderr
    assert f"schedule i26-run: {lab.name}: ok, image " in first.stdout
    [made] = [i.id for i in ImageLibrary(lib).iter_images()]
    assert ImageLibrary(lib).show(made).properties["backup_type"] == "i26-run"

    second = snaptui("schedule", "run", "i26-run", "--json")
    assert second.returncode == 0, second.stderr
    run = json.loads(second.stdout)
    assert run["ok"] and run["pruned"] == 1 and run["guests"][0]["domain"] == lab.name
    assert {i.id for i in ImageLibrary(lib).iter_images()} == {run["guests"][0]["image_id"]}

    listed = json.loads(snaptui("schedule", "list", "--json").stdout)
    assert listed[0]["name"] == "i26-run" and listed[0]["last_result"] == "ok"
    assert listed[0]["next"]
    audit = json.loads(snaptui("audit", "--json").stdout)
    runs = [a for a in audit if a["action"] == "schedule-run"]
    assert len(runs) == 2 and {a["result"] for a in runs} == {"ok"}
    assert [a["image"] for a in audit if a["action"] == "prune"] == [made]

    assert snaptui("schedule", "pause", "i26-run").returncode == 0
    paused = snaptui("schedule", "run", "i26-run")
    assert paused.returncode == 0 and "paused; nothing run" in paused.stdout
    assert len(list(ImageLibrary(lib).iter_images())) == 1
