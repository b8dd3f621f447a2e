"""The dashboard shows the schedules' next prune before it happens: the Images pane marks (✂)
the images it would remove, an image's detail names the schedule, and the Schedules screen's
``k`` opens the simulator table (keep with the rule, or why / remove) — on the demo lab, with
a real demo snapshot job's image (its job in the demo's journal proves it ours) and backups of
it made at chosen times, a protected one and one snaptui did not make among them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from test_ui_demo import start_from_the_dashboard
from ui_pilot import demo_app, screen_text, settle, wait_for

from snaptui.core.keep import schedules
from snaptui.core.keep.schedules import Schedule
from snaptui.core.present import PRUNE_GLYPH
from snaptui.ui.screens.prune_screen import PruneScreen
from snaptui.ui.screens.schedules_screen import SchedulesScreen

TYPE = "i26b-nightly"


def backup_like(lib: Path, source: dict, when: datetime, **props: object) -> str:
    """A backup of the same guest, job and disk as ``source`` (a library sidecar), made at
    ``when``; ``props`` changed (a None value removes the property)."""
    new = str(uuid.uuid4())
    properties = {**source["properties"], "image_type": "backup", "backup_type": TYPE}
    for key, value in props.items():
        if value is None:
            properties.pop(key, None)
        else:
            properties[key] = value
    protected = bool(properties.pop("protected", False))
    meta = {**source, "id": new, "name": f"web-frontend-{TYPE}-{when:%Y%m%d}",
            "disk_format": "raw", "size": 1, "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "properties": properties, "protected": protected}
    (lib / f"{new}.raw").write_bytes(b"x")
    (lib / f"{new}.json").write_text(json.dumps(meta))
    return new


async def test_marks_detail_and_simulator(tmp_path: Path) -> None:
    app = demo_app(tmp_path / "demo", demo_speed=0)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            jobs = await start_from_the_dashboard(pilot, app, "web-frontend")
            await wait_for(pilot, lambda: jobs.selected is not None
                           and jobs.selected.status == "done", 60, "the demo job done")
            made = jobs.selected.result["images"][0]["image_id"]
            await wait_for(pilot, lambda: made in app.main.images_pane.images, 30,
                           "the listing the job's end asked for")
            lib = Path(app.store.location)
            source = json.loads((lib / f"{made}.json").read_text())
            assert source["properties"]["snaptui_job"] == jobs.selected.job_id
            noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
            kept = [backup_like(lib, source, noon - timedelta(days=d)) for d in (1, 2)]
            removed = [backup_like(lib, source, noon - timedelta(days=d)) for d in (3, 4)]
            guarded = backup_like(lib, source, noon - timedelta(days=5), protected=True)
            foreign = backup_like(lib, source, noon - timedelta(days=6), snaptui_job=None)
            schedules.save(Schedule(name=TYPE, on="*-*-* 02:00", domains=["web-frontend"],
                                    keep={"daily": 2}))
            await pilot.press("escape")  # back to the dashboard
            await wait_for(pilot, lambda: app.screen is app.main, 5, "the dashboard")
            await pilot.press("r")
            main = app.main
            await wait_for(pilot, lambda: set(main.images_pane.pruning) == set(removed), 30,
                           "the next prune's marks")
            await settle(pilot)
            assert set(main.images_pane.pruning.values()) == {TYPE}
            text = screen_text(app)
            marked = [ln for ln in text.splitlines() if PRUNE_GLYPH in ln]
            assert len(marked) == 2, text
            assert all(f"{PRUNE_GLYPH} web-frontend-i26b" in ln for ln in marked), marked

            assert main.images_pane.select(removed[0])
            await wait_for(pilot, lambda: main.detail.showing == ("image", removed[0]), 5,
                           "the image's detail")
            detail = main.detail.text
            assert f"{PRUNE_GLYPH} the next prune of schedule {TYPE} removes it" in detail
            assert "keep-daily 2" in detail
            main.images_pane.select(kept[0])
            await wait_for(pilot, lambda: main.detail.showing == ("image", kept[0]), 5, "kept")
            assert f"the next prune of schedule {TYPE} keeps it (keep-daily)" in main.detail.text
            main.images_pane.select(made)  # a plain snapshot: no schedule prunes it
            await wait_for(pilot, lambda: main.detail.showing == ("image", made), 5, "made")
            assert "next prune" not in main.detail.text

            await pilot.press("S")
            await wait_for(pilot, lambda: isinstance(app.screen, SchedulesScreen), 5, "S")
            await wait_for(pilot, lambda: app.screen.loaded, 30, "the schedules")
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, PruneScreen), 5, "simulator")
            sim = app.screen
            assert isinstance(sim, PruneScreen)
            await wait_for(pilot, lambda: sim.loaded, 30, "the simulation")
            assert sim.plan is not None
            marks = {r.image.id: r.decision.text() for r in sim.plan.rows}
            assert marks == {kept[0]: "keep (keep-daily)", kept[1]: "keep (keep-daily)",
                             removed[0]: "remove", removed[1]: "remove",
                             guarded: "keep (protected)",
                             foreign: "keep (not made by snaptui (no snaptui_job property))"}
            text = screen_text(app)
            assert "would remove 2 of 6 images" in text
            assert text.count(f"{PRUNE_GLYPH} remove") == 2 and "keep (protected)" in text
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, SchedulesScreen), 5, "back")
    finally:
        app.host.close()
