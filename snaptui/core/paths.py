"""Where snaptui keeps its data (platformdirs), and scratch files with safe permissions.

snaptui makes 0700 only the directories it creates. A directory the operator hands it
(``SNAPTUI_SCRATCH_DIR=/var/tmp``, ``--library DIR``) keeps its mode: chmodding it would strip
the sticky bit of a shared directory. Such a directory that others may write into without the
sticky bit gets a warning, once.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import platformdirs

from snaptui.core.errors import BadInput

APP = "snaptui"

log = logging.getLogger(__name__)
_warned: set[Path] = set()


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise BadInput(f"{var}={value} is not a directory")
    return path


DIR_VARIABLES = ("SNAPTUI_CONFIG_DIR", "SNAPTUI_STATE_DIR", "SNAPTUI_DATA_DIR",
                 "SNAPTUI_LIBRARY_DIR", "SNAPTUI_SCRATCH_DIR")


def check_dir_variables() -> None:
    """Every SNAPTUI_*_DIR that is set names a directory or nothing yet (BadInput otherwise)."""
    for var in DIR_VARIABLES:
        _env_path(var)


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


def private_dir(path: Path, what: str = "directory", mode: int = 0o700) -> Path:
    """Return ``path``, creating it ``mode`` (0700; missing parents too) when it does not exist.

    An existing directory keeps its mode; one that others may write into without the sticky
    bit is warned about. A path that exists but is not a directory is a BadInput.
    """
    if not path.exists():
        missing = []
        walk = path
        while not walk.exists() and walk != walk.parent:
            missing.append(walk)
            walk = walk.parent
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=mode)
                os.chmod(directory, mode)  # not narrowed by the umask
            except FileExistsError:
                pass  # created meanwhile by another snaptui process
            except OSError as err:
                raise BadInput(f"cannot create {what} {directory}: "
                               f"{err.strerror or err}") from None
    if not path.is_dir():
        raise BadInput(f"{what} {path} is not a directory")
    _warn_if_shared(path)
    return path


def shared_writable(path: Path) -> bool:
    """Others than the owner may create or delete files in ``path`` (no sticky bit)."""
    mode = path.stat().st_mode
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH)) and not mode & stat.S_ISVTX


def _warn_if_shared(path: Path) -> None:
    if path in _warned:
        return
    try:
        shared = shared_writable(path)
    except OSError:
        return
    if shared:
        _warned.add(path)
        log.warning("%s is writable by other users and has no sticky bit: they can remove "
                    "or replace snaptui's files there (chmod o-w,g-w or +t)", path)


SYSTEM_SCRATCH = Path("/var/lib/snaptui/scratch")


def scratch_dir() -> Path:
    """Deltas, backup targets, copy-before-write scratch and partial outputs.

    ``SNAPTUI_SCRATCH_DIR`` if set; else ``scratch`` in ``SNAPTUI_STATE_DIR`` if that is set;
    else, for root, ``/var/lib/snaptui/scratch`` (QEMU, not root on a stock host, must enter
    the scratch dir, and cannot enter ``/root``); else ``scratch`` in the user's state dir.
    Directories snaptui creates for it are 0711: QEMU may enter them, nobody may list them,
    and every file in them is 0600 (core/libvirt/qemu_access.py checks the way in before a job).
    """
    chosen = _env_path("SNAPTUI_SCRATCH_DIR")
    if chosen is None:
        explicit_state = _env_path("SNAPTUI_STATE_DIR")
        if explicit_state is not None:
            chosen = explicit_state / "scratch"
        elif os.geteuid() == 0:
            chosen = SYSTEM_SCRATCH
        else:
            chosen = state_dir() / "scratch"
    return private_dir(chosen, "scratch directory", mode=0o711)


def sync_dir(directory: Path) -> None:
    """fsync a directory, so a file just created or renamed in it survives a power cut (a
    journal or marker that vanished would hide a job from recover). Best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_private_file(path: Path) -> Path:
    """Create an empty file readable only by its owner (0600), failing if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    return path
