"""A schedule carries verification: ``--verify`` goes to each snapshot, ``--verify-stale AGE
[--verify-budget T]`` re-verifies the guests' stale images after the prune (``verify
--stale``), in the run's summary, its JSON and the audit log. A disk-only guest's image has no
OS: its boot check fails at once (a 1 s timeout), which is a marked failure of the run."""

from __future__ import annotations

import json
from pathlib import Path

from cli_tools import snaptui

from snaptui.core.images.library import ImageLibrary
from snaptui.core.keep.schedule_run import snapshot_argv
from snaptui.core.keep.schedules import Schedule

UNITS = "SNAPTUI_SYSTEMD_DIR"


def test_bad_verify_options_write_nothing(tmp_path: Path) -> None:
    env = {UNITS: str(tmp_path / "units")}
    for extra, says in ((["--verify-budget", "1h"], "--verify-budget goes with --verify-stale"),
                        (["--verify-stale", "soon"], "--verify-stale"),
                        (["--verify-stale", "7d", "--verify-budget", "5s"],
                         "shorter than one boot check"),
                        (["--verify-stale", "7d", "--verify-timeout", "0"], "--verify-timeout")):
        proc = snaptui("schedule", "add", "i26b-bad", "--domain", "d1", "--on", "daily", *extra,
                       env=env)
        assert proc.returncode == 2 and says in proc.stderr, (extra, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "units").exists()


def test_verify_goes_to_each_snapshot() -> None:
    argv = snapshot_argv(Schedule(name="n", on="daily", domains=["d1"], verify=True,
                                  verify_timeout=30), "d1", "20260101-0200")
    assert argv[argv.index("--verify-timeout") - 1] == "--verify"
    assert argv[argv.index("--verify-timeout") + 1] == "30.0"


def test_a_run_re_verifies_stale_images_and_reports_it(make_domain, tmp_path: Path) -> None:
    lab = make_domain(state="shut off", size="16M", seed="1M")
    lib = tmp_path / "lib"
    add = snaptui("schedule", "add", "i26b-verify", "--domain", lab.name, "--on", "daily",
                  "--to", "library", "--library", str(lib), "--keep-last", "2",
                  "--verify-stale", "1d", "--verify-budget", "1m", "--verify-timeout", "1",
                  env={UNITS: str(tmp_path / "units")})
    assert add.returncode == 0, add.stderr
    [row] = json.loads(snaptui("schedule", "list", "--json").stdout)
    assert row["verify"] == "stale after 1d (budget 1m)"
    assert "verify stale after 1d (budget 1m)" in snaptui("schedule", "list").stdout

    proc = snaptui("schedule", "run", "i26b-verify", "--json")
    assert proc.returncode == 1, proc.stderr  # the stale image's boot check failed
    run = json.loads(proc.stdout)
    [made] = [g["image_id"] for g in run["guests"]]
    assert run["guests"][0]["ok"] and run["prunes"][0]["removed"] == 0
    [here] = run["verified"]
    assert here["host"] == "local" and here["error"] is None
    assert [(r["image_id"], r["outcome"]) for r in here["images"]] == [(made, "failed")]
    assert run["verify_failed"] == 1 and run["result"] == "1 stale image(s) failed verify"
    assert ("schedule i26b-verify: verify --stale 1d: 0 verified, 1 failed, 0 skipped of 1 "
            "stale images") in proc.stderr  # --json: the summary lines go to stderr
    props = ImageLibrary(lib).show(made).properties
    assert props["snaptui_verify_failed"] and props["snaptui_verify_failed_at"]

    audit = json.loads(snaptui("audit", "--json").stdout)
    checks = [a for a in audit if a["action"] == "schedule-verify"]
    assert [(a["target"], a["result"]) for a in checks] == [(made, "failed")]
    [listed] = json.loads(snaptui("schedule", "list", "--json").stdout)
    assert listed["last_result"] == "1 stale image(s) failed verify"
