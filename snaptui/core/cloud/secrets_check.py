"""Warn when a file holding a password or token is readable by other users.

Looks at the files the openstack loader reads (``OS_CLIENT_CONFIG_FILE``/``OS_CLIENT_SECURE_FILE``,
then ``clouds``/``secure`` ``.yaml``/``.yml``/``.json`` in the current directory,
``~/.config/openstack`` and ``/etc/openstack``) and snaptui's own config files. Only the file's
mode and whether it holds a secret-looking key are read; the secret itself is never kept.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import platformdirs

from snaptui.core.paths import config_dir

EXPOSED_MASK = 0o044  # readable by group or others
_SECRET_KEY = re.compile(
    r"""^\s*["']?(password|token|application_credential_secret|secret)["']?\s*[:=]\s*\S""",
    re.MULTILINE | re.IGNORECASE,
)
_NAMES = [f"{stem}{suffix}" for stem in ("clouds", "secure")
          for suffix in (".yaml", ".yml", ".json")]


def candidate_files() -> list[Path]:
    """Every file that may hold cloud credentials for snaptui, existing or not, no duplicates."""
    paths: list[Path] = []
    for var in ("OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE"):
        if os.environ.get(var):
            paths.append(Path(os.environ[var]))
    dirs = [Path.cwd(), platformdirs.user_config_path("openstack"),
            Path.home() / ".config" / "openstack", platformdirs.site_config_path("openstack"),
            Path("/etc/openstack")]
    paths += [d / name for d in dirs for name in _NAMES]
    paths += sorted(config_dir().glob("*.toml")) if config_dir().is_dir() else []
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(os.path.abspath(path), path)
    return list(unique.values())


def exposed_secret_warning(path: str | Path) -> str | None:
    """One line when ``path`` holds a password/token and ``mode & 0o044`` (others may read it)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & EXPOSED_MASK:
            return None
        with open(path, encoding="utf-8", errors="replace") as handle:
            if _SECRET_KEY.search(handle.read(1 << 20)) is None:
                return None
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    return (f"{path} holds a password or token and is readable by other users "
            f"(mode {mode:04o}); run: chmod 600 {path}")


def exposed_secret_warnings(paths: list[Path] | None = None) -> list[str]:
    """Warnings for every candidate (or given) file whose secrets others may read."""
    found = (exposed_secret_warning(p) for p in (paths if paths is not None
                                                  else candidate_files()))
    return [w for w in found if w]
