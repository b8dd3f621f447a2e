"""A login forwarded to a host whose SSH key is not checked (no_verify=1) is said, once."""

from __future__ import annotations

import logging

import pytest

from snaptui.core import remote
from snaptui.core.hosts import HostSpec


def test_login_to_an_unverified_host_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    unverified = HostSpec(name="hv-nv", uri="qemu+ssh://root@hv-nv/system?no_verify=1")
    verified = HostSpec(name="hv-ok", uri="qemu+ssh://root@hv-ok/system")
    with caplog.at_level(logging.WARNING, logger="snaptui.core.remote"):
        remote.warn_if_unverified(verified)
        assert caplog.records == []
        remote.warn_if_unverified(unverified)
        remote.warn_if_unverified(unverified)
    [record] = caplog.records
    assert record.getMessage().startswith("hv-nv: its URI has no_verify=1")
    assert "Keystone token" in record.getMessage()
