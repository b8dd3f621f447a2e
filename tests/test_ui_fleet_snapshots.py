"""Snapshot tests of the dashboard with several hosts (issue 16): the demo lab as host "demo"
and libvirt's ``test:///default`` named "sim" in config.toml; one with a host that is down.

Deterministic like tests/test_ui_snapshots.py: the demo lab at its fixed path, fixed uuids and
dates, no clock; the test driver's one domain is fixed too; the down host is a port where
nothing listens (libvirt's words for it do not change). The cursor starts on the top row
whichever host answers first. Run under ``unshare -m`` with a private tmpfs on the lab path
(HELPERS.md); regenerate with ``--snapshot-update`` on this file only.
"""

from __future__ import annotations

import pytest
from test_ui_fleet import DOWN_URI, SIM_URI, name_sim_host
from test_ui_snapshots import LAB_BASE, SIZES
from ui_pilot import demo_app, settle, wait_for


def make_fleet_app(*uris: str):
    name_sim_host()
    return demo_app(LAB_BASE, uri=list(uris))


async def every_host_listed(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: len(app.main._listed) == len(app.fleet), 15, "every host")
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_two_hosts(snap_compare, size) -> None:
    assert snap_compare(make_fleet_app(SIM_URI), terminal_size=size,
                        run_before=every_host_listed)


def test_two_hosts_and_one_down(snap_compare) -> None:
    assert snap_compare(make_fleet_app(SIM_URI, DOWN_URI), terminal_size=(120, 40),
                        run_before=every_host_listed)
