"""Real Linux guests for tests: cached artefacts, a factory that boots them, host-side checks.

The guests run under TCG (these hosts' nested KVM hangs real kernels), boot on their own from
a copy of the cached disk (scripts/lab_guest.py), run qemu-ga on ``org.qemu.guest_agent.0``
unless made with ``agent=False``, and append checksummed records to /data/records all the
time. A TCG guest keeps most of a core busy: the factories destroy and undefine every guest
they made as soon as their scope ends.

Use in a test module::

    from lab_guests import guest_artefacts, make_guest, module_guests  # noqa: F401
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import libvirt_qemu
import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import lab_guest  # noqa: E402
import lab_guest_check  # noqa: E402
from lab_guest_domain import USERSPACE_MARKER, GuestSpec, domain_xml, prepare_files  # noqa: E402

GUEST_PREFIX = "snaptui-test-guest-"
GUEST_RECORDS = "/data/records"
BOOT_TIMEOUT = 300.0  # TCG on a loaded 2-core host; a boot takes ~5-20 s here


@dataclass
class Guest:
    """A real guest made by a factory; ``remove()`` destroys and undefines it, drops its files."""

    conn: libvirt.virConnect
    spec: GuestSpec
    started_at: float = 0.0
    boot_seconds: float | None = None
    events: list[str] = field(default_factory=list)

    name = property(lambda self: self.spec.name)
    disk = property(lambda self: self.spec.disk)

    @property
    def dom(self) -> libvirt.virDomain:
        return self.conn.lookupByName(self.spec.name)

    def console(self) -> str:
        return self.spec.console.read_text(errors="replace")

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.dom.create()

    def wait_console(self, marker: str, timeout: float = BOOT_TIMEOUT) -> float:
        """Seconds since start() until ``marker`` appears on the serial console."""
        deadline = time.monotonic() + timeout
        while marker not in self.console():
            if not self.dom.isActive():
                raise AssertionError(f"{self.name} stopped before {marker!r}:\n"
                                     + self.console()[-2000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {marker!r} within {timeout:.0f} s:\n"
                                     + self.console()[-2000:])
            time.sleep(0.2)
        return time.monotonic() - self.started_at

    def wait_userspace(self, timeout: float = BOOT_TIMEOUT) -> float:
        self.boot_seconds = self.wait_console(USERSPACE_MARKER, timeout)
        return self.boot_seconds

    def agent(self, command: str, arguments: dict | None = None, timeout: int = 10):
        """Run a guest agent command; returns its "return" value."""
        request = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        reply = libvirt_qemu.qemuAgentCommand(self.dom, json.dumps(request), timeout, 0)
        return json.loads(reply)["return"]

    def wait_agent(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.agent("guest-ping", timeout=5)
                return
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def read_file(self, path: str) -> bytes:
        """A file's content read through the agent (guest-file-open/read/close)."""
        handle = self.agent("guest-file-open", {"path": path, "mode": "r"})
        chunks = []
        try:
            while True:
                part = self.agent("guest-file-read", {"handle": handle, "count": 1 << 20})
                chunks.append(base64.b64decode(part["buf-b64"]))
                if part["eof"] or not part["count"]:
                    break
        finally:
            self.agent("guest-file-close", {"handle": handle})
        return b"".join(chunks)

    def records(self) -> lab_guest_check.RecordsCheck:
        """The writer's records as the running guest sees them (through the agent)."""
        return lab_guest_check.check_records(self.read_file(GUEST_RECORDS))

    def shutdown(self, timeout: float = 120.0) -> None:
        """Clean power-off through the agent: the writer stops and /data is unmounted."""
        self.dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)
        deadline = time.monotonic() + timeout
        while self.dom.isActive():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not power off:\n" + self.console()[-2000:])
            time.sleep(0.2)

    def destroy(self) -> None:
        try:
            dom = self.dom
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError:
            pass

    def remove(self) -> None:
        self.destroy()
        try:
            self.dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                                   | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                   | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError:
            pass
        for path in (self.spec.disk, self.spec.console, self.spec.nvram):
            path.unlink(missing_ok=True)


class GuestFactory:
    """Defines (and by default starts) guests from the cached artefacts; removes them all."""

    def __init__(self, conn: libvirt.virConnect, workdir: Path,
                 artefacts: lab_guest.Artefacts) -> None:
        self.conn, self.workdir, self.artefacts = conn, workdir, artefacts
        self.made: list[Guest] = []

    def __call__(self, *, uefi: bool = False, agent: bool = True, start: bool = True,
                 wait: bool = True) -> Guest:
        name = GUEST_PREFIX + ("uefi-" if uefi else "") + ("" if agent else "noagent-") \
            + uuid.uuid4().hex[:8]
        spec = GuestSpec(name, self.workdir, uefi=uefi, agent=agent)
        prepare_files(spec, self.artefacts)
        guest = Guest(self.conn, spec)
        self.made.append(guest)
        self.conn.defineXML(domain_xml(spec))
        if start:
            guest.start()
            if wait:
                guest.wait_userspace()
        return guest

    def remove_all(self) -> None:
        try:
            alive = self.conn.isAlive()
        except libvirt.libvirtError:
            alive = False
        if not alive:  # libvirtd restarted meanwhile (other tests do that): the guests run on
            self.conn = libvirt.open(os.environ["LIBVIRT_DEFAULT_URI"])
        for guest in reversed(self.made):
            guest.conn = self.conn
            guest.remove()
        self.made.clear()


@pytest.fixture(scope="session")
def guest_artefacts(lab_env) -> lab_guest.Artefacts:
    """The cached guest disk; built once (minutes on a cold cache) when packages changed."""
    from lab_proc import LabError

    try:
        return lab_guest.ensure()
    except LabError as exc:
        pytest.fail(f"cannot build the lab's guest artefacts: {exc}", pytrace=False)


def _factory(host_dirs, artefacts) -> Iterator[GuestFactory]:
    conn = libvirt.open(os.environ["LIBVIRT_DEFAULT_URI"])
    factory = GuestFactory(conn, host_dirs.disks("guests-"), artefacts)
    try:
        yield factory
    finally:
        factory.remove_all()
        factory.conn.close()


@pytest.fixture
def make_guest(host_dirs, guest_artefacts) -> Iterator[GuestFactory]:
    """Factory for guests that live for one test: ``make_guest(uefi=False, agent=True)``."""
    yield from _factory(host_dirs, guest_artefacts)


@pytest.fixture(scope="module")
def module_guests(host_dirs, guest_artefacts) -> Iterator[GuestFactory]:
    """Factory for guests shared by a module's tests (boots are slow under TCG)."""
    yield from _factory(host_dirs, guest_artefacts)
