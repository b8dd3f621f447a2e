"""core/present.py: how sizes, durations, times and domain states read, and the one duration
grammar that ``audit --since`` and ``cleanup --older-than`` share."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from snaptui import cli
from snaptui.cli import cleanup as cli_cleanup
from snaptui.cli.audit import parse_since
from snaptui.core.errors import BadInput
from snaptui.core.models import DiskInfo, DomainInfo, DomainState
from snaptui.core.present import (
    STATE_LOOK,
    TERMINAL_COLOUR,
    UNKNOWN,
    clock_text,
    date_text,
    duration_text,
    iso_age_s,
    local_time_text,
    parse_duration,
    parse_iso,
    size_text,
    size_with_bytes,
    state_look,
    state_text,
)

# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(("size", "text"), [
    (None, UNKNOWN), (0, "0 B"), (1, "1 B"), (900, "900 B"), (1023, "1023 B"),
    (1024, "1.0 KiB"), (1536, "1.5 KiB"), (64 << 20, "64.0 MiB"), (int(29.5 * 2**20), "29.5 MiB"),
    (99 << 20, "99.0 MiB"), (100 << 20, "100 MiB"), (512 << 20, "512 MiB"),
    ((1 << 20) - 6, "1.0 MiB"), (3 << 29, "1.5 GiB"), (5 << 40, "5.0 TiB"), (1536.0, "1.5 KiB"),
])
def test_sizes_have_one_precision_and_one_unknown_mark(size: int | None, text: str) -> None:
    assert size_text(size) == text


def test_every_size_fits_eight_cells() -> None:
    for exponent in range(0, 62):
        for size in (1 << exponent, (1 << exponent) * 1.999, (1 << (exponent + 1)) - 1):
            assert len(size_text(size)) <= 8, (size, size_text(size))


def test_size_with_bytes() -> None:
    assert size_with_bytes(64 << 20) == "64.0 MiB (67108864 bytes)"
    assert size_with_bytes(None) == UNKNOWN


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(("seconds", "text"), [
    (None, UNKNOWN), (0, "0.0 s"), (0.42, "0.4 s"), (12.34, "12.3 s"), (59.9, "59.9 s"),
    (60, "1m"), (245, "4m 05s"), (3600, "1h"), (3720, "1h 02m"), (86400, "1d"),
    (7 * 86400, "7d"), (2 * 86400 + 3 * 3600 + 59, "2d 03h"),
])
def test_durations(seconds: float | None, text: str) -> None:
    assert duration_text(seconds) == text


@pytest.mark.parametrize("seconds", [60, 245, 3600, 3720, 86400, 7 * 86400, 93600])
def test_a_duration_shown_reads_back(seconds: int) -> None:
    assert parse_duration(duration_text(seconds)) == seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d12h", 129600),
    ("1w", 604800), (" 1 d 2 h ", 93600), ("1.5h", 5400), ("0", 0), ("2H", 7200),
    ("1w2d", 777600), ("4m 05s", 245),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


BAD_DURATIONS = ["", "   ", "h", "1y", "-1h", "1h-", "1h x", "1..5h", "yesterday"]


@pytest.mark.parametrize("text", BAD_DURATIONS)
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(BadInput, match="--older-than: not a duration"):
        parse_duration(text, "--older-than")


# ---------------------------------------------------------------- times


def test_parse_iso_reads_z_offsets_and_naive_stamps_as_utc() -> None:
    assert parse_iso("2025-01-31T10:00:00Z") == datetime(2025, 1, 31, 10, tzinfo=UTC)
    assert parse_iso("2025-01-31T10:00:00.120Z") == datetime(2025, 1, 31, 10, 0, 0, 120000,
                                                             tzinfo=UTC)
    assert parse_iso("2025-01-31T12:00:00+02:00") == datetime(2025, 1, 31, 10, tzinfo=UTC)
    assert parse_iso("2025-01-31T10:00:00") == datetime(2025, 1, 31, 10, tzinfo=UTC)
    assert parse_iso("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)
    for nothing in (None, "", "yesterday", "2025-13-01", "12h"):
        assert parse_iso(nothing) is None


def test_iso_age() -> None:
    now = datetime(2025, 1, 31, 12, tzinfo=UTC).timestamp()
    assert iso_age_s("2025-01-31T10:00:00Z", now) == 7200
    assert iso_age_s("2025-02-01T10:00:00Z", now) == 0  # a clock ahead: never negative
    assert iso_age_s(None, now) is None and iso_age_s("soon", now) is None


def test_times_for_people() -> None:
    assert date_text("2025-05-12T07:15:03Z") == "2025-05-12 07:15"
    assert date_text(None) == UNKNOWN
    stamp = time.mktime((2025, 5, 12, 7, 15, 3, 0, 0, -1))
    assert clock_text(stamp) == "07:15:03"
    assert local_time_text(stamp) == "2025-05-12 07:15:03"
    assert clock_text(None) == local_time_text(None) == UNKNOWN


def test_parse_since_ages_and_dates() -> None:
    before = datetime.now(UTC)
    age = parse_since("12h")
    assert before - timedelta(hours=12, seconds=5) <= age <= datetime.now(UTC) - timedelta(hours=12)
    week = parse_since("1w")
    assert before - timedelta(weeks=1, seconds=5) <= week <= datetime.now(UTC) - timedelta(weeks=1)
    assert parse_since("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_since("2025-01-31T10:00Z") == datetime(2025, 1, 31, 10, tzinfo=UTC)
    plus2 = parse_since("2025-01-31T10:00+02:00")
    assert plus2 == datetime(2025, 1, 31, 8, tzinfo=UTC)
    for bad in ("yesterday", "12y", "2025-13-01"):
        with pytest.raises(BadInput, match="--since: .* is neither an ISO date"):
            parse_since(bad)


# ---------------------------------------------------------------- domain states


def test_every_domain_state_has_one_look() -> None:
    assert set(STATE_LOOK) == set(DomainState)
    for state in DomainState:
        look = state_look(state)
        assert len(look.glyph) == 1 and len(look.word) <= 7
        assert look.colour in TERMINAL_COLOUR
    assert state_look(DomainState.RUNNING).glyph == "▶"
    assert state_look(DomainState.SAVED).glyph == "◆"
    assert state_look(DomainState.CRASHED).glyph == "✖"
    assert state_look("a newer libvirt's state").glyph == "?"


def test_state_text_for_the_terminal() -> None:
    text = state_text(DomainState.RUNNING)
    assert text.plain == "▶ running"
    assert str(text.style) == "green"


def test_snapshot_disks_are_the_disk_devices() -> None:
    disks = (DiskInfo("hda", "/iso", "raw", "ide", device="cdrom"),
             DiskInfo("vda", "/a.qcow2", "qcow2", "virtio"),
             DiskInfo("fda", None, None, "fdc", device="floppy"),
             DiskInfo("vdb", "/b.raw", "raw", "virtio", readonly=True))
    info = DomainInfo("web", "uuid", DomainState.RUNNING, 1, 1024, True, disks=disks)
    assert [d.target for d in info.snapshot_disks] == ["vda", "vdb"]
    assert info.disk() is disks[1]
    assert not disks[0].taken_by_snapshot


# ------------------------------------------- one grammar for audit --since and cleanup --older-than

GOOD_DURATIONS = ["90", "90s", "30m", "2h", "1d12h", "1w", "1.5h", "1w2d", "4m 05s"]


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("text", GOOD_DURATIONS)
def test_audit_and_cleanup_accept_the_same_durations(
        text: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = parse_duration(text)
    before = datetime.now(UTC)
    read_since: list[datetime] = []
    monkeypatch.setattr("snaptui.cli.audit.read",
                        lambda since: read_since.append(since) or iter(()))
    assert _main(capsys, "audit", f"--since={text}")[0] == 0
    assert before - timedelta(seconds=seconds + 5) <= read_since[0] \
        <= datetime.now(UTC) - timedelta(seconds=seconds)

    scanned: list[float] = []

    def scan(args: Any, host: Any, store: Any, only: Any, older_than_s: float) -> Any:
        scanned.append(older_than_s)
        raise BadInput("the scan is reached")

    monkeypatch.setattr(cli_cleanup, "_open_host", lambda args, only: None)
    monkeypatch.setattr(cli_cleanup, "_open_store", lambda args, only: None)
    monkeypatch.setattr(cli_cleanup, "_scan", scan)
    err = _main(capsys, "cleanup", "--dry-run", f"--older-than={text}")[1]
    assert err == ["snaptui: error: the scan is reached"]
    assert scanned == [seconds]


@pytest.mark.parametrize("text", BAD_DURATIONS)
def test_audit_and_cleanup_refuse_the_same_bad_durations_in_one_line(
        text: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, words in ((["audit", f"--since={text}"], "--since:"),
                        (["cleanup", "--dry-run", f"--older-than={text}"],
                         "--older-than: not a duration")):
        code, err = _main(capsys, *argv)
        assert code == 2, (argv, err)
        assert len(err) == 1 and err[0].startswith("snaptui: error: ") and words in err[0], err
