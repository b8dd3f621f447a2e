"""``snaptui verify --stale AGE [--budget T]``: which images, in which order, within the budget,
each failure marked. Disk-only images (no OS) fail their boot check at once, which is what
the order and the budget need; passing and marking is ``verify_stored``'s, proved in
test_verify_quiesce.py."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_tools import snaptui

from snaptui.core.images.library import ImageLibrary

FAIL_FAST = ("--verify-timeout", "1", "--verify-console", "never printed")


def _copy(lib: Path, source_id: str, created: datetime, verified: datetime | None) -> str:
    meta = json.loads((lib / f"{source_id}.json").read_text())
    new = str(uuid.uuid4())
    meta.update(id=new, created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"))
    meta["properties"] = dict(meta["properties"])
    if verified is not None:
        meta["properties"].update(snaptui_verified="agent",
                                  snaptui_verified_at=verified.strftime("%Y-%m-%dT%H:%M:%SZ"))
    shutil.copyfile(lib / f"{source_id}.qcow2", lib / f"{new}.qcow2")
    (lib / f"{new}.json").write_text(json.dumps(meta))
    return new


def test_stale_images_oldest_proof_first_within_the_budget(make_domain, tmp_path: Path) -> None:
    lab = make_domain(state="shut off", size="16M", seed="1M")
    lib = tmp_path / "lib"
    proc = snaptui("snapshot", lab.name, "--name", "i26-stale", "--mode", "cold", "--to",
                   "library", "--library", str(lib), "--json")
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout.splitlines()[-1])["image_id"]
    now = datetime.now(UTC)
    never_old = _copy(lib, made, now - timedelta(days=60), None)
    proved_long_ago = _copy(lib, made, now - timedelta(days=90), now - timedelta(days=30))
    fresh = _copy(lib, made, now - timedelta(days=2), now - timedelta(days=1))
    ImageLibrary(lib).delete(made)  # three images, made at the times above
    (lib / "i26-unrelated.txt").write_text("not an image")

    run = snaptui("verify", "--stale", "7d", "--library", str(lib), "--domain", lab.name,
                  "--json", *FAIL_FAST)
    assert run.returncode == 1, run.stderr  # disk-only images never boot
    results = json.loads(run.stdout)
    assert [r["image_id"] for r in results] == [never_old, proved_long_ago]
    assert {r["outcome"] for r in results} == {"failed"}
    library = ImageLibrary(lib)
    for image_id in (never_old, proved_long_ago):
        props = library.show(image_id).properties
        assert props["snaptui_verify_failed_at"] and "never printed" not in props.get(
            "snaptui_verified", "")
    assert "snaptui_verify_failed" not in library.show(fresh).properties

    budget = snaptui("verify", "--stale", "7d", "--library", str(lib), "--budget", "1s",
                     *FAIL_FAST)
    assert budget.returncode == 1
    lines = budget.stdout.splitlines()
    assert lines[0].startswith(f"failed {never_old}")
    assert lines[1] == f"skipped {proved_long_ago} ('i26-stale'): the --budget is spent"

    bad = snaptui("verify", "--stale", "7d", "--budget", "1s", "--library", str(lib))
    assert bad.returncode == 2 and "shorter than one boot check" in bad.stderr
    both = snaptui("verify", made, "--stale", "7d", "--library", str(lib))
    assert both.returncode == 2 and "one of them" in both.stderr
