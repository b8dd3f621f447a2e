"""``config.toml`` under the config dir: one typed model (``Settings``), one reader
(``load_settings``) and one writer (``Settings.save_dashboard``, the dashboard's theme and
keymap edited in place with tomlkit, so comments survive). Every bad value is a one-line
BadInput naming the key.

```toml
theme = "snaptui-dark"

[keymap]                                   # binding id -> key(s), e.g. jobs = "j,f2"
snapshot = "S"

[[hosts]]
name = "hv1"                               # shown in the Host column, used in HV1:DOMAIN
uri = "qemu+ssh://root@hv1.example/system"
snaptui = "/opt/snaptui/.venv/bin/snaptui" # optional: the command on that host (string or list)

[jobs]
max_concurrent = 2                         # jobs at once on one host
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from snaptui.core.errors import BadInput
from snaptui.core.paths import config_dir, private_dir

CONFIG_NAME = "config.toml"
TOP_KEYS = ("theme", "keymap", "hosts", "jobs")
HOST_KEYS = ("name", "uri", "snaptui")
MAX_CONCURRENT_KEY = "jobs.max_concurrent"
DEFAULT_MAX_CONCURRENT = 2


@dataclass(frozen=True)
class HostEntry:
    """One ``[[hosts]]`` table as written (names checked, nothing resolved yet)."""

    name: str
    uri: str
    snaptui: tuple[str, ...] | None = None


@dataclass
class Settings:
    """Everything config.toml says (defaults for what it does not)."""

    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)
    hosts: tuple[HostEntry, ...] = ()
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    path: Path | None = None

    def save_dashboard(self) -> None:
        """Write theme and keymap back (0600), editing the file in place: the operator's
        comments, ordering, other keys and edits made meanwhile survive. A file that is no
        longer valid TOML is left alone (BadInput). No-op without a path."""
        if self.path is None:
            return
        private_dir(self.path.parent)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        try:
            doc = tomlkit.parse(text)
        except TOMLKitError as err:
            raise BadInput(f"config {self.path}: not valid TOML ({err}); not saving over it") \
                from None
        if self.theme:
            if doc.get("theme") != self.theme:
                doc["theme"] = self.theme
        elif "theme" in doc:
            del doc["theme"]
        self._save_keymap(doc)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(tomlkit.dumps(doc))
        os.replace(tmp, self.path)

    def _save_keymap(self, doc: tomlkit.TOMLDocument) -> None:
        """Sync ``[keymap]`` key by key (the table and its comments stay even when empty)."""
        table = doc.get("keymap")
        if table is None:
            if not self.keymap:
                return
            table = doc["keymap"] = tomlkit.table()
        if not isinstance(table, dict):  # edited into something else since it was loaded
            raise BadInput(f"config {self.path}: 'keymap' must be a table of binding id = "
                           "\"key\"; not saving over it")
        for binding_id in [k for k in table if k not in self.keymap]:
            del table[binding_id]
        for binding_id, keys in sorted(self.keymap.items()):
            if table.get(binding_id) != keys:
                table[binding_id] = keys


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
    except UnicodeDecodeError as err:
        raise BadInput(f"config {path}: not UTF-8 text (byte {err.start})") from None
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


def load_settings(path: Path | None = None,
                  binding_ids: Iterable[str] | None = None) -> Settings:
    """Read and check config.toml (default: the config dir's); a missing file is the
    defaults. ``binding_ids``: the ids a ``[keymap]`` entry may name (the dashboard's)."""
    path = path or config_path()
    data = read_toml(path)
    for key in data:
        if key not in TOP_KEYS:
            raise BadInput(f"config {path}: unknown key {key!r} (known: {', '.join(TOP_KEYS)})")
    return Settings(theme=_theme(data, path), keymap=_keymap(data, path, binding_ids),
                    hosts=_hosts(data, path), max_concurrent=_max_concurrent(data, path),
                    path=path)


def _theme(data: dict[str, Any], path: Path) -> str | None:
    theme = data.get("theme")
    if theme is not None and (not isinstance(theme, str) or not theme.strip()):
        raise BadInput(f"config {path}: 'theme' must be a theme name (a string)")
    return theme


def _keymap(data: dict[str, Any], path: Path,
            binding_ids: Iterable[str] | None) -> dict[str, str]:
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict):
        raise BadInput(f"config {path}: 'keymap' must be a table of binding id = \"key\"")
    known = None if binding_ids is None else set(binding_ids)
    for binding_id, keys in keymap.items():
        if known is not None and binding_id not in known:
            raise BadInput(f"config {path}: unknown binding id 'keymap.{binding_id}' "
                           f"(known: {', '.join(sorted(known))})")
        if not isinstance(keys, str) or not keys.strip():
            raise BadInput(f"config {path}: 'keymap.{binding_id}' must be a key string, "
                           "e.g. \"ctrl+s\" or \"s,f5\"")
    return dict(keymap)


def _hosts(data: dict[str, Any], path: Path) -> tuple[HostEntry, ...]:
    raw_hosts = data.get("hosts", [])
    if not isinstance(raw_hosts, list):
        raise BadInput(f"config {path}: 'hosts' must be an array of tables ([[hosts]])")
    hosts = tuple(_host(entry, i, path) for i, entry in enumerate(raw_hosts))
    names = [h.name for h in hosts]
    for name in names:
        if names.count(name) > 1:
            raise BadInput(f"config {path}: host name {name!r} is used twice")
    return hosts


def _max_concurrent(data: dict[str, Any], path: Path) -> int:
    jobs = data.get("jobs", {})
    if not isinstance(jobs, dict):
        raise BadInput(f"config {path}: 'jobs' must be a table ([jobs])")
    for key in jobs:
        if key != "max_concurrent":
            raise BadInput(f"config {path}: unknown key 'jobs.{key}' (known: max_concurrent)")
    value = jobs.get("max_concurrent", DEFAULT_MAX_CONCURRENT)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"config {path}: '{MAX_CONCURRENT_KEY}' must be a whole number >= 1, "
                       f"not {value!r}")
    return value


def max_concurrent_jobs(path: Path | None = None) -> int:
    """``[jobs] max_concurrent`` of config.toml (default 2)."""
    return load_settings(path).max_concurrent
