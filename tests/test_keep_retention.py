"""Retention rules against proxmox-backup's own prune tables (pbs-datastore tests/prune.rs),
read in UTC as those tests' times are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from snaptui.core.errors import BadInput
from snaptui.core.keep.retention import Candidate, KeepRules, Mark, decide


def _c(stamp: str, **kw) -> Candidate:
    return Candidate(stamp, datetime.fromisoformat(stamp.replace("Z", "+00:00")), **kw)


def _kept(cands, rules) -> list[str]:
    return sorted(d.id for d in decide(cands, rules, UTC) if d.keep)


def _removed(cands, rules) -> list[str]:
    return sorted(d.id for d in decide(cands, rules, UTC) if not d.keep)


HOURLY = [_c(s) for s in ("2019-11-15T09:39:15Z", "2019-11-15T10:49:15Z", "2019-11-15T10:59:15Z",
                          "2019-11-15T11:39:15Z", "2019-11-15T11:49:15Z", "2019-11-15T11:59:15Z")]
SIMPLE = [_c(s) for s in ("2019-12-02T11:59:15Z", "2019-12-03T11:59:15Z", "2019-12-04T11:59:15Z",
                          "2019-12-04T12:59:15Z")]
SIMPLE2 = [_c(s) for s in ("2018-11-15T11:59:15Z", "2019-11-15T11:59:15Z", "2019-11-21T11:59:15Z",
                           "2019-11-22T11:59:15Z", "2019-11-29T11:59:15Z", "2019-12-01T11:59:15Z",
                           "2019-12-02T11:59:15Z", "2019-12-03T11:59:15Z", "2019-12-04T11:59:15Z")]


def test_hourly() -> None:
    assert _removed(HOURLY, KeepRules(hourly=3)) == [
        "2019-11-15T10:49:15Z", "2019-11-15T11:39:15Z", "2019-11-15T11:49:15Z"]
    assert _kept(HOURLY, KeepRules(hourly=2)) == ["2019-11-15T10:59:15Z", "2019-11-15T11:59:15Z"]


@pytest.mark.parametrize(("rules", "removed"), [
    (KeepRules(last=4), []),
    (KeepRules(last=3), ["2019-12-02T11:59:15Z"]),
    (KeepRules(last=2), ["2019-12-02T11:59:15Z", "2019-12-03T11:59:15Z"]),
    (KeepRules(last=1), ["2019-12-02T11:59:15Z", "2019-12-03T11:59:15Z", "2019-12-04T11:59:15Z"]),
    (KeepRules(last=2, daily=2), []),
    (KeepRules(daily=3), ["2019-12-04T11:59:15Z"]),
    (KeepRules(daily=2), ["2019-12-02T11:59:15Z", "2019-12-04T11:59:15Z"]),
    (KeepRules(weekly=5), ["2019-12-02T11:59:15Z", "2019-12-03T11:59:15Z",
                           "2019-12-04T11:59:15Z"]),
    (KeepRules(daily=1, weekly=5), ["2019-12-02T11:59:15Z", "2019-12-03T11:59:15Z",
                                    "2019-12-04T11:59:15Z"]),
    (KeepRules(weekly=5, monthly=6, yearly=7), ["2019-12-02T11:59:15Z", "2019-12-03T11:59:15Z",
                                                "2019-12-04T11:59:15Z"]),
])
def test_simple(rules: KeepRules, removed: list[str]) -> None:
    assert _removed(SIMPLE, rules) == removed


@pytest.mark.parametrize(("rules", "kept"), [
    (KeepRules(daily=1), ["2019-12-04T11:59:15Z"]),
    (KeepRules(last=1, daily=1), ["2019-12-03T11:59:15Z", "2019-12-04T11:59:15Z"]),
    (KeepRules(daily=1, weekly=1), ["2019-12-01T11:59:15Z", "2019-12-04T11:59:15Z"]),
    (KeepRules(daily=1, weekly=1, monthly=1), ["2019-11-22T11:59:15Z", "2019-12-01T11:59:15Z",
                                               "2019-12-04T11:59:15Z"]),
    (KeepRules(monthly=1, yearly=1), ["2018-11-15T11:59:15Z", "2019-12-04T11:59:15Z"]),
])
def test_simple2(rules: KeepRules, kept: list[str]) -> None:
    assert _kept(SIMPLE2, rules) == kept


def test_protected_kept_and_not_counted() -> None:
    cands = [_c("2019-11-15T09:39:15Z", protected=True), _c("2019-11-15T10:39:15Z"),
             _c("2019-11-15T10:49:15Z"), _c("2019-11-15T10:59:15Z", protected=True)]
    for rules in (KeepRules(last=1), KeepRules(hourly=1)):
        assert _removed(cands, rules) == ["2019-11-15T10:39:15Z"]
    marks = {d.id: d.mark for d in decide(cands, KeepRules(last=1), UTC)}
    assert marks["2019-11-15T09:39:15Z"] == Mark.PROTECTED


def test_busy_and_left_images_are_never_candidates() -> None:
    cands = [_c("2020-01-03T00:00:00Z", busy=True), _c("2020-01-02T00:00:00Z"),
             _c("2020-01-01T00:00:00Z", left="not made by snaptui"), _c("2019-12-31T00:00:00Z")]
    decisions = {d.id: d for d in decide(cands, KeepRules(last=1), UTC)}
    assert decisions["2020-01-03T00:00:00Z"].mark == Mark.BUSY
    assert decisions["2020-01-02T00:00:00Z"].rule == "last"
    assert decisions["2020-01-01T00:00:00Z"].mark == Mark.LEFT
    assert decisions["2019-12-31T00:00:00Z"].mark == Mark.REMOVE


def test_a_year_of_nightly_images_with_the_done_when_policy() -> None:
    """7 daily + 4 weekly + 6 monthly over a year of nightly images keeps 7 + 4 + 6 images,
    each rule's newest of a period not covered yet."""
    start = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    cands = [Candidate(str(i), start + timedelta(days=i)) for i in range(365)]
    decisions = decide(cands, KeepRules(daily=7, weekly=4, monthly=6), UTC)
    by_rule: dict[str | None, int] = {}
    for d in decisions:
        if d.keep:
            by_rule[d.rule] = by_rule.get(d.rule, 0) + 1
    assert by_rule == {"daily": 7, "weekly": 4, "monthly": 6}
    assert [d.id for d in decisions[:7]] == [str(i) for i in range(364, 357, -1)]


def test_rules_refuse_to_remove_everything() -> None:
    with pytest.raises(BadInput, match="would remove every image"):
        KeepRules().check()
    with pytest.raises(BadInput, match="would remove every image"):
        KeepRules(last=0, daily=0).check()
    with pytest.raises(BadInput, match="keep-daily"):
        KeepRules(daily=-1).check()
    assert KeepRules(last=0, daily=1).check().text() == "keep-last 0, keep-daily 1"
