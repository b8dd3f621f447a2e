"""Directories laid out as a stock hypervisor's, so that QEMU, which runs as ``libvirt-qemu``
in the lab as on Debian, reaches what a real host would let it reach.

Guest disks go in a libvirt-style images directory (``/var/lib/libvirt/images``: 0711 root, the
files 0600 root until libvirt hands them to QEMU); each test's scratch directory is 0711 under
``/var/tmp`` (QEMU may enter it, nobody may list it). A test's snaptui state (journal, locks)
stays in pytest's private tmp dir. As a non-root user (the unit tier on a laptop) both are
plain pytest tmp dirs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

IMAGES_BASE = Path("/var/lib/libvirt/images/snaptui-tests")
SCRATCH_BASE = Path("/var/tmp/snaptui-tests")
REACHABLE = 0o711


class HostDirs:
    """Per-run roots under the host-style bases; ``disks()`` / ``scratch()`` give a new
    directory for one test (or one guest factory)."""

    def __init__(self, fallback: Path) -> None:
        self.as_root = os.geteuid() == 0
        self.roots: list[Path] = []
        if self.as_root:
            self.images = self._run_root(IMAGES_BASE)
            self.scratches = self._run_root(SCRATCH_BASE)
        else:
            self.images = self.scratches = fallback

    def _run_root(self, base: Path) -> Path:
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(REACHABLE)
        root = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=base))
        root.chmod(REACHABLE)
        self.roots.append(root)
        return root

    def _new(self, root: Path, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        path.chmod(REACHABLE if self.as_root else 0o700)
        return path

    def disks(self, prefix: str = "disks-") -> Path:
        return self._new(self.images, prefix)

    def scratch(self) -> Path:
        return self._new(self.scratches, "scratch-")

    def remove(self) -> None:
        for root in self.roots:
            shutil.rmtree(root, ignore_errors=True)
