"""``restore IMAGE --as NEWNAME``: a new guest from an image.

Its XML is the source domain's when that still exists on this host (new name and UUID, no MAC
addresses so libvirt makes new ones, the new disk file, Nova's metadata dropped, the source's
other disks left out), else built from the image's ``hw_*`` properties, the reverse of what a
snapshot derives (core/libvirt/hardware.py). ``--overlay`` makes the disk a qcow2 overlay over a
local copy of the image.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import unicodedata
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import libvirt

from snaptui.core.disk import qemu_img
from snaptui.core.engine.context import JobContext
from snaptui.core.engine.neighbour import neighbour_fields
from snaptui.core.engine.preflight.checks import new_job_id
from snaptui.core.engine.runner import Action, Step
from snaptui.core.errors import BadInput, HypervisorError, NotFound
from snaptui.core.images.store import ImageStore
from snaptui.core.libvirt.hardware import AGENT_CHANNEL
from snaptui.core.libvirt.host import LibvirtHost, error_message
from snaptui.core.models import ImageRecord
from snaptui.core.present import size_text
from snaptui.core.restore import download
from snaptui.core.restore.plan import (
    ACTION_NEW,
    RestoreDisk,
    RestoreFact,
    RestorePlan,
    RestoreRequest,
)
from snaptui.core.restore.preflight import check_room, open_source
from snaptui.core.restore.steps import plan_of, prepare_file

DEFAULT_DIR = "/var/lib/libvirt/images"  # libvirt's default storage pool
DEFAULT_MEMORY_MIB = 1024


def _check_name(host: LibvirtHost, name: str) -> str:
    if not name.strip() or len(name) > 200 or "/" in name \
            or any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadInput(f"--as: {name!r} is not a usable domain name")
    try:
        host.lookup(name)
    except NotFound:  # the name is free
        return name
    raise BadInput(f"--as: a domain named {name!r} already exists")


def _source_xml(host: LibvirtHost, image: ImageRecord) -> str | None:
    """The inactive XML of the domain the image was taken from, when it is on this host."""
    ref = image.properties.get("instance_uuid") or image.properties.get("snaptui_domain")
    if not ref:
        return None
    try:
        dom = host.lookup(str(ref))
        return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    except Exception:  # noqa: BLE001 - gone, or never on this host: build from hw_*
        return None


def _set(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    elem = parent.find(tag)
    if elem is None:
        elem = ET.SubElement(parent, tag)
    elem.text = text
    elem.attrib.update(attrs)
    return elem


def disk_type(disk: RestoreDisk) -> str:
    """The format the domain XML names: an overlay is qcow2 whatever its base's format."""
    return "qcow2" if disk.base_path else disk.format


def from_source(xml: str, *, name: str, new_uuid: str, disk: RestoreDisk, target: str,
                memory_mib: int | None, vcpus: int | None) -> tuple[str, list[str]]:
    """The source domain's XML made into a new guest's; the notes it warrants."""
    root = ET.fromstring(xml)
    notes: list[str] = []
    _set(root, "name", name)
    _set(root, "uuid", new_uuid)
    for metadata in root.findall("metadata"):
        root.remove(metadata)  # Nova's instance metadata (it names the old instance)
    if memory_mib:
        _set(root, "memory", str(memory_mib), unit="MiB")
        _set(root, "currentMemory", str(memory_mib), unit="MiB")
    if vcpus:
        _set(root, "vcpu", str(vcpus))
    os_elem = root.find("os")
    if os_elem is not None:
        for nvram in os_elem.findall("nvram"):
            os_elem.remove(nvram)  # libvirt makes a fresh one from its template
    devices = root.find("devices")
    assert devices is not None
    for elem in list(devices):
        if elem.tag == "interface":
            for mac in elem.findall("mac"):
                elem.remove(mac)
        if elem.tag == "disk" and elem.get("device", "disk") == "disk":
            tgt = elem.find("target")
            if tgt is None or tgt.get("dev") != target:
                devices.remove(elem)
                notes.append(f"the source's disk {tgt.get('dev') if tgt is not None else '?'} "
                             "is not part of the new guest")
                continue
            driver = elem.find("driver")
            if driver is None:
                driver = ET.SubElement(elem, "driver", name="qemu")
            driver.set("type", disk_type(disk))
            source = elem.find("source")
            if source is None:
                source = ET.SubElement(elem, "source")
            source.attrib.clear()
            source.set("file", disk.path)
            elem.set("type", "file")
            for backing in elem.findall("backingStore"):
                elem.remove(backing)
        if elem.tag in ("serial", "console", "channel"):
            for src in elem.findall("source"):
                if elem.get("type") == "file" and src.get("path"):
                    log = "console" if elem.tag in ("serial", "console") else elem.tag
                    src.set("path", os.path.join(os.path.dirname(disk.path),
                                                 f"{name}-{log}.log"))
                elif elem.get("type") == "unix":
                    src.attrib.pop("path", None)  # libvirt makes one per domain
        if elem.tag == "graphics":
            elem.attrib.pop("port", None)
            elem.set("autoport", "yes")
    return ET.tostring(root, encoding="unicode"), notes


def from_properties(props: dict[str, str], *, name: str, new_uuid: str, disk: RestoreDisk,
                    memory_mib: int, vcpus: int, domain_type: str) -> str:
    """A minimal domain for the image's ``hw_*`` properties (what Nova would boot it with)."""
    bus = props.get("hw_disk_bus") or "virtio"
    machine = props.get("hw_machine_type")
    arch = props.get("architecture") or "x86_64"
    root = ET.Element("domain", type=domain_type)
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "uuid").text = new_uuid
    ET.SubElement(root, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(root, "vcpu").text = str(vcpus)
    os_elem = ET.SubElement(root, "os")
    if props.get("hw_firmware_type") == "uefi":
        os_elem.set("firmware", "efi")
    os_type = ET.SubElement(os_elem, "type", arch=arch)
    if machine:
        os_type.set("machine", machine)
    os_type.text = "hvm"
    ET.SubElement(os_elem, "boot", dev="hd")
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    devices = ET.SubElement(root, "devices")
    elem = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(elem, "driver", name="qemu", type=disk_type(disk))
    ET.SubElement(elem, "source", file=disk.path)
    ET.SubElement(elem, "target", dev=disk.target, bus=bus)
    if bus == "scsi":
        ET.SubElement(devices, "controller", type="scsi", model="virtio-scsi")
    ET.SubElement(devices, "serial", type="pty")
    if props.get("hw_qemu_guest_agent") == "yes":
        channel = ET.SubElement(devices, "channel", type="unix")
        ET.SubElement(channel, "target", type="virtio", name=AGENT_CHANNEL)
    if props.get("hw_rng_model") == "virtio":
        rng = ET.SubElement(devices, "rng", model="virtio")
        ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    return ET.tostring(root, encoding="unicode")


def _target_of(image: ImageRecord, xml: str | None) -> str:
    wanted = image.properties.get("snaptui_disk")
    if xml is None:
        return "vda" if (image.properties.get("hw_disk_bus") or "virtio") == "virtio" \
            else "sda"
    root = ET.fromstring(xml)
    targets = [t.get("dev") for t in root.findall("devices/disk[@device='disk']/target")]
    if wanted in targets:
        return str(wanted)
    if not targets or not targets[0]:
        raise BadInput("the source domain has no disk to give the new guest")
    return str(targets[0])


async def preflight_new_guest(request: RestoreRequest, host: LibvirtHost,
                              store: ImageStore | None = None, *, job_id: str | None = None,
                              ) -> tuple[RestorePlan, ImageStore]:
    """Check that a new guest can be made from the image; nothing is touched."""
    assert request.as_name
    name = _check_name(host, request.as_name)
    source, store = open_source(request, store)
    image = download.find_image(store, request.image)
    image_hash = download.check_restorable(image)
    vsize = await download.virtual_size(store, image)
    source_xml = _source_xml(host, image)
    target = _target_of(image, source_xml)
    directory = os.path.abspath(request.directory) if request.directory \
        else _directory(source_xml, target)
    if not os.path.isdir(directory):
        raise BadInput(f"--dir: {directory} is not a directory")
    fmt = str(image.disk_format)  # the download's; an overlay over it is qcow2
    path = os.path.join(directory, f"{name}-{target}.{'qcow2' if request.overlay else fmt}")
    base = os.path.join(directory, f"{name}-{target}.base.{image.disk_format}") \
        if request.overlay else None
    for taken in filter(None, (path, base)):
        if os.path.lexists(taken):
            raise BadInput(f"{taken} already exists; not overwriting it")
    check_room(directory, int(image.size or 0))
    job_id = job_id or new_job_id()
    new_uuid = str(uuid.uuid4())
    disk = RestoreDisk(target=target, path=path, format=fmt, virtual_size=0,
                       image_name=image.name, uid=os.geteuid(), gid=os.getegid(), mode=0o600,
                       base_path=base)
    notes: list[str] = []
    if source_xml is not None:
        xml, notes = from_source(source_xml, name=name, new_uuid=new_uuid, disk=disk,
                                 target=target, memory_mib=request.memory_mib,
                                 vcpus=request.vcpus)
        how = "the source domain's XML"
    else:
        xml = from_properties(image.properties, name=name, new_uuid=new_uuid, disk=disk,
                              memory_mib=request.memory_mib or DEFAULT_MEMORY_MIB,
                              vcpus=request.vcpus or 1,
                              domain_type="kvm" if os.path.exists("/dev/kvm") else "qemu")
        how = "the image's hw_* properties"
    notes.append(f"new guest {name} defined from {how}; disk {path} "
                 f"({size_text(vsize)} virtual" + (", overlay over a local copy)" if base
                                                    else ")"))
    plan = RestorePlan(
        job_id=job_id, uri=host.uri, host=socket.gethostname(), domain_name=name,
        domain_uuid=new_uuid, original_state="shut off", image_id=image.id,
        image_name=image.name, image_format=str(image.disk_format),
        image_size=int(image.size or 0), image_virtual_size=vsize, image_hash=image_hash,
        destination=source, cloud=request.cloud,
        library_dir=str(getattr(store, "directory", "") or "") or request.library_dir,
        action=ACTION_NEW, disks=[disk], start=request.start, domain_xml=xml,
        mode="restore-as", notes=notes,
        mode_reason=f"new guest {name} from image {image.name!r} ({image.id})",
        **neighbour_fields(request.priority, None))
    return plan, store


def _directory(source_xml: str | None, target: str) -> str:
    """Beside the source domain's disk when there is one, else libvirt's default pool."""
    if source_xml is not None:
        root = ET.fromstring(source_xml)
        for disk in root.findall("devices/disk"):
            tgt, src = disk.find("target"), disk.find("source")
            if tgt is not None and tgt.get("dev") == target and src is not None \
                    and src.get("file"):
                return os.path.dirname(str(src.get("file")))
    return DEFAULT_DIR


# -- steps --------------------------------------------------------------------------------

def place_disk(d: RestoreDisk) -> Action:
    """Give the new file its name (a link: never over an existing file); with an overlay, the
    copy is the base and a qcow2 overlay over it is the disk. Undo: remove them."""
    async def run(ctx: JobContext) -> None:
        partial = d.partial_path(ctx.plan.job_id)
        first = d.base_path or d.path
        await asyncio.to_thread(os.link, partial, first)
        await asyncio.to_thread(os.unlink, partial)
        ctx.forget(RestoreFact.PARTIAL.of(d.target))
        if d.base_path:
            plan = plan_of(ctx)
            await qemu_img.create(d.path, "qcow2", backing_file=d.base_path,
                                  backing_format=plan.image_format)

    async def undo(ctx: JobContext) -> None:
        for path in (d.path, d.base_path):
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    return Action(run, undo)


def define_guest() -> Action:
    """Define the new domain. Undo: undefine it (powered off first) when it is still ours."""
    async def run(ctx: JobContext) -> None:
        plan = plan_of(ctx)
        assert plan.domain_xml
        ctx.record(RestoreFact.DEFINED.key, True)
        try:
            await asyncio.to_thread(ctx.host.conn.defineXML, plan.domain_xml)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot define {plan.domain_name}: "
                                  f"{error_message(err)}") from None

    async def undo(ctx: JobContext) -> None:
        if not ctx.facts.get(RestoreFact.DEFINED.key):
            return

        def undefine() -> None:
            try:
                dom = ctx.domain()
            except Exception:  # noqa: BLE001 - not defined (any more): nothing to undo
                return
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                              | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        await asyncio.to_thread(undefine)
        ctx.forget(RestoreFact.DEFINED.key)

    return Action(run, undo)


def build_steps(plan: RestorePlan,
                new_file: Callable[[RestorePlan, RestoreDisk], list[Step]],
                start: Callable[[RestorePlan], list[Step]]) -> list[Step]:
    """Download beside where the disk goes, check it, name it, define the guest, start it."""
    steps: list[Step] = []
    for d in plan.disks:
        partial = d.partial_path(plan.job_id)
        steps += new_file(plan, d) + [
            Step(f"prepare:{d.target}", f"Check the new {d.target}", prepare_file(d),
                 target=d.target, equivalent=("qemu-img", "info", partial)),
            Step(f"place:{d.target}", f"Name the new disk {Path(d.path).name}"
                 + (" (an overlay over a local copy)" if d.base_path else ""),
                 place_disk(d), interruptible=False, destructive=True, target=d.target,
                 equivalent=("mv", partial, d.base_path or d.path)),
        ]
    steps.append(Step("define", f"Define the new guest {plan.domain_name}", define_guest(),
                      interruptible=False, destructive=True,
                      equivalent=("virsh", "define", f"{plan.domain_name}.xml")))
    return steps + start(plan)
