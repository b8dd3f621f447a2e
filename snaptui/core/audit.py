"""The audit log: who did what destructive thing to which guest, disk and image, when, and how
it ended.

One JSON object per line in ``<state dir>/audit.jsonl`` (0600, its directory 0700), appended by
the engine's runner around every destructive step and its undo, and by cleanup actions
(``record``). A record never holds secrets: values under secret-looking keys are replaced by
``***`` before writing. Writing the audit log never fails the action it describes: an error is
logged and the action goes on.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snaptui.core.paths import private_dir, state_dir
from snaptui.core.present import parse_iso

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.jsonl"
RESULTS = ("started", "ok", "failed", "undone")
_SECRET_WORDS = ("password", "token", "secret", "credential", "passwd")


def audit_path() -> Path:
    """``<state dir>/audit.jsonl``; the state dir is made 0700."""
    return private_dir(state_dir()) / AUDIT_FILE


def who() -> dict[str, Any]:
    """The operator: user name and uid, and SSH_CLIENT / SUDO_USER when set."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = os.environ.get("USER") or str(uid)
    result: dict[str, Any] = {"user": user, "uid": uid}
    for var, key in (("SUDO_USER", "sudo_user"), ("SSH_CLIENT", "ssh_client")):
        value = os.environ.get(var)
        if value:
            result[key] = value
    return result


def _scrub(value: Any, key: str = "") -> Any:
    if any(word in key.lower() for word in _SECRET_WORDS) and value not in (None, ""):
        return "***"
    if isinstance(value, dict):
        return {str(k): _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def record(action: str, target: str, result: str, **details: Any) -> dict[str, Any] | None:
    """Append one audit record; returns it (None when it could not be written).

    ``action`` is what was done (a step name like ``save`` or ``undo:save``, or a cleanup
    action like ``delete-image``); ``target`` what it was done to (a domain name, an image id or
    a path); ``result`` one of ``started``, ``ok``, ``failed``, ``undone``; ``details`` anything
    else worth keeping (``domain``, ``disk``, ``image``, ``job_id``, ``error`` ...).
    """
    if result not in RESULTS:
        raise ValueError(f"audit result must be one of {', '.join(RESULTS)}, not {result!r}")
    entry: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "who": who(),
        "action": action,
        "target": target,
        "result": result,
    }
    entry.update(_scrub({k: v for k, v in details.items() if v is not None}))
    line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode()
    try:
        fd = os.open(audit_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines of concurrent jobs never mix
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        log.warning("cannot write the audit log: %s", err)
        return None
    return entry


def read(since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Audit records oldest first, only those at or after ``since`` (an aware datetime)."""
    path = state_dir() / AUDIT_FILE
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # a torn last line
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if since is not None:
                when = parse_iso(str(entry.get("time", "")))
                if when is None or when < since:
                    continue
            yield entry
