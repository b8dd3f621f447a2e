"""Dashboard settings in ``config.toml`` under the config dir: theme and key remaps.

```toml
theme = "snaptui-dark"

[keymap]          # binding id -> key(s), e.g. snapshot = "S" or jobs = "j,f2"
snapshot = "S"
```

Loading validates every key and names the bad one in a one-line BadInput. Saving (the theme
`t` chose, or ``--theme``) edits the file in place with tomlkit: comments survive.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from snaptui.core.errors import BadInput
from snaptui.core.paths import private_dir
from snaptui.core.settings import ENGINE_KEYS

CONFIG_NAME = "config.toml"
TOP_KEYS = ("theme", "keymap", *ENGINE_KEYS)  # engine keys: core/settings.py


@dataclass
class UiConfig:
    """What the dashboard reads from config.toml (and where it saves it back)."""

    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def save(self) -> None:
        """Write theme and keymap back (0600); a no-op for a config that has no file path.

        The file is re-read and edited in place with tomlkit, so the operator's comments,
        ordering and any edits made while the dashboard ran survive (it used to be rewritten
        from scratch, dropping them). A file that is no longer valid TOML is left alone:
        BadInput, nothing written.
        """
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


def load_config(path: Path, binding_ids: set[str] | None = None) -> UiConfig:
    """Read and validate ``path``; a missing file is the default config.

    ``binding_ids``, when given, are the ids a ``[keymap]`` entry may name.
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return UiConfig(path=path)
    except OSError as err:
        raise BadInput(f"cannot read config {path}: {err.strerror}") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as err:
        raise BadInput(f"config {path}: not valid TOML: {err}") from None
    for key in data:
        if key not in TOP_KEYS:
            raise BadInput(f"config {path}: unknown key {key!r} (known: {', '.join(TOP_KEYS)})")
    theme = data.get("theme")
    if theme is not None and (not isinstance(theme, str) or not theme.strip()):
        raise BadInput(f"config {path}: 'theme' must be a theme name (a string)")
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict):
        raise BadInput(f"config {path}: 'keymap' must be a table of binding id = \"key\"")
    for binding_id, keys in keymap.items():
        if binding_ids is not None and binding_id not in binding_ids:
            raise BadInput(f"config {path}: unknown binding id 'keymap.{binding_id}' "
                           f"(known: {', '.join(sorted(binding_ids))})")
        if not isinstance(keys, str) or not keys.strip():
            raise BadInput(f"config {path}: 'keymap.{binding_id}' must be a key string, "
                           "e.g. \"ctrl+s\" or \"s,f5\"")
    return UiConfig(theme=theme, keymap=dict(keymap), path=path)
