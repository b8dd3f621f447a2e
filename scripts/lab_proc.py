"""Process and file helpers for scripts/lab: pid records, identity checks, stopping, waiting.

A pid is trusted only while the process is alive, its /proc cmdline holds the expected marker and
its start time matches the one recorded when the lab started it (guards against pid reuse).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

T0 = time.monotonic()


def say(msg: str) -> None:
    """Progress line on stderr, so stdout stays clean for ``eval "$(scripts/lab up)"``."""
    print(f"lab: {msg}", file=sys.stderr, flush=True)


class LabError(Exception):
    """A lab step failed; the message is one line meant for the user."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (replacing the file atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700 and return it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def cmdline(pid: int) -> str:
    """The process's argv joined by spaces, or "" if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def starttime(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in field 2 may hold spaces; fields after the last ')' are fixed.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].split()[0] in ("Z", "X")


def matches(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive (not a zombie) and its cmdline contains ``marker``."""
    return bool(pid) and not _is_zombie(pid) and marker in cmdline(pid)


def read_pidfile(path: Path) -> int | None:
    """The integer in a pid file, or None when missing or garbled."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def record(run_dir: Path, name: str, pid: int, marker: str) -> None:
    """Remember that the lab started ``pid`` as service ``name``."""
    data = {"pid": pid, "starttime": starttime(pid), "marker": marker}
    write_private(run_dir / f"{name}.json", json.dumps(data) + "\n")


def recorded(run_dir: Path, name: str) -> int | None:
    """The pid the lab recorded for ``name`` if that very process still runs, else None."""
    try:
        data = json.loads((run_dir / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or not matches(pid, data.get("marker", "\0")):
        return None
    if data.get("starttime") is not None and starttime(pid) != data["starttime"]:
        return None
    return pid


def forget(run_dir: Path, name: str) -> None:
    """Drop the pid record of ``name``."""
    (run_dir / f"{name}.json").unlink(missing_ok=True)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn workers of a master)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def _wait_gone(pids: list[int], marker: str, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if matches(p, marker)]
    return alive


def stop(pid: int, marker: str, timeout: float = 10.0) -> str:
    """SIGTERM ``pid`` (and its workers), SIGKILL whatever is left after ``timeout`` seconds."""
    group = [pid] + [k for k in children(pid) if matches(k, marker)]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already gone"
    left = _wait_gone(group, marker, timeout)
    if not left:
        return "stopped"
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait_gone(left, marker, 2.0)
    return "killed"


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers with a status below 400 (300 counts: version lists)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback)
            return resp.status < 400
    except urllib.error.HTTPError as exc:
        return exc.code < 400
    except (OSError, ValueError):
        return False


def port_busy(port: int) -> bool:
    """True when something already listens on 127.0.0.1:``port``."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run(argv: list[str], log: Path, env: dict[str, str] | None = None, what: str = "") -> None:
    """Run ``argv``, output appended to ``log``; raise LabError naming the log on failure."""
    with open(log, "ab") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n".encode())
        fh.flush()
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise LabError(f"{what or argv[0]} failed (exit {proc.returncode}), see {log}")
