"""The dashboard's restore on the real lab: `R` on a domain, the dialog's preflight (a new guest
with a name, else in place), the job, and `u` in the Jobs screen undoing it."""

from __future__ import annotations

import argparse
import os
import subprocess

import libvirt
from lab_domains import make_disk
from ui_pilot import screen_text, settle, wait_for

from snaptui.core.engine.jobs import get_job
from snaptui.core.engine.journal import JobRecord
from snaptui.core.engine.states import JobStatus
from snaptui.core.images.library import ImageLibrary
from snaptui.core.images.store import add_image
from snaptui.ui.launch import build_app
from snaptui.ui.screens.jobs_screen import JobsScreen
from snaptui.ui.screens.restore_dialog import RestoreDialog


async def test_restore_as_a_new_guest_then_in_place_then_undone_from_the_dashboard(
        make_domain, libvirt_uri, conn, tmp_path):
    lab = make_domain(fmt="qcow2", size="64M")
    original = tmp_path / "original.qcow2"
    subprocess.run(["cp", str(lab.disk_path()), str(original)], check=True)
    library = ImageLibrary(tmp_path / "lib")
    source = make_disk(tmp_path / "image.qcow2", size="64M", seed="8M", pattern=0xCD)
    props = {"instance_uuid": lab.uuid, "image_type": "snapshot", "snaptui_verified": "tcg"}
    older = add_image(library, source, name="older", disk_format="qcow2", properties=props)
    newer = add_image(library, source, name="newer", disk_format="qcow2", properties=props)
    new_guest = "snaptui-test-27b-as-" + os.urandom(3).hex()
    args = argparse.Namespace(demo=False, uri=libvirt_uri, cloud=None,
                              library=str(tmp_path / "lib"), theme=None)
    app = build_app(args)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await wait_for(pilot, lambda: app.main.images_pane.images, 30, "the images")
            await pilot.press("slash", *lab.name, "enter")
            await settle(pilot)
            assert app.main.domains_pane.selected.name == lab.name

            # --as: a name in the dialog makes it a new guest; emptied, a restore in place
            dialog = await open_dialog(pilot, "R")
            assert {i.id for i in dialog.images} == {older.id, newer.id}  # newest first
            await pilot.press("tab", *new_guest)  # the images list, then the name field
            await wait_for(pilot, lambda: dialog.ready and dialog.request.as_name == new_guest,
                           30, "the --as preflight")
            text = screen_text(app)
            assert f"define new guest {new_guest} on a new disk" in text
            assert f"replace vda of {lab.name}" not in text and "Create guest" in text
            await pilot.press(*["backspace"] * len(new_guest))
            await wait_for(pilot, lambda: dialog.ready and dialog.request.as_name is None, 30,
                           "the in-place preflight")
            text = screen_text(app)
            assert f"replace vda of {lab.name}" in text and "✓" in text
            assert "pre-restore-" in text and "define new guest" not in text
            await pilot.press(*new_guest)
            await wait_for(pilot, lambda: dialog.ready and dialog.request.as_name == new_guest,
                           30, "the --as preflight again")
            await pilot.click("#go")
            screen = await jobs_screen(pilot)
            made = await finished_job(pilot, screen, lambda job: job.domain == new_guest)
            assert made.plan["action"] == "new"
            assert conn.lookupByName(new_guest).isActive() == 0
            assert screen.check_action("undo_restore", ()) is None  # nothing to put back
            await pilot.press("escape")

            # in place, then `u` on the finished restore in the Jobs screen undoes it
            dialog = await open_dialog(pilot, "R")
            await wait_for(pilot, lambda: dialog.ready, 30, "the dialog's preflight")
            await pilot.click("#go")
            screen = await jobs_screen(pilot)
            done = await finished_job(pilot, screen, lambda job: job.domain == lab.name
                                      and job.plan.get("action") == "restore")
            assert done.plan["image_id"] in (newer.id, older.id)
            assert same_content(lab.disk_path(), source)
            await wait_for(pilot, lambda: screen.check_action("undo_restore", ()), 10,
                           "undo offered")
            undo = await open_dialog(pilot, "u")
            assert undo.request.undo_job == done.job_id
            await wait_for(pilot, lambda: undo.ready, 30, "the undo's preflight")
            text = screen_text(app)
            assert f"Undo restore {done.job_id} on {lab.name}" in text
            assert f"as it was before restore {done.job_id}" in text
            await pilot.click("#go")
            await wait_for(pilot, lambda: app.screen is screen, 10, "back in the Jobs screen")
            undone = await finished_job(pilot, screen, lambda job: job.plan.get("undo_of")
                                        == done.job_id)
            assert undone.plan["action"] == "undo"
    finally:
        app.host.close()
        try:
            conn.lookupByName(new_guest).undefine()
        except libvirt.libvirtError:
            pass
    assert same_content(lab.disk_path(), original)


async def open_dialog(pilot, key: str) -> RestoreDialog:
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RestoreDialog), 10, "dialog")
    return pilot.app.screen


async def jobs_screen(pilot) -> JobsScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, JobsScreen), 30, "jobs")
    return pilot.app.screen


async def finished_job(pilot, screen: JobsScreen, which) -> JobRecord:
    """The job selected in the Jobs screen once it is ``which`` one and has finished."""
    def shown() -> str | None:
        job = screen.selected if screen.is_mounted and screen.jobs else None
        return job.job_id if job is not None and which(job) else None
    await wait_for(pilot, shown, 20, "the job selected")
    job_id = shown()
    assert job_id is not None
    await wait_for(pilot, lambda: get_job(job_id).terminal, 60, "the job")
    job = get_job(job_id)
    assert job.status == JobStatus.DONE, job.error
    await wait_for(pilot, lambda: job_id in screen_text(pilot.app), 10, "the job listed")
    return job


def same_content(a, b) -> bool:
    return subprocess.run(["qemu-img", "compare", "-U", str(a), str(b)],
                          capture_output=True).returncode == 0
