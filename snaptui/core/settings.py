"""The engine's part of ``config.toml``: the fleet (``[[hosts]]``) and host-wide job settings.

The dashboard's own keys (theme, keymap) are read by ``ui/config.py``; both readers accept the
other's keys. Every bad value is a one-line BadInput naming the key.

```toml
[[hosts]]
name = "hv1"                               # shown in the Host column, used in HV1:DOMAIN
uri = "qemu+ssh://root@hv1.example/system"
snaptui = "/opt/snaptui/.venv/bin/snaptui" # optional: the command on that host (string or list)

[jobs]
max_concurrent = 2                         # jobs at once on one host
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snaptui.core.errors import BadInput
from snaptui.core.paths import config_dir

CONFIG_NAME = "config.toml"
ENGINE_KEYS = ("hosts", "jobs")
HOST_KEYS = ("name", "uri", "snaptui")


@dataclass(frozen=True)
class HostEntry:
    """One ``[[hosts]]`` table as written (names checked, nothing resolved yet)."""

    name: str
    uri: str
    snaptui: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EngineSettings:
    hosts: tuple[HostEntry, ...] = ()
    path: Path | None = None


def config_path() -> Path:
    return config_dir() / CONFIG_NAME


def read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML as a dict; a missing file is empty."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise BadInput(f"cannot read config {path}: {err.strerror}") from None
    try:
        return tomllib.loads(raw)
    except tomllib.TOMLDecodeError as err:
        raise BadInput(f"config {path}: not valid TOML: {err}") from None


def _command(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise BadInput(f"{where}: 'snaptui' must be a command (a string or a list of strings)")


def _host(entry: Any, index: int, path: Path) -> HostEntry:
    where = f"config {path}: hosts[{index}]"
    if not isinstance(entry, dict):
        raise BadInput(f"{where} must be a table with name and uri")
    for key in entry:
        if key not in HOST_KEYS:
            raise BadInput(f"{where}: unknown key {key!r} (known: {', '.join(HOST_KEYS)})")
    name, uri = entry.get("name"), entry.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise BadInput(f"{where}: 'uri' must be a libvirt URI (a string)")
    if not isinstance(name, str) or not valid_host_name(name):
        raise BadInput(f"{where}: 'name' must be letters, digits, '.', '-' or '_' "
                       "(it is used in HOST:DOMAIN)")
    command = _command(entry["snaptui"], where) if "snaptui" in entry else None
    return HostEntry(name=name, uri=uri, snaptui=command)


def valid_host_name(name: str) -> bool:
    return bool(name) and len(name) <= 64 and all(c.isalnum() or c in ".-_" for c in name)


def load_engine_settings(path: Path | None = None) -> EngineSettings:
    """Read ``[[hosts]]`` and ``[jobs]`` from config.toml (default: the config dir's)."""
    path = path or config_path()
    data = read_toml(path)
    raw_hosts = data.get("hosts", [])
    if not isinstance(raw_hosts, list):
        raise BadInput(f"config {path}: 'hosts' must be an array of tables ([[hosts]])")
    hosts = tuple(_host(entry, i, path) for i, entry in enumerate(raw_hosts))
    names = [h.name for h in hosts]
    for name in names:
        if names.count(name) > 1:
            raise BadInput(f"config {path}: host name {name!r} is used twice")
    if not isinstance(data.get("jobs", {}), dict):
        raise BadInput(f"config {path}: 'jobs' must be a table ([jobs])")
    return EngineSettings(hosts=hosts, path=path)


# ---------------------------------------------------------------- [jobs]

MAX_CONCURRENT_KEY = "jobs.max_concurrent"
DEFAULT_MAX_CONCURRENT = 2


def _jobs_table(path: Path) -> dict:
    jobs = read_toml(path).get("jobs", {})
    if not isinstance(jobs, dict):
        raise BadInput(f"config {path}: 'jobs' must be a table ([jobs])")
    for key in jobs:
        if key != "max_concurrent":
            raise BadInput(f"config {path}: unknown key 'jobs.{key}' (known: max_concurrent)")
    return jobs


def max_concurrent_jobs(path: Path | None = None) -> int:
    """``[jobs] max_concurrent`` of config.toml (default 2); a bad value is one BadInput line
    naming the key."""
    path = path or config_path()
    value = _jobs_table(path).get("max_concurrent", DEFAULT_MAX_CONCURRENT)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"config {path}: '{MAX_CONCURRENT_KEY}' must be a whole number >= 1, "
                       f"not {value!r}")
    return value
