"""The systemd side of a schedule: a timer and a service unit per schedule, calendars checked
and computed by ``systemd-analyze``, and the crontab line for a host without systemd.

One unit pair per schedule (``snaptui-schedule-NAME.timer`` + ``.service``) rather than a
template instance: each pair is complete on its own (the operator reads one file to see what
runs, and ``systemctl list-timers`` names the schedule), and removing a schedule is removing
its two files; a template would need a drop-in per schedule for its calendar anyway.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from snaptui.core.errors import BadInput, SnaptuiError
from snaptui.core.keep.schedules import Schedule

UNIT_PREFIX = "snaptui-schedule-"
DIR_ENV = "SNAPTUI_SYSTEMD_DIR"  # where units are written instead (tests, packaging)
SYSTEM_DIR = Path("/etc/systemd/system")
# Passed to the service so that it finds the same config, state, cloud and libvirt as the
# operator who added the schedule; never a secret (OS_PASSWORD and the like are not here).
PASSED_ENV = ("SNAPTUI_CONFIG_DIR", "SNAPTUI_STATE_DIR", "SNAPTUI_DATA_DIR",
              "SNAPTUI_SCRATCH_DIR", "OS_CLIENT_CONFIG_FILE", "OS_CLOUD",
              "LIBVIRT_DEFAULT_URI", "PYTHONPATH")
ANALYZE_TIMEOUT_S = 10


def unit_names(name: str) -> tuple[str, str]:
    return f"{UNIT_PREFIX}{name}.timer", f"{UNIT_PREFIX}{name}.service"


def unit_dir(user: bool = False) -> Path:
    """``SNAPTUI_SYSTEMD_DIR``, else /etc/systemd/system, or ~/.config/systemd/user."""
    override = os.environ.get(DIR_ENV)
    if override:
        return Path(override)
    if user:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "systemd" / "user"
    return SYSTEM_DIR


def systemd_running() -> bool:
    """Whether PID 1 is systemd (sd_booted's test)."""
    return Path("/run/systemd/system").is_dir()


def _analyze(*argv: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise SnaptuiError("systemd-analyze is not installed (package systemd): calendars "
                           "cannot be checked")
    return subprocess.run([tool, *argv], capture_output=True, text=True, check=False,
                          timeout=ANALYZE_TIMEOUT_S, env={**os.environ, "SYSTEMD_COLORS": "0",
                                                          "SYSTEMD_PAGER": ""})


@dataclass(frozen=True)
class Calendar:
    """A calendar expression as systemd reads it."""

    given: str
    normalized: str
    next_elapse: str | None  # "Tue 2026-12-08 02:00:00 UTC"; None: never again


def check_calendar(spec: str) -> Calendar:
    """BadInput (systemd-analyze's reason) unless systemd accepts ``spec`` as OnCalendar."""
    if not spec.strip() or "\n" in spec or len(spec) > 256:
        raise BadInput(f"--on {spec[:60]!r}: not a calendar expression")
    proc = _analyze("calendar", "--iterations=1", spec)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["not a calendar expression"])[-1]
        raise BadInput(f"--on {spec!r}: {why} (see man systemd.time, e.g. daily, "
                       "'*-*-* 02:00', 'Mon..Fri 22:30')")
    fields = dict(re.findall(r"^\s*([A-Za-z .#0-9()]+?):\s*(.+)$", proc.stdout, re.M))
    return Calendar(spec, fields.get("Normalized form", spec), fields.get("Next elapse"))


def check_timespan(span: str, option: str) -> str:
    """BadInput unless systemd reads ``span`` as a time span (``15min``, ``1h 30s``)."""
    if not span.strip() or "\n" in span or len(span) > 64 \
            or _analyze("timespan", span).returncode != 0:
        raise BadInput(f"{option} {span[:40]!r}: not a systemd time span (e.g. 15min, 1h)")
    return span


def _quote(arg: str) -> str:
    """One ExecStart argument, quoted as systemd.service reads it ('%' and '$' escaped)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def service_text(schedule: Schedule, command: list[str], env: dict[str, str]) -> str:
    lines = [
        "[Unit]",
        f"Description=snaptui schedule {schedule.name}: snapshots, then prune",
        "Wants=network-online.target",
        "After=network-online.target libvirtd.service",
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={' '.join(_quote(a) for a in [*command, 'schedule', 'run', schedule.name])}",
        # A good neighbour at night: snaptui's jobs lower themselves further (--priority).
        "Nice=10",
        "IOSchedulingClass=idle",
    ]
    lines += [f"Environment={_quote(f'{k}={v}')}" for k, v in sorted(env.items())]
    return "\n".join(lines) + "\n"


def timer_text(schedule: Schedule) -> str:
    return "\n".join([
        "[Unit]",
        f"Description=snaptui schedule {schedule.name} ({schedule.on})",
        "",
        "[Timer]",
        f"OnCalendar={schedule.on}",
        "Persistent=true",  # a run missed while the host was down runs at boot
        f"RandomizedDelaySec={schedule.randomized_delay}",  # a fleet does not hit Glance at once
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]) + "\n"


def passed_env() -> dict[str, str]:
    return {k: v for k in PASSED_ENV if (v := os.environ.get(k))}


def write_units(schedule: Schedule, command: list[str], directory: Path) -> list[Path]:
    """Write the pair (0644, as systemd units are) and check them with
    ``systemd-analyze verify``; on a complaint they are removed again and it is raised."""
    directory.mkdir(parents=True, exist_ok=True)
    timer, service = unit_names(schedule.name)
    written = []
    for unit, text in ((service, service_text(schedule, command, passed_env())),
                       (timer, timer_text(schedule))):
        path = directory / unit
        tmp = path.with_name(f".{unit}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, path)
        written.append(path)
    problem = verify_units(written)
    if problem:
        remove_units(schedule.name, directory)
        raise BadInput(f"systemd-analyze verify refused the units: {problem}")
    return written


def verify_units(paths: list[Path]) -> str | None:
    """``systemd-analyze verify``'s complaint about the units, or None."""
    proc = _analyze("verify", *[str(p) for p in paths])
    if proc.returncode == 0:
        return None
    return " ".join((proc.stderr or proc.stdout).split())[:400] or f"exit {proc.returncode}"


def remove_units(name: str, directory: Path) -> list[Path]:
    gone = []
    for unit in unit_names(name):
        path = directory / unit
        try:
            path.unlink()
            gone.append(path)
        except FileNotFoundError:
            continue
    return gone


def systemctl(*argv: str, user: bool = False) -> None:
    """Run systemctl; SnaptuiError with its message when it fails."""
    tool = shutil.which("systemctl")
    if tool is None:
        raise SnaptuiError("systemctl is not installed")
    scope = ["--user"] if user else []
    proc = subprocess.run([tool, *scope, *argv], capture_output=True, text=True, check=False,
                          timeout=60)
    if proc.returncode != 0:
        raise SnaptuiError(f"systemctl {' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")


_DOW = {"Mon": "1", "Tue": "2", "Wed": "3", "Thu": "4", "Fri": "5", "Sat": "6", "Sun": "0"}


def crontab_line(calendar: Calendar, command: list[str], name: str, user: str) -> str | None:
    """The /etc/cron.d line (with its user field) that runs the schedule at the same times,
    for the forms cron can say (weekdays, then ``*-MM-DD HH:MM:00`` with numbers, lists or
    ``*``); None otherwise. Cron has no Persistent= nor RandomizedDelaySec=."""
    match = re.fullmatch(r"(?:(?P<dow>[A-Za-z,.]+) )?\*-(?P<mon>[\d,*]+)-(?P<day>[\d,*]+) "
                         r"(?P<h>[\d,*]+):(?P<m>[\d,*]+):00", calendar.normalized)
    if match is None:
        return None
    dow = "*"
    if match["dow"]:
        days = []
        for part in match["dow"].split(","):
            ends = part.split("..")
            if any(e not in _DOW for e in ends):
                return None
            days.append("-".join(_DOW[e] for e in ends))
        dow = ",".join(days)

    def num(field: str) -> str:
        return ",".join(str(int(p)) if p != "*" else "*" for p in field.split(","))

    argv = " ".join(_cron_quote(a) for a in [*command, "schedule", "run", name])
    return f"{num(match['m'])} {num(match['h'])} {num(match['day'])} {num(match['mon'])} {dow} " \
           f"{user} {argv}"


def _cron_quote(arg: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:=@+-]+", arg):
        return arg
    return "'" + arg.replace("'", "'\\''").replace("%", "\\%") + "'"
