"""The dashboard's restore on the real lab: `R` on a domain, the dialog's preflight, the job."""

from __future__ import annotations

import argparse
import subprocess

from lab_domains import make_disk
from ui_pilot import screen_text, settle, wait_for

from snaptui.core.engine.jobs import get_job
from snaptui.core.engine.states import JobStatus
from snaptui.core.images.library import ImageLibrary
from snaptui.core.images.store import add_image
from snaptui.ui.launch import build_app
from snaptui.ui.screens.jobs_screen import JobsScreen
from snaptui.ui.screens.restore_dialog import RestoreDialog


async def test_restore_from_the_dashboard(make_domain, libvirt_uri, tmp_path):
    lab = make_domain(fmt="qcow2", size="64M")
    library = ImageLibrary(tmp_path / "lib")
    source = make_disk(tmp_path / "image.qcow2", size="64M", seed="8M", pattern=0xCD)
    props = {"instance_uuid": lab.uuid, "image_type": "snapshot", "snaptui_verified": "tcg"}
    older = add_image(library, source, name="older", disk_format="qcow2", properties=props)
    newer = add_image(library, source, name="newer", disk_format="qcow2", properties=props)
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
            await pilot.press("R")
            await wait_for(pilot, lambda: isinstance(app.screen, RestoreDialog), 10, "dialog")
            dialog = app.screen
            assert {i.id for i in dialog.images} == {older.id, newer.id}  # newest first
            await wait_for(pilot, lambda: dialog.ready, 30, "the dialog's preflight")
            text = screen_text(app)
            assert f"replace vda of {lab.name}" in text and "✓" in text
            assert "pre-restore-" in text
            await pilot.click("#go")
            await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), 30, "jobs")
            screen = app.screen

            def shown() -> str | None:
                job = screen.selected if screen.is_mounted and screen.jobs else None
                return job.job_id if job is not None and job.domain == lab.name else None
            await wait_for(pilot, shown, 20, "the restore job selected")
            job_id = shown()
            assert job_id is not None
            await wait_for(pilot, lambda: get_job(job_id).terminal, 60, "the restore job")
            job = get_job(job_id)
            assert job.status == JobStatus.DONE, job.error
            assert job.plan["image_id"] == newer.id or job.plan["image_id"] == older.id
            await wait_for(pilot, lambda: job_id in screen_text(app), 10, "the job listed")
    finally:
        app.host.close()
    assert subprocess.run(["qemu-img", "compare", "-U", str(lab.disk_path()), str(source)],
                          capture_output=True).returncode == 0
