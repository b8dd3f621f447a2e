"""A second host for fleet tests: the lab's sshd on loopback, with snaptui "installed" there.

The "remote" snaptui is this checkout run through ``ssh``: its command in ``[[hosts]]`` is
``env -i`` with only non-secret variables (PATH, an empty HOME, its own state and config dirs,
PYTHONPATH), so the remote side sees no OS_CLOUD, no clouds.yaml and none of our environment:
whatever it knows of the cloud came through the SSH channel's stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The checkout's venv; a git worktree has none, and then the venv running the tests (lab2 is
# this machine over SSH, so the same interpreter is there).
PYTHON = next((p for p in (REPO / ".venv" / "bin" / "python",) if p.exists()),
              Path(sys.executable))
HOST = "lab2"


def lab_ssh_env() -> dict[str, str]:
    """SNAPTUI_LAB_SSH_* from the environment, else from ``scripts/lab env --json``."""
    if os.environ.get("SNAPTUI_LAB_SSH_URI"):
        return {k: v for k, v in os.environ.items() if k.startswith("SNAPTUI_LAB_SSH_")}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "lab"), "env", "--json"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the lab is not up (run scripts/lab up): {proc.stderr.strip()}",
                    pytrace=False)
    found = {k: v for k, v in json.loads(proc.stdout).items() if k.startswith("SNAPTUI_LAB_SSH_")}
    if "SNAPTUI_LAB_SSH_URI" not in found:
        pytest.fail("the lab has no sshd (run scripts/lab up)", pytrace=False)
    return found


@dataclass
class Fleet:
    """The local host plus ``lab2`` (the lab's sshd); ``remote_state`` is lab2's journal dir."""

    ssh_uri: str
    remote_home: Path
    remote_state: Path
    config: Path

    def remote_command(self) -> list[str]:
        return ["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                f"HOME={self.remote_home}", f"SNAPTUI_STATE_DIR={self.remote_state}",
                f"SNAPTUI_CONFIG_DIR={self.remote_home / 'config'}",
                f"SNAPTUI_DATA_DIR={self.remote_home / 'data'}",
                f"PYTHONPATH={REPO}", str(PYTHON), "-m", "snaptui"]

    def write_config(self, snaptui: list[str] | None = None, uri: str | None = None) -> None:
        command = json.dumps(snaptui or self.remote_command())
        self.config.write_text(f'[[hosts]]\nname = "local"\nuri = "qemu:///system"\n\n'
                               f'[[hosts]]\nname = "{HOST}"\nuri = "{uri or self.ssh_uri}"\n'
                               f"snaptui = {command}\n")

    def remote_journal(self, job_id: str) -> Path:
        return self.remote_state / "jobs" / f"{job_id}.jsonl"


def snaptui(*args: str, timeout: float = 240, stdin: str | None = None
            ) -> subprocess.CompletedProcess:
    """Run this checkout's CLI here (the test's environment: the lab's OS_CLOUD, own dirs)."""
    return subprocess.run([str(PYTHON), "-m", "snaptui", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, input=stdin,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def json_lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip().startswith("{")]
