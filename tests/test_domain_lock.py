"""The domain lock refuses a second holder with its own error: callers that mean "busy" catch
``DomainBusy``, never every ``BadInput`` (which would hide a real bad input as "locked")."""

from __future__ import annotations

import uuid

import pytest

from snaptui.core.engine.locks import DomainLock
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
