"""Parse libvirt domain XML into snaptui's models (disks and Nova's instance metadata).

The XML comes from libvirt itself (``virDomainGetXMLDesc``), so the stdlib ElementTree is enough.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from snaptui.core.errors import HypervisorError
from snaptui.core.models import DiskInfo, NetworkSource, NovaMetadata

# Nova writes <nova:instance> under this namespace; the version suffix has been 1.0, 1.1 and 1.2,
# and any later one keeps the <nova:root type= uuid=> shape, so match on the prefix.
NOVA_NS_PREFIX = "http://openstack.org/xmlns/libvirt/nova/"


@dataclass(frozen=True)
class ParsedDomain:
    """What snaptui reads from a domain's XML."""

    name: str | None
    uuid: str | None
    disks: tuple[DiskInfo, ...]
    nova: NovaMetadata | None = None

    @property
    def base_image_ref(self) -> str | None:
        """Nova's root image uuid, when the domain was created by Nova from an image."""
        return self.nova.base_image_ref if self.nova else None


def _text(elem: ET.Element | None) -> str | None:
    if elem is None or elem.text is None:
        return None
    return elem.text.strip() or None


def _disk_source(disk: ET.Element, source_type: str) -> str | None:
    source = disk.find("source")
    if source is None:
        return None
    if source_type == "network":
        return source.get("name")
    if source_type == "volume":
        pool, volume = source.get("pool"), source.get("volume")
        return f"{pool}/{volume}" if pool and volume else volume
    return source.get("file") or source.get("dev") or source.get("dir") or source.get("name")


def _network_source(disk: ET.Element) -> NetworkSource | None:
    """``<source protocol=… name=…><host …/><config file=…/></source>`` and ``<auth>`` of a
    network disk (libvirt puts ``<auth>`` under the disk or, since 3.9, under the source)."""
    source = disk.find("source")
    if source is None or not source.get("protocol"):
        return None
    hosts = []
    for host in source.findall("host"):
        port = host.get("port")
        hosts.append((host.get("name") or "", int(port) if port and port.isdigit() else None))
    auth = source.find("auth")
    if auth is None:
        auth = disk.find("auth")
    secret = auth.find("secret") if auth is not None else None
    config = source.find("config")
    return NetworkSource(
        protocol=source.get("protocol", ""), name=source.get("name", ""), hosts=tuple(hosts),
        auth_user=auth.get("username") if auth is not None else None,
        secret_uuid=secret.get("uuid") if secret is not None else None,
        secret_usage=secret.get("usage") if secret is not None else None,
        config_file=config.get("file") if config is not None else None,
    )


def parse_disks(root: ET.Element) -> tuple[DiskInfo, ...]:
    """Every ``<disk>`` under ``<devices>``, in XML order."""
    disks: list[DiskInfo] = []
    for disk in root.findall("./devices/disk"):
        source_type = disk.get("type", "file")
        target = disk.find("target")
        driver = disk.find("driver")
        disks.append(DiskInfo(
            target=target.get("dev", "") if target is not None else "",
            path=_disk_source(disk, source_type),
            format=driver.get("type") if driver is not None else None,
            bus=target.get("bus") if target is not None else None,
            device=disk.get("device", "disk"),
            source_type=source_type,
            readonly=disk.find("readonly") is not None,
            network=_network_source(disk) if source_type == "network" else None,
        ))
    return tuple(disks)


def _find_nova_instance(root: ET.Element) -> ET.Element | None:
    metadata = root.find("metadata")
    if metadata is None:
        return None
    for child in metadata:
        if child.tag.startswith("{" + NOVA_NS_PREFIX) and child.tag.endswith("}instance"):
            return child
    return None


def parse_nova_metadata(root: ET.Element) -> NovaMetadata | None:
    """Nova's ``<nova:instance>`` block from ``<metadata>``, or None when absent."""
    inst = _find_nova_instance(root)
    if inst is None:
        return None
    ns = inst.tag[1:inst.tag.index("}")]

    def q(tag: str) -> str:
        return f"{{{ns}}}{tag}"

    root_el = inst.find(q("root"))
    owner = inst.find(q("owner"))
    user = owner.find(q("user")) if owner is not None else None
    project = owner.find(q("project")) if owner is not None else None
    flavor = inst.find(q("flavor"))

    def flavor_int(tag: str) -> int | None:
        value = _text(flavor.find(q(tag))) if flavor is not None else None
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    return NovaMetadata(
        namespace=ns,
        name=_text(inst.find(q("name"))),
        root_type=root_el.get("type") if root_el is not None else None,
        root_uuid=root_el.get("uuid") if root_el is not None else None,
        owner_user=_text(user),
        owner_user_id=user.get("uuid") if user is not None else None,
        owner_project=_text(project),
        owner_project_id=project.get("uuid") if project is not None else None,
        flavor=flavor.get("name") if flavor is not None else None,
        flavor_disk_gb=flavor_int("disk"),
        flavor_memory_mb=flavor_int("memory"),
        flavor_vcpus=flavor_int("vcpus"),
    )


def parse_domain_xml(xml: str) -> ParsedDomain:
    """Parse a domain XML document; raises HypervisorError when it is not valid XML."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise HypervisorError(f"cannot parse domain XML: {err}") from err
    if root.tag != "domain":
        raise HypervisorError(f"not a domain XML document (root element <{root.tag}>)")
    return ParsedDomain(
        name=_text(root.find("name")),
        uuid=_text(root.find("uuid")),
        disks=parse_disks(root),
        nova=parse_nova_metadata(root),
    )
