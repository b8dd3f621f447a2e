"""The domain lock refuses a second holder with its own error: callers that mean "busy" catch
``DomainBusy``, never every ``BadInput`` (which would hide a real bad input as "locked")."""

from __future__ import annotations

import uuid

import pytest

from snaptui.core.engine.locks import DomainLock, busy_message, domain_lock_holder, locked_by
from snaptui.core.errors import BadInput, DomainBusy


def test_second_holder_gets_domain_busy_naming_the_first() -> None:
    domain = str(uuid.uuid4())
    first = DomainLock(domain, "20260101-000000-abcdef").acquire("web1")
    try:
        with pytest.raises(DomainBusy) as caught:
            DomainLock(domain, "20260101-000001-bcdefa").acquire("web1")
        assert isinstance(caught.value, BadInput) and caught.value.exit_code == 2
        assert str(caught.value).startswith("web1 already has a snapshot job running (job "
                                            "20260101-000000-abcdef pid ")
    finally:
        first.release()
    DomainLock(domain, "20260101-000001-bcdefa").acquire("web1").release()


def test_the_busy_message_names_the_holders_kind() -> None:
    domain = str(uuid.uuid4())
    first = DomainLock(domain, "20260101-000000-abcdef", kind="restore").acquire("web1")
    try:
        with pytest.raises(DomainBusy) as caught:
            DomainLock(domain, "20260101-000001-bcdefa").acquire("web1")
        assert str(caught.value).startswith("web1 already has a restore job running (job "
                                            "20260101-000000-abcdef pid ")
        # what a snapshot's preflight and cleanup say while the restore runs
        holder = domain_lock_holder(domain)
        assert busy_message("web1", holder) == str(caught.value)
        assert (locked_by("web1", domain) or "").startswith(
            "web1 is locked by a restore job (job 20260101-000000-abcdef pid ")
    finally:
        first.release()
    assert locked_by("web1", domain) is None
    # a line written by an older snaptui has no kind
    assert busy_message("web1", "job 1 pid 2") == "web1 already has a job running (job 1 pid 2)"
