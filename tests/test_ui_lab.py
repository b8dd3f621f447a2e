"""The dashboard against the real lab, driven as an operator would: libvirtd + QEMU and Glance.

Each test opens the app the way ``snaptui -c URI --os-cloud NAME`` does (``build_app``), picks its
own domain with the filter, presses ``s``, chooses the mode and types the name in the dialog,
confirms, and follows the job on the jobs screen until its image is in the Images pane and in
Glance. The cloud is given only on the "command line": OS_CLOUD names a cloud whose Keystone
does not answer, so a job that lost the dashboard's cloud would fail.

Glance is shared with other people's work: assertions are about this test's images only, and
every image a test creates is deleted, whatever happens.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import libvirt
import pytest
import yaml
from fault_tools import MID_STEP_BWLIMIT, MID_STEP_RATE
from textual.css.query import NoMatches
from textual.pilot import Pilot
from textual.widgets import Input
from ui_pilot import screen_text, settle, wait_for

from snaptui.core.engine.jobs import get_job
from snaptui.core.engine.plan import Mode, Plan
from snaptui.core.engine.workflows import build_steps
from snaptui.core.errors import NotFound
from snaptui.core.images.glance import GlanceImages
from snaptui.core.paths import scratch_dir
from snaptui.ui.app import SnaptuiApp
from snaptui.ui.launch import build_app
from snaptui.ui.screens.confirm import ConfirmScreen
from snaptui.ui.screens.jobs_screen import JobsScreen
from snaptui.ui.screens.snapshot_dialog import SnapshotDialog

CLOUD = "snaptui-ui-lab"  # the lab's cloud under another name, given only as --os-cloud
WRONG_CLOUD = "snaptui-ui-nowhere"  # what OS_CLOUD says: a Keystone that refuses connections
SIZE = (120, 40)


@pytest.fixture
def dashboard_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_cloud: str) -> str:
    """A clouds.yaml with the lab's cloud as CLOUD and a dead one as OS_CLOUD's default."""
    source = yaml.safe_load(Path(os.environ["OS_CLIENT_CONFIG_FILE"]).read_text())
    lab = source["clouds"][os_cloud]
    dead = {**lab, "auth": {**lab["auth"], "auth_url": "http://127.0.0.1:9/v3/"}}
    path = tmp_path / "clouds.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({"clouds": {CLOUD: lab, WRONG_CLOUD: dead}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.setenv("OS_CLOUD", WRONG_CLOUD)
    return CLOUD


@pytest.fixture
def glance(dashboard_cloud: str):
    """Glance of the lab; deletes every image this test named (by its domain's name)."""
    store = GlanceImages.from_cloud(dashboard_cloud)
    mine: list[str] = []  # name prefixes of images this test may have created
    yield store, mine
    for image in list(store.iter_images()):
        if any(image.name.startswith(prefix) for prefix in mine):
            try:
                store.delete(image.id)
            except NotFound:
                pass


@pytest.fixture
def dashboard(libvirt_uri: str, dashboard_cloud: str):
    """``snaptui -c URI --os-cloud CLOUD`` built by the real factory, closed afterwards."""
    args = argparse.Namespace(demo=False, uri=libvirt_uri, cloud=dashboard_cloud,
                              library=None, theme=None)
    app = build_app(args)
    yield app
    app.host.close()


async def snapshot_through_the_ui(pilot: Pilot, app: SnaptuiApp, domain: str, mode: Mode,
                                  name: str, bwlimit: str = "") -> JobsScreen:
    """Filter to the domain, `s`, choose ``mode``, (cap the bandwidth,) type ``name``, submit
    (and confirm a stop)."""
    await settle(pilot)
    await pilot.press("slash", *domain, "enter")
    await settle(pilot)
    assert app.main.domains_pane.selected is not None
    assert app.main.domains_pane.selected.name == domain
    assert app.main.check_action("snapshot", ()) is True
    await pilot.press("s")
    await wait_for(pilot, lambda: isinstance(app.screen, SnapshotDialog), 15, "the dialog")
    dialog = app.screen
    assert dialog.destination == "glance" and dialog.cloud == CLOUD
    order = list(Mode)  # the radio list: auto, cold, internal, live, backup
    for _ in range(order.index(mode)):
        await pilot.press("down")
    assert dialog.mode == mode
    for _ in range(8):  # tab to the name field
        if isinstance(app.focused, Input):
            break
        await pilot.press("tab")
    name_input = dialog.query_one("#name", Input)
    assert app.focused is name_input
    dialog.query_one("#bwlimit", Input).value = bwlimit
    name_input.value = ""
    await pilot.press(*name, "enter")
    await pilot.pause()
    if mode == Mode.COLD:
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "stop confirm")
        assert "Stop " + domain in screen_text(app)
        await pilot.press("enter")  # "Stop guest and snapshot" has focus
    await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), 60, "the jobs screen")
    screen = app.screen

    def selected() -> bool:
        try:
            job = screen.selected
        except NoMatches:  # pushed, not composed yet
            return False
        return job is not None and job.domain == domain

    await wait_for(pilot, selected, 20, "the new job selected")
    return screen


def state(dom: libvirt.virDomain) -> int:
    return dom.state()[0]


async def follow_to_done(pilot: Pilot, screen: JobsScreen, job_id: str,
                         seen: dict[str, set[str]], each: Callable[[], None] | None = None,
                         ) -> None:
    """Wait until the job is done, noting each step's states as the jobs screen showed them."""

    def note() -> None:
        job = screen.jobs.get(job_id)
        if job is not None and screen.selected_id == job_id:
            for step in job.steps:
                seen.setdefault(step.name, set()).add(step.state)
        if each is not None:
            each()

    def done() -> bool:
        job = screen.jobs.get(job_id)
        if job is not None and job.status in ("failed", "cancelled"):
            raise AssertionError(f"job {job.status}: {job.error}\n" + screen_text(pilot.app))
        return job is not None and job.status == "done"

    await wait_for(pilot, done, 180, "the job done", each=note)
    note()
    await wait_for(pilot, lambda: "✔ done" in screen_text(pilot.app), 5, "the job drawn done")


async def image_listed(pilot: Pilot, app: SnaptuiApp, name: str):
    """Back on the main screen: wait until the Images pane lists the image called ``name``."""
    await pilot.press("escape")
    await wait_for(pilot, lambda: app.screen is app.main, 5, "the main screen")
    await pilot.press("escape")  # drop the domain filter: the detail and panes show all

    def found():
        return next((i for i in app.main.images_pane.images.values() if i.name == name), None)

    await wait_for(pilot, lambda: found() is not None, 30, f"{name} in the Images pane")
    image = found()
    assert image.id in app.main.images_pane.table.rows
    return image


def check_in_glance(store: GlanceImages, image_id: str, name: str, lab) -> None:
    record = store.show(image_id)
    assert record.name == name and record.status == "active"
    assert record.is_snapshot and record.instance_uuid == lab.uuid
    assert record.os_hash_value


async def test_cold_snapshot_from_the_dashboard(make_domain, dashboard, glance) -> None:
    store, mine = glance
    lab = make_domain(state="running", size="256M", seed="96M")
    name = f"{lab.name}-ui-cold"
    mine.append(lab.name)
    app = dashboard
    async with app.run_test(size=SIZE) as pilot:
        screen = await snapshot_through_the_ui(pilot, app, lab.name, Mode.COLD, name)
        job_id = screen.selected_id
        seen: dict[str, set[str]] = {}
        states: list[int] = []
        await follow_to_done(pilot, screen, job_id, seen,
                             each=lambda: states.append(state(lab.dom)))
        # the summary's sizes are drawn once the finished job's summary is read
        await wait_for(pilot, lambda: "Size comparison" in screen_text(app)
                       and "uploaded" in screen_text(app), 10, "the size comparison")
        text = screen_text(app)
        job = get_job(job_id)
        # The steps were shown as they ran, and all end done.
        assert any("running" in states for states in seen.values()), seen
        for step in job.steps:
            assert f"✔ {step.title}" in text
        assert "guest downtime —" not in text
        assert set(states) - {libvirt.VIR_DOMAIN_RUNNING}, "cold stopped the guest a while"
        assert screen.check_action("cancel_job", ()) is None  # nothing left to cancel
        # The job went to the dashboard's cloud, not OS_CLOUD's.
        assert job.plan["cloud"] == CLOUD and job.plan["destination"] == "glance"
        assert job.request["uri"] == app.uri
        image = await image_listed(pilot, app, name)
        assert image.status == "active"
    check_in_glance(store, image.id, name, lab)
    assert state(lab.dom) == libvirt.VIR_DOMAIN_RUNNING
    store.delete(image.id)
    with pytest.raises(NotFound):
        store.show(image.id)
    assert not [p for p in scratch_dir().iterdir() if p.name.startswith(job_id)]


async def test_live_snapshot_from_the_dashboard(make_domain, dashboard, glance) -> None:
    store, mine = glance
    lab = make_domain(state="running", size="256M", seed="96M")
    name = f"{lab.name}-ui-live"
    mine.append(lab.name)
    app = dashboard
    async with app.run_test(size=SIZE) as pilot:
        screen = await snapshot_through_the_ui(pilot, app, lab.name, Mode.LIVE, name)
        job_id = screen.selected_id
        seen: dict[str, set[str]] = {}
        states: list[int] = []
        await follow_to_done(pilot, screen, job_id, seen,
                             each=lambda: states.append(state(lab.dom)))
        job = get_job(job_id)
        assert job.mode == "live"
        assert any("running" in s for s in seen.values()), seen
        text = screen_text(app)
        for step in job.steps:
            assert f"✔ {step.title}" in text
        assert set(states) == {libvirt.VIR_DOMAIN_RUNNING}, "a live snapshot never stops it"
        assert job.plan["cloud"] == CLOUD
        image = await image_listed(pilot, app, name)
    check_in_glance(store, image.id, name, lab)
    store.delete(image.id)
    assert state(lab.dom) == libvirt.VIR_DOMAIN_RUNNING


async def test_cancel_from_the_jobs_screen_rolls_back(make_domain, dashboard, glance) -> None:
    store, mine = glance
    lab = make_domain(state="running", size="1G", seed="768M")
    name = f"{lab.name}-ui-cancel"
    mine.append(lab.name)
    app = dashboard
    async with app.run_test(size=SIZE) as pilot:
        screen = await snapshot_through_the_ui(pilot, app, lab.name, Mode.COLD, name,
                                               bwlimit=MID_STEP_RATE)  # time to cancel
        job_id = screen.selected_id
        assert get_job(job_id).plan["bwlimit"] == MID_STEP_BWLIMIT

        def saved() -> bool:
            job = screen.jobs.get(job_id)
            return job is not None and job.step("save").state == "done"

        await wait_for(pilot, saved, 60, "the guest saved")
        assert state(lab.dom) != libvirt.VIR_DOMAIN_RUNNING
        assert screen.check_action("cancel_job", ()) is True
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "confirmation")
        assert "↩ Save guest state (managedSave)" in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen, 5, "back on the jobs screen")

        def ended() -> bool:
            job = screen.jobs.get(job_id)
            return job is not None and job.terminal

        await wait_for(pilot, ended, 120, "the job ended")
        job = get_job(job_id)
        assert job.status == "cancelled", (job.status, job.error)
        await wait_for(pilot, lambda: "↩ cancelled" in screen_text(app), 5, "the job drawn")
        text = screen_text(app)
        undoable = {s.name for s in build_steps(Plan.from_json(job.plan)) if s.undo is not None}
        for step in job.steps:
            if step.state == "undone":
                assert f"↩ {step.title}" in text  # shown as undone on the jobs screen
            allowed = ("undone", "pending") if step.name in undoable else (
                "done", "pending", "failed")
            assert step.state in allowed, [(s.name, s.state) for s in job.steps]
        assert job.step("save").state == "undone"
        assert screen.check_action("cancel_job", ()) is None
    # The guest is back as it was, and no image of this job is left in Glance.
    assert state(lab.dom) == libvirt.VIR_DOMAIN_RUNNING
    assert not lab.dom.hasManagedSaveImage(0)
    assert [i for i in store.iter_images() if i.name == name] == []
    assert not [p for p in scratch_dir().iterdir() if p.name.startswith(job_id)]
