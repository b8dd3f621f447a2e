"""A login forwarded to a host whose SSH key is not checked (no_verify=1) is said, once."""

from __future__ import annotations

import logging

import pytest

from snaptui.core.fleet import ssh as remote
from snaptui.core.fleet.hosts import HostSpec


def test_login_to_an_unverified_host_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    unverified = HostSpec(name="hv-nv", uri="qemu+ssh://root@hv-nv/system?no_verify=1")
    verified = HostSpec(name="hv-ok", uri="qemu+ssh://root@hv-ok/system")
    with caplog.at_level(logging.WARNING, logger="snaptui.core.fleet.ssh"):
        remote.warn_if_unverified(verified)
        assert caplog.records == []
        remote.warn_if_unverified(unverified)
        remote.warn_if_unverified(unverified)
    [record] = caplog.records
    assert record.getMessage().startswith("hv-nv: its URI has no_verify=1")
    assert "Keystone token" in record.getMessage()


async def test_the_dashboard_shows_core_warnings_as_notifications(tmp_path) -> None:
    """In the dashboard a warning is a notification, never a line written over the screen."""
    from ui_pilot import Notes, demo_app

    from snaptui.ui.launch import NotifyHandler

    app = demo_app(tmp_path)
    notes = Notes()
    async with app.run_test(message_hook=notes) as pilot:
        logging.getLogger("snaptui.core.fleet.ssh").addHandler(handler := NotifyHandler(app))
        try:
            remote.warn_if_unverified(HostSpec(name="hv-ui", uri="qemu+ssh://hv-ui/?no_verify=1"))
            await pilot.pause()
        finally:
            logging.getLogger("snaptui.core.fleet.ssh").removeHandler(handler)
        texts = [n.message for n in notes.posted]
        assert any(t.startswith("hv-ui: its URI has no_verify=1") for t in texts), texts
    app.fleet.close()
