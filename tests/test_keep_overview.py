"""The guest's last good image and schedules: the rules, and the dashboard's domain detail on
the embedded demo lab with a schedule written by the CLI."""

from __future__ import annotations

from pathlib import Path

from cli_tools import snaptui
from ui_pilot import demo_app, settle, wait_for

from snaptui.core.keep.overview import guest_keep, last_good
from snaptui.core.keep.schedules import Schedule
from snaptui.core.models import ImageRecord

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def _img(id_: str, created: str, **props: str) -> ImageRecord:
    return ImageRecord(id_, id_, props.pop("status", "active"), "qcow2", "bare", 1, created,
                       {"image_type": "snapshot", "instance_uuid": "u1", **props})


def test_last_good_image_skips_failed_and_unfinished_ones() -> None:
    images = [_img("old", "2027-01-10T00:00:00Z"), _img("bad", "2027-01-14T00:00:00Z",
                                                       snaptui_verify_failed="timed out"),
              _img("busy", "2027-01-15T07:00:00Z", status="saving"),
              _img("other", "2027-01-15T07:00:00Z", instance_uuid="u2")]
    assert last_good(images, "u1") is images[0]
    keep = guest_keep(images, [Schedule("nightly", "daily", all_domains=True, exclude=["db"]),
                               Schedule("web", "hourly", domains=["hv1:web"])],
                      "web", "u1", NOW)
    assert keep.stale and keep.age_s is not None and keep.age_s > 5 * 86400
    assert [s.name for s in keep.schedules] == ["nightly", "web"]
    assert guest_keep(images, [], "db", "u2", NOW).schedules == ()
    assert not guest_keep(images, [], "x", "u2", NOW).stale


async def test_domain_detail_shows_last_good_image_and_schedule(tmp_path: Path) -> None:
    added = snaptui("schedule", "add", "i26-demo", "--all", "--on", "daily", "--keep-daily",
                    "7", env={"SNAPTUI_SYSTEMD_DIR": str(tmp_path / "units")})
    assert added.returncode == 0, added.stderr
    app = demo_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        main = app.main
        await wait_for(pilot, lambda: main.domains_pane.selected is not None, 10, "a domain")
        main.load_domain_detail(main.domains_pane.selected)
        await wait_for(pilot, lambda: "schedule i26-demo on daily" in main.detail.text, 10,
                       "the schedule in the domain detail")
        text = main.detail.text
        assert "keep-daily 7" in text
        assert "last good image" in text or "no good image of this guest" in text
