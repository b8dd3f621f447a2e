"""Run this checkout's CLI from the tests as an operator would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def snaptui(*argv: str, env: dict[str, str] | None = None, timeout: float = 180,
            input: str | None = None, cwd: Path | None = None, unset: Iterable[str] = (),
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``python -m snaptui ARGV`` from this checkout (cwd ``REPO`` unless ``cwd``), output
    captured as text, never raising on the exit status.

    The environment is the test's (its isolated state and config dirs, the lab's cloud) with
    ``unset`` names removed and ``env`` laid over it. Stdin is empty (EOF) unless ``input`` is
    given, so a prompt never waits on the terminal pytest runs in.
    """
    base = {k: v for k, v in os.environ.items() if k not in set(unset)}
    if input is None:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "snaptui", *argv], capture_output=True,
                          text=True, timeout=timeout, input=input, check=False,
                          env={**base, **(env or {})}, cwd=cwd or REPO, **kwargs)
