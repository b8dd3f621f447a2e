"""A schedule's definition and its last run, as files: ``<config dir>/schedules/NAME.toml``
(what to snapshot, when, how, what to keep) and ``<state dir>/schedules/NAME.json`` (the last
run and its result). Both 0600 in 0700 directories; the TOML is the operator's to read and
edit, and is validated on load with a line naming the bad key.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from snaptui.core.engine.preflight.quiesce import check_verify_options
from snaptui.core.errors import BadInput, NotFound
from snaptui.core.keep.retention import KeepRules
from snaptui.core.keep.rotation import check_options as check_backup_type
from snaptui.core.paths import config_dir, private_dir, state_dir
from snaptui.core.present import parse_duration

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")
SNAPSHOT_KEYS = ("mode", "destination", "out_format", "priority", "quiesce", "stream")
DEFAULT_DELAY = "15min"
DEFAULT_VERIFY_TIMEOUT_S = 120.0  # snapshot's and verify's --verify-timeout default


def check_name(name: str) -> str:
    """A schedule name names files and systemd units: letters, digits, '-' and '_'."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BadInput(f"schedule name {str(name)[:60]!r}: 1 to 48 letters, digits, '-' or '_', "
                       "starting with a letter or digit")
    return name


@dataclass
class Schedule:
    """What ``schedule add`` recorded: which guests, when, how, and what to keep."""

    name: str
    on: str  # a systemd calendar expression (checked by systemd-analyze before it is saved)
    domains: list[str] = field(default_factory=list)  # names; HOST:NAME in a fleet
    all_domains: bool = False
    exclude: list[str] = field(default_factory=list)
    backup_type: str = ""  # "": the schedule's name
    snapshot: dict[str, str] = field(default_factory=dict)  # mode, destination, ... (SNAPSHOT_KEYS)
    verify: bool = False  # each new image boot-checked (snapshot --verify)
    verify_stale: str = ""  # after the prune: verify --stale AGE of its guests' images
    verify_budget: str = ""  # ... --budget T
    verify_timeout: float | None = None  # each boot check's (--verify-timeout; None: 120 s)
    keep: dict[str, int] = field(default_factory=dict)  # KeepRules.to_json()
    uri: str | None = None
    cloud: str | None = None
    library: str | None = None
    randomized_delay: str = DEFAULT_DELAY
    paused: bool = False

    @property
    def type(self) -> str:
        """The backup_type its images carry (and prune by)."""
        return self.backup_type or self.name

    @property
    def rules(self) -> KeepRules:
        return KeepRules.from_json(self.keep)

    def check(self) -> Schedule:
        check_name(self.name)
        if bool(self.domains) == bool(self.all_domains):
            raise BadInput("a schedule takes --domain D (repeatable) or --all, one of them")
        if self.exclude and not self.all_domains:
            raise BadInput("--exclude goes with --all")
        check_backup_type(self.type, None)
        unknown = sorted(set(self.snapshot) - set(SNAPSHOT_KEYS))
        if unknown:
            raise BadInput(f"schedule {self.name}: unknown snapshot option {unknown[0]!r}")
        if self.keep:
            self.rules.check()
        self._check_verify()
        return self

    def _check_verify(self) -> None:
        if self.verify_budget and not self.verify_stale:
            raise BadInput("--verify-budget goes with --verify-stale")
        if self.verify_stale:
            parse_duration(self.verify_stale, "--verify-stale")
        timeout = DEFAULT_VERIFY_TIMEOUT_S if self.verify_timeout is None else \
            self.verify_timeout
        check_verify_options(None, timeout, None)
        if self.verify_budget and \
                parse_duration(self.verify_budget, "--verify-budget") < timeout:
            raise BadInput(f"--verify-budget {self.verify_budget} is shorter than one boot "
                           f"check (--verify-timeout {timeout:g} s)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_toml(cls, data: dict[str, Any], path: Path) -> Schedule:
        known = {f for f in cls.__dataclass_fields__}
        for key in data:
            if key not in known:
                raise BadInput(f"schedule {path}: unknown key {key!r}")
        if not isinstance(data.get("on"), str) or not isinstance(data.get("name"), str):
            raise BadInput(f"schedule {path}: 'name' and 'on' must be strings")
        try:
            keep = {str(k): int(v) for k, v in (data.get("keep") or {}).items()}
            schedule = cls(**{**data, "keep": keep})
        except (TypeError, ValueError) as err:
            raise BadInput(f"schedule {path}: {err}") from None
        if schedule.name != path.stem:
            raise BadInput(f"schedule {path}: name {schedule.name!r} is not the file's name")
        return schedule.check()


def schedules_dir() -> Path:
    return private_dir(config_dir() / "schedules", "schedules directory")


def runs_dir() -> Path:
    return private_dir(state_dir() / "schedules", "schedule state directory")


def schedule_path(name: str) -> Path:
    return schedules_dir() / f"{check_name(name)}.toml"


def _write_private(path: Path, text: str) -> None:
    """Write atomically, 0600, through a temp file in the same directory."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(schedule: Schedule) -> Path:
    """Write the schedule's TOML (None values left out: TOML has no null)."""
    data = {k: v for k, v in schedule.check().to_json().items() if v is not None}
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"snaptui schedule {schedule.name}: `snaptui schedule add` wrote "
                            "it; `snaptui schedule run` reads it"))
    for key, value in data.items():
        doc[key] = value
    path = schedule_path(schedule.name)
    _write_private(path, tomlkit.dumps(doc))
    return path


def load(name: str) -> Schedule:
    path = schedule_path(name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"no schedule {name!r} (snaptui schedule list shows them)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise BadInput(f"schedule {path}: {err}") from None
    return Schedule.from_toml(data, path)


def names() -> list[str]:
    return sorted(p.stem for p in schedules_dir().glob("*.toml") if NAME_RE.fullmatch(p.stem))


def remove(name: str) -> list[Path]:
    """Delete the schedule's definition and last-run record; the paths removed."""
    gone = []
    for path in (schedule_path(name), runs_dir() / f"{check_name(name)}.json"):
        try:
            path.unlink()
            gone.append(path)
        except FileNotFoundError:
            continue
    return gone


def record_run(name: str, run: dict[str, Any]) -> None:
    _write_private(runs_dir() / f"{check_name(name)}.json", json.dumps(run, indent=2) + "\n")


def last_run(name: str) -> dict[str, Any] | None:
    try:
        data = json.loads((runs_dir() / f"{check_name(name)}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
