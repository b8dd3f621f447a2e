"""How people read and write sizes, durations, times and domain states, in the CLI and the
dashboard alike.

- Sizes: binary units through humanize, one decimal below 100 of a unit and none from 100 up
  (``29.5 MiB``, ``512 MiB``, ``900 B``): at most 8 cells, so a table column never overflows.
- Durations: ``12.3 s`` under a minute, then the two largest units (``4m 05s``, ``1h 02m``,
  ``2d 03h``; ``5m``, ``1d`` when the smaller is zero). Read back by ``parse_duration``, the one
  grammar of ``--older-than`` and ``--since``.
- Times: ISO 8601 stamps (``Z`` or an offset; UTC when they say nothing) read by ``parse_iso``.
- ``UNKNOWN`` (``—``) stands for a size, duration or time nobody knows.
- Domain states: one glyph, short word and colour per state (``STATE_LOOK``). The colour is a
  dashboard theme variable; ``TERMINAL_COLOUR`` gives the CLI the ANSI colour it stands for.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import NamedTuple

import humanize
from rich.text import Text

from snaptui.core.errors import BadInput
from snaptui.core.models import DomainState

UNKNOWN = "—"
# An image the next run of a schedule would prune (the dashboard's Images pane and detail).
PRUNE_GLYPH = "✂"

# ---------------------------------------------------------------- sizes


def size_text(size: int | float | None) -> str:
    """Bytes for people: ``1.5 GiB``, ``512 MiB``, ``900 B``; ``UNKNOWN`` when None."""
    if size is None:
        return UNKNOWN
    if abs(size) < 1024:
        return f"{size:.0f} B"
    number, _, unit = humanize.naturalsize(size, binary=True, format="%.1f").partition(" ")
    if abs(float(number)) >= 100:  # 512.0 → 512: the tenth does not matter at that size
        number = f"{float(number):.0f}"
    return f"{number} {unit}"


def size_with_bytes(size: int | None) -> str:
    """A size for people followed by the exact byte count: ``64.0 MiB (67108864 bytes)``."""
    return UNKNOWN if size is None else f"{size_text(size)} ({size} bytes)"


# ---------------------------------------------------------------- durations

_UNITS_S = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration_text(seconds: float | None) -> str:
    """``12.3 s`` under a minute; ``4m 05s``, ``1h 02m``, ``2d 03h`` above (``5m``, ``1d`` when
    the smaller unit is zero); ``UNKNOWN`` when None."""
    if seconds is None:
        return UNKNOWN
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    for index, (unit, size) in enumerate(_UNITS_S[:-1]):
        if whole >= size:
            small_unit, small_size = _UNITS_S[index + 1]
            big, rest = divmod(whole, size)
            small = rest // small_size
            return f"{big}{unit} {small:02d}{small_unit}" if small else f"{big}{unit}"
    raise AssertionError("unreachable: a minute or more has a unit")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_EXAMPLES = "90s, 30m, 2h, 1d12h, 1w"


def parse_duration(text: str, option: str = "") -> float:
    """``90s``, ``30m``, ``2h``, ``1d12h``, ``1.5h``, ``1w`` or plain seconds -> seconds;
    BadInput (naming ``option`` when given) for anything else."""
    compact = text.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(compact):
        match = _DURATION_PART.match(compact, pos)
        if not match or match.end() == pos:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact):
        where = f"{option}: " if option else ""
        raise BadInput(f"{where}not a duration: {text!r} (e.g. {DURATION_EXAMPLES})")
    return total


# ---------------------------------------------------------------- times


def parse_iso(text: str | None) -> datetime | None:
    """An aware datetime from an ISO 8601 stamp (``Z``, an offset, or UTC when it says
    nothing); None when there is none or it is not ISO 8601."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def iso_age_s(stamp: str | None, now: float) -> float | None:
    """Seconds from an ISO 8601 stamp (Glance's ``created_at``, qemu-img's snapshot date) to
    ``now`` (never negative); None when the stamp is missing or unreadable."""
    when = parse_iso(stamp)
    return None if when is None else max(0.0, now - when.timestamp())


def date_text(iso: str | None) -> str:
    """``2025-05-12 07:15`` from an ISO 8601 stamp, in the zone it was written in;
    ``UNKNOWN`` when there is none."""
    if not iso:
        return UNKNOWN
    return iso.replace("T", " ")[:16]


def clock_text(ts: float | None) -> str:
    """Local time of day ``07:15:03`` of a Unix time; ``UNKNOWN`` when there is none."""
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else UNKNOWN


def local_time_text(ts: float | None) -> str:
    """Local ``2025-05-12 07:15:03`` of a Unix time; ``UNKNOWN`` when there is none."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else UNKNOWN


# ---------------------------------------------------------------- domain states


class StateLook(NamedTuple):
    """How a domain state is shown: glyph, a word of at most 7 letters, theme colour."""

    glyph: str
    word: str
    colour: str  # a dashboard theme variable (success, warning, ...)


STATE_LOOK: dict[str, StateLook] = {
    DomainState.RUNNING: StateLook("▶", "running", "success"),
    DomainState.PAUSED: StateLook("‖", "paused", "warning"),
    DomainState.SHUTOFF: StateLook("■", "shutoff", "foreground-muted"),
    DomainState.SAVED: StateLook("◆", "saved", "secondary"),
    DomainState.CRASHED: StateLook("✖", "crashed", "error"),
    DomainState.SHUTDOWN: StateLook("▼", "halting", "warning"),
    DomainState.BLOCKED: StateLook("◌", "blocked", "warning"),
    DomainState.PMSUSPENDED: StateLook("☾", "asleep", "secondary"),
    DomainState.NOSTATE: StateLook("?", "unknown", "foreground-muted"),
}

# The ANSI colour of each theme variable above, for a terminal with no dashboard theme.
TERMINAL_COLOUR: dict[str, str] = {
    "success": "green",
    "warning": "yellow",
    "error": "red",
    "secondary": "cyan",
    "foreground-muted": "bright_black",
}


def state_look(state: DomainState | str) -> StateLook:
    """The look of a domain state; a state this version does not know shows as ``?``."""
    return STATE_LOOK.get(state, StateLook("?", str(state)[:7], "foreground-muted"))


def state_text(state: DomainState | str) -> Text:
    """A domain state for a terminal: its glyph and full word in ANSI colour (``▶ running``)."""
    look = state_look(state)
    return Text(f"{look.glyph} {state}", style=TERMINAL_COLOUR[look.colour])
