"""Boot an image to prove it works: a transient domain on a throwaway overlay.

The verify domain copies what makes the source domain boot (machine type, firmware, ``<os>``
with its boot order or direct kernel boot, features, memory, vCPUs) and nothing else: one disk
(a qcow2 overlay whose backing file is the image, so the image is never written), a serial
console into a file, the guest agent's channel, and no network interface. It passes when the
agent answers ``guest-ping``, or when ``--verify-console REGEX`` matches the console.

Its name is ``snaptui-verify-<job>``, so that a leftover is recognisable (``cleanup``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import libvirt

from snaptui.core.disk import qemu_img
from snaptui.core.errors import SnaptuiError
from snaptui.core.models import NetworkSource

VERIFY_PREFIX = "snaptui-verify-"
AGENT_CHANNEL = "org.qemu.guest_agent.0"
POLL_S = 1.0
CONSOLE_TAIL = 10  # console lines kept in the job log when a verification fails
ACCEL_TYPES = {"tcg": "qemu", "kvm": "kvm"}


class VerifyFailed(SnaptuiError):
    """The image did not boot far enough in time; ``console`` holds the last lines."""

    def __init__(self, reason: str, console: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.console = console


@dataclass(frozen=True)
class VerifyFiles:
    """What one verification makes in scratch (all removed afterwards)."""

    overlay: Path
    console: Path
    nvram: Path

    @classmethod
    def for_prefix(cls, prefix: Path) -> VerifyFiles:
        return cls(Path(f"{prefix}.verify.qcow2"), Path(f"{prefix}.verify-console.log"),
                   Path(f"{prefix}.verify-VARS.fd"))

    def remove(self) -> None:
        for path in (self.overlay, self.console, self.nvram):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class VerifyResult:
    method: str  # "agent" | "console"
    seconds: float  # domain start -> pass


def _source_disk(root: ET.Element, target: str | None) -> ET.Element | None:
    disks = [d for d in root.findall("./devices/disk") if d.get("device", "disk") == "disk"]
    for disk in disks:
        node = disk.find("target")
        if target is None or (node is not None and node.get("dev") == target):
            return disk
    return disks[0] if disks else None


def verify_xml(source_xml: str | None, *, name: str, files: VerifyFiles, accel: str | None,
               target: str | None = None, nvram_ready: bool = False,
               network: NetworkSource | None = None) -> str:
    """The transient domain's XML, from the source domain's (inactive) XML; without one (an
    image with no source domain), a plain BIOS ``pc`` machine under ``accel`` (default tcg).
    Its disk is the overlay in ``files``, or the RBD image ``network`` (a throwaway clone)."""
    src = ET.fromstring(source_xml) if source_xml else ET.Element("domain", type="qemu")
    dtype = ACCEL_TYPES[accel] if accel else src.get("type", "qemu")
    dom = ET.Element("domain", type=dtype)
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "description").text = "snaptui boot verification (transient)"
    memory = src.find("memory")
    mem = ET.SubElement(dom, "memory", unit=memory.get("unit", "KiB") if memory is not None
                        else "MiB")
    mem.text = memory.text if memory is not None and memory.text else "512"
    vcpu = src.find("vcpu")
    ET.SubElement(dom, "vcpu").text = vcpu.text if vcpu is not None and vcpu.text else "1"
    os_el = copy.deepcopy(src.find("os")) if src.find("os") is not None else None
    if os_el is None:
        os_el = ET.fromstring("<os><type arch='x86_64' machine='pc'>hvm</type>"
                              "<boot dev='hd'/></os>")
    nvram = os_el.find("nvram")
    if nvram is not None:  # never the source's own variable store: a copy in scratch
        if not nvram_ready and nvram.get("template") is None:
            os_el.remove(nvram)
        else:
            nvram.text = str(files.nvram)
    dom.append(os_el)
    for tag in ("features", "clock", "cpu"):
        found = src.find(tag)
        if found is not None and (tag != "cpu" or dtype == src.get("type")):
            dom.append(copy.deepcopy(found))
    for tag, value in (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                       ("on_crash", "destroy")):
        ET.SubElement(dom, tag).text = value
    devices = ET.SubElement(dom, "devices")
    emulator = src.find("./devices/emulator")
    if emulator is not None:
        devices.append(copy.deepcopy(emulator))
    source_disk = _source_disk(src, target)
    devices.append(_disk(source_disk, files.overlay) if network is None
                   else _network_disk(source_disk, network))
    for tag, extra in (("serial", "<target port='0'/>"),
                       ("console", "<target type='serial' port='0'/>")):
        el = ET.SubElement(devices, tag, type="file")
        ET.SubElement(el, "source", path=str(files.console), append="on")
        el.append(ET.fromstring(extra))
    channel = ET.SubElement(devices, "channel", type="unix")
    ET.SubElement(channel, "target", type="virtio", name=AGENT_CHANNEL)
    ET.SubElement(devices, "video").append(ET.Element("model", type="none"))
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def _disk(source: ET.Element | None, overlay: Path) -> ET.Element:
    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=str(overlay))
    return _target_and_boot(disk, source)


def _network_disk(source: ET.Element | None, network: NetworkSource) -> ET.Element:
    """An RBD disk as the source's own: the same monitors, cephx user and libvirt secret."""
    disk = ET.Element("disk", type="network", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw", cache="writeback")
    if network.auth_user:
        auth = ET.SubElement(disk, "auth", username=network.auth_user)
        secret = ET.SubElement(auth, "secret", type="ceph")
        if network.secret_uuid:
            secret.set("uuid", network.secret_uuid)
        elif network.secret_usage:
            secret.set("usage", network.secret_usage)
    src = ET.SubElement(disk, "source", protocol=network.protocol, name=network.name)
    for host, port in network.hosts:
        node = ET.SubElement(src, "host", name=host)
        if port:
            node.set("port", str(port))
    if network.config_file:
        ET.SubElement(src, "config", file=network.config_file)
    return _target_and_boot(disk, source)


def _target_and_boot(disk: ET.Element, source: ET.Element | None) -> ET.Element:
    target = source.find("target") if source is not None else None
    ET.SubElement(disk, "target", dev=target.get("dev", "vda") if target is not None else "vda",
                  bus=(target.get("bus") or "virtio") if target is not None else "virtio")
    boot = source.find("boot") if source is not None else None
    if boot is not None:  # per-device boot order (then <os> has no <boot dev=>)
        disk.append(copy.deepcopy(boot))
    return disk


async def prepare_files(image: Path, image_format: str, files: VerifyFiles,
                        source_xml: str | None) -> bool:
    """The overlay (backing: the image, read only), an empty 0600 console file, and a copy
    of the source's UEFI variable store when it has one; True when that copy was made."""
    files.remove()
    await qemu_img.create(files.overlay, "qcow2", backing_file=image.absolute(),
                          backing_format=image_format)
    return console_and_nvram(files, source_xml)


def console_and_nvram(files: VerifyFiles, source_xml: str | None) -> bool:
    """An empty 0600 console file, and a copy of the source's UEFI variable store when it has
    one; True when that copy was made."""
    os.close(os.open(files.console, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    nvram = ET.fromstring(source_xml).find("./os/nvram") if source_xml else None
    if nvram is not None and nvram.text:
        with contextlib.suppress(OSError):
            with open(nvram.text.strip(), "rb") as src:
                fd = os.open(files.nvram, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as copy_:
                    shutil.copyfileobj(src, copy_)
            return True
    return False


def console_tail(files: VerifyFiles, lines: int = CONSOLE_TAIL) -> list[str]:
    try:
        text = files.console.read_text(errors="replace")
    except OSError:
        return []
    return [line.rstrip("\r") for line in text.splitlines() if line.strip()][-lines:]


def _agent_pings(dom: libvirt.virDomain) -> bool:
    import libvirt_qemu

    try:
        libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-ping"}), 2, 0)
    except libvirt.libvirtError:
        return False
    return True


async def boot_and_wait(conn: libvirt.virConnect, xml: str, files: VerifyFiles, *,
                        console_regex: str | None, timeout: float,
                        on_progress: Callable[[float, float], None] | None = None) -> VerifyResult:
    """Start the transient domain and wait for the agent or the console; VerifyFailed when
    neither comes within ``timeout`` s (or the domain stops). The caller destroys it."""
    pattern = re.compile(console_regex) if console_regex else None
    try:
        dom = await asyncio.to_thread(conn.createXML, xml, 0)
    except libvirt.libvirtError as err:
        raise VerifyFailed(f"the verify domain did not start: {err.get_error_message()}",
                           []) from err
    t0 = time.monotonic()
    while True:
        elapsed = time.monotonic() - t0
        if _console_matches(pattern, files):
            return VerifyResult("console", round(elapsed, 2))
        if await asyncio.to_thread(_agent_pings, dom):
            # The console is read once more: a line printed before the agent started (between
            # the read above and the ping) is the operator's own proof, and the mark says so.
            method = "console" if _console_matches(pattern, files) else "agent"
            return VerifyResult(method, round(time.monotonic() - t0, 2))
        if not await asyncio.to_thread(_active, dom):
            raise VerifyFailed(f"the verify domain stopped after {elapsed:.0f} s without "
                               "booting", console_tail(files))
        if elapsed > timeout:
            what = "guest agent" + (" or console match" if pattern else "")
            raise VerifyFailed(f"verification timed out: no {what} within {timeout:.0f} s",
                               console_tail(files))
        if on_progress is not None:
            on_progress(round(elapsed, 1), timeout)
        await asyncio.sleep(POLL_S)


def _console_matches(pattern: re.Pattern[str] | None, files: VerifyFiles) -> bool:
    if pattern is None or not files.console.exists():
        return False
    return pattern.search(files.console.read_text(errors="replace")) is not None


def _active(dom: libvirt.virDomain) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError:
        return False


def destroy_domain(conn: libvirt.virConnect, name: str) -> bool:
    """Destroy the transient verify domain ``name`` if it runs (idempotent); True if it did."""
    if not name.startswith(VERIFY_PREFIX):
        raise ValueError(f"{name} is not a verify domain")
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return False
        raise
    try:
        dom.destroy()
    except libvirt.libvirtError as err:
        if err.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN,
                                        libvirt.VIR_ERR_OPERATION_INVALID):
            raise
    return True


async def verify_file(conn: libvirt.virConnect, image: Path, image_format: str, *,
                      prefix: Path, name: str, source_xml: str | None, target: str | None,
                      console_regex: str | None, timeout: float, accel: str | None,
                      on_progress: Callable[[float, float], None] | None = None
                      ) -> VerifyResult:
    """Boot ``image`` in domain ``name`` on an overlay at ``prefix``.verify.qcow2; whatever
    happens (a pass, a failure, a cancel) the domain is destroyed and the files removed."""
    files = VerifyFiles.for_prefix(prefix)
    owner = os.stat(image)
    try:
        nvram_ready = await prepare_files(image, image_format, files, source_xml)
        xml = verify_xml(source_xml, name=name, files=files, accel=accel, target=target,
                         nvram_ready=nvram_ready)
        return await boot_and_wait(conn, xml, files, console_regex=console_regex,
                                   timeout=timeout, on_progress=on_progress)
    finally:
        await asyncio.shield(asyncio.to_thread(_tear_down, conn, name, files, image, owner))


async def verify_network(conn: libvirt.virConnect, network: NetworkSource, *, prefix: Path,
                         name: str, source_xml: str | None, target: str | None,
                         console_regex: str | None, timeout: float, accel: str | None,
                         on_progress: Callable[[float, float], None] | None = None
                         ) -> VerifyResult:
    """Boot the RBD image ``network`` (a throwaway clone the caller made and removes: it is
    written to) in domain ``name``; the domain is destroyed and the console file removed
    whatever happens."""
    files = VerifyFiles.for_prefix(prefix)
    try:
        files.remove()
        nvram_ready = await asyncio.to_thread(console_and_nvram, files, source_xml)
        xml = verify_xml(source_xml, name=name, files=files, accel=accel, target=target,
                         nvram_ready=nvram_ready, network=network)
        return await boot_and_wait(conn, xml, files, console_regex=console_regex,
                                   timeout=timeout, on_progress=on_progress)
    finally:
        await asyncio.shield(asyncio.to_thread(_destroy_and_remove, conn, name, files))


def _destroy_and_remove(conn: libvirt.virConnect, name: str, files: VerifyFiles) -> None:
    destroy_domain(conn, name)
    files.remove()


def _tear_down(conn: libvirt.virConnect, name: str, files: VerifyFiles, image: Path,
               owner: os.stat_result) -> None:
    destroy_domain(conn, name)
    files.remove()
    # libvirt chowned the overlay's backing file (the image) to QEMU and, as a read-only
    # chain member, never gives it back (only the top of a chain is remembered): we do.
    with contextlib.suppress(FileNotFoundError):
        now = os.stat(image)
        if (now.st_uid, now.st_gid) != (owner.st_uid, owner.st_gid):
            os.chown(image, owner.st_uid, owner.st_gid)


def verified_properties(result: VerifyResult) -> dict[str, str]:
    """What a passed verification adds to the image."""
    return {"snaptui_verified": result.method,
            "snaptui_verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
