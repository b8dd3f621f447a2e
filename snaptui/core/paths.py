"""Where snaptui keeps its data (platformdirs), and scratch files with safe permissions."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "snaptui"


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value) if value else None


def config_dir() -> Path:
    return _env_path("SNAPTUI_CONFIG_DIR") or platformdirs.user_config_path(APP)


def state_dir() -> Path:
    """Journal, locks, audit log and scratch live here (SNAPTUI_STATE_DIR overrides)."""
    return _env_path("SNAPTUI_STATE_DIR") or platformdirs.user_state_path(APP)


def data_dir() -> Path:
    return _env_path("SNAPTUI_DATA_DIR") or platformdirs.user_data_path(APP)


def library_dir() -> Path:
    """Default local image library (used when no cloud is configured)."""
    return _env_path("SNAPTUI_LIBRARY_DIR") or data_dir() / "library"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700; return it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def scratch_dir() -> Path:
    """0700 directory for deltas and partial outputs (SNAPTUI_SCRATCH_DIR overrides)."""
    return private_dir(_env_path("SNAPTUI_SCRATCH_DIR") or state_dir() / "scratch")


def create_private_file(path: Path) -> Path:
    """Create an empty file readable only by its owner (0600), failing if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    return path
