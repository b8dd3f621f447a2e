"""The properties and Glance fields of a snapshot image: what Nova would have put there, plus
what the domain XML proves, plus what the operator adds.

Lowest to highest precedence: derived from the XML (``domain_hardware``) < inherited from the
base image (Nova's rules) < the operator's ``--property`` < the snapshot's own bookkeeping
(``image_type``, ``instance_uuid``, ``owner_id``..., and ``snaptui_*``).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from snaptui.core.errors import BadInput
from snaptui.core.images.store import VISIBILITIES, ImageSettings
from snaptui.core.libvirt.hardware import DomainHardware
from snaptui.core.models import NovaMetadata

GIB = 1024 ** 3
# Glance keeps min_disk and min_ram in a 32-bit signed integer column.
MAX_GLANCE_INT = (1 << 31) - 1

# Never inherited by a snapshot, from Nova's own source:
# - nova/compute/utils.py NON_INHERITABLE_IMAGE_PROPERTIES ("absolutely non-inheritable",
#   whatever the configuration says);
NOVA_ABSOLUTELY_NON_INHERITABLE = frozenset({
    "cinder_encryption_key_id", "cinder_encryption_key_deletion_policy",
    "img_signature", "img_signature_hash_method", "img_signature_key_type",
    "img_signature_certificate_uuid",
})
# - nova/conf/compute.py [DEFAULT]non_inheritable_image_properties, its default value;
NOVA_CONF_NON_INHERITABLE = frozenset({
    "cache_in_nova", "bittorrent", "img_signature_hash_method", "img_signature",
    "img_signature_key_type", "img_signature_certificate_uuid",
})
# - nova/utils.py SM_SKIP_KEYS: never copied into the instance's system metadata, so never
#   inherited either.
NOVA_SM_SKIP_KEYS = frozenset({
    "mappings", "block_device_mapping", "img_mappings", "img_block_device_mapping",
})
NON_INHERITABLE = NOVA_ABSOLUTELY_NON_INHERITABLE | NOVA_CONF_NON_INHERITABLE | NOVA_SM_SKIP_KEYS
# Glance's reserved namespace (glance/api/common.py GLANCE_RESERVED_NS): Glance sets these
# itself (os_glance_import_task...) and refuses them in a request.
GLANCE_RESERVED_PREFIX = "os_glance"
# openstacksdk's record of the *base* image's bytes (its md5/sha256): false on a snapshot.
SDK_DATA_PREFIX = "owner_specified.openstack."

# Keys the snapshot itself writes (nova/compute/utils.py create_image and
# initialize_instance_snapshot_metadata, nova/virt/libvirt/driver.py _create_snapshot_metadata):
# a base image that is itself a snapshot has them too, and they are replaced, never inherited.
NOVA_SNAPSHOT_KEYS = frozenset({
    "image_type", "instance_uuid", "user_id", "base_image_ref", "image_location",
    "image_state", "owner_id", "instance_owner",
})
SNAPTUI_PREFIX = "snaptui_"

# Glance's own fields (glance/api/v2/images.py RequestDeserializer: _disallowed_properties,
# _readonly_properties, _reserved_properties, _base_properties): not properties at all.
GLANCE_FIELDS = frozenset({
    "direct_url", "self", "file", "schema", "stores",
    "created_at", "updated_at", "status", "checksum", "size", "virtual_size", "id",
    "os_hash_algo", "os_hash_value", "location", "deleted", "deleted_at",
    "container_format", "disk_format", "min_disk", "min_ram", "name", "tags", "owner",
    "visibility", "protected", "os_hidden", "locations",
})
# Operator flags for the Glance fields a --property cannot set.
FIELD_FLAGS = {"min_disk": "--min-disk", "min_ram": "--min-ram", "visibility": "--visibility",
               "protected": "--protected", "tags": "--tag", "name": "--name"}
MAX_KEY, MAX_VALUE, MAX_TAG = 255, 65535, 255


@dataclass(frozen=True)
class BaseImage:
    """The image a domain was booted from, as Glance describes it."""

    id: str
    properties: dict[str, str]
    min_ram: int = 0
    min_disk: int = 0

    @classmethod
    def from_glance(cls, raw: dict[str, Any], standard: Iterable[str]) -> BaseImage:
        """From Glance's answer for the image: its own fields apart, the rest properties."""
        std = set(standard)
        return cls(id=str(raw.get("id")),
                   properties={k: str(v) for k, v in raw.items() if k not in std},
                   min_ram=int(raw.get("min_ram") or 0), min_disk=int(raw.get("min_disk") or 0))


@dataclass(frozen=True)
class OperatorMetadata:
    """What the operator asked for on the command line or in the dialog."""

    properties: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    visibility: str | None = None
    protected: bool = False
    min_disk: int | None = None
    min_ram: int | None = None


def inheritable(properties: dict[str, str]) -> dict[str, str]:
    """The base image's properties a snapshot inherits, by Nova's rules (see the lists)."""
    return {k: v for k, v in properties.items()
            if k not in NON_INHERITABLE and k not in NOVA_SNAPSHOT_KEYS
            and not k.startswith((GLANCE_RESERVED_PREFIX, SNAPTUI_PREFIX, SDK_DATA_PREFIX))}


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _wide(text: str) -> bool:
    return any(ord(ch) > 0xFFFF for ch in text)


def validate_operator_key(key: str, *, glance: bool) -> None:
    """BadInput (one line) unless ``key`` is a property an operator may set."""
    if not key or not key.strip():
        raise BadInput("--property: the key is empty (use KEY=VALUE)")
    if len(key) > MAX_KEY:
        raise BadInput(f"--property: key {key[:40]!r}... is {len(key)} characters long; "
                       f"Glance allows {MAX_KEY}")
    if _has_control(key):
        raise BadInput(f"--property: key {key!r} contains control characters")
    if key in GLANCE_FIELDS:
        flag = FIELD_FLAGS.get(key)
        hint = f"; use {flag}" if flag else ""
        raise BadInput(f"--property: {key!r} is a field Glance reserves, not a property{hint}")
    if key.startswith(GLANCE_RESERVED_PREFIX):
        raise BadInput(f"--property: {key!r} is in Glance's reserved os_glance namespace")
    if key.startswith(SNAPTUI_PREFIX) or key in NOVA_SNAPSHOT_KEYS:
        raise BadInput(f"--property: snaptui sets {key!r} itself")
    if glance and _wide(key):
        raise BadInput(f"--property: key {key!r} has characters Glance refuses (4-byte UTF-8)")


def parse_properties(items: Iterable[str], *, glance: bool = True) -> dict[str, str]:
    """``KEY=VALUE`` strings (any UTF-8; the first ``=`` splits) into a checked dict."""
    props: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"--property {item!r}: expected KEY=VALUE")
        validate_operator_key(key, glance=glance)
        if len(value) > MAX_VALUE:
            raise BadInput(f"--property {key}: the value is longer than {MAX_VALUE} characters")
        if _has_control(value.replace("\n", "").replace("\t", "")):
            raise BadInput(f"--property {key}: the value contains control characters")
        if glance and _wide(value):
            raise BadInput(f"--property {key}: the value has characters Glance refuses "
                           "(4-byte UTF-8)")
        props[key] = value
    return props


def validate_operator(meta: OperatorMetadata, *, glance: bool) -> None:
    """Check what ``parse_properties`` did not: keys given as a dict, tags, numbers."""
    for key, value in meta.properties.items():
        parse_properties([f"{key}={value}"], glance=glance)
    for tag in meta.tags:
        if not tag.strip() or len(tag) > MAX_TAG or _has_control(tag) or "/" in tag:
            raise BadInput(f"--tag {tag[:40]!r}: a tag is 1 to {MAX_TAG} characters, "
                           "no control characters or '/'")
        if glance and _wide(tag):
            raise BadInput(f"--tag {tag!r}: has characters Glance refuses (4-byte UTF-8)")
    if meta.visibility is not None and meta.visibility not in VISIBILITIES:
        raise BadInput(f"--visibility {meta.visibility!r}: one of {', '.join(VISIBILITIES)}")
    for flag, number in (("--min-disk", meta.min_disk), ("--min-ram", meta.min_ram)):
        if number is not None and not 0 <= number <= MAX_GLANCE_INT:
            raise BadInput(f"{flag} must be 0 or more and at most {MAX_GLANCE_INT} (what "
                           f"Glance stores), not {str(number)[:40]}")


def min_disk_gib(virtual_size: int, base: BaseImage | None, flavor_root_gb: int | None,
                 operator: int | None = None) -> int:
    """Nova's rule (nova/utils.py get_image_from_system_metadata + the flavor's root disk):
    the largest of the base image's min_disk, the flavor's root disk and the virtual size in
    GiB rounded up; an operator's --min-disk wins but may not be below the virtual size."""
    virtual_gib = math.ceil(virtual_size / GIB)
    if operator is not None:
        if operator < virtual_gib:
            raise BadInput(f"--min-disk {operator}: the disk is {virtual_gib} GiB; an image "
                           "cannot boot on a smaller root disk")
        return operator
    return max(base.min_disk if base else 0, flavor_root_gb or 0, virtual_gib)


def image_settings(*, nova: NovaMetadata | None, caller_project: str | None,
                   base: BaseImage | None, operator: OperatorMetadata,
                   min_disk: int) -> ImageSettings:
    """Visibility and members as Nova's initialize_instance_snapshot_metadata sets them:
    private when the caller is in the instance's project, else shared with that project."""
    project = nova.owner_project_id if nova else None
    other = bool(project and caller_project and project != caller_project)
    visibility = operator.visibility or ("shared" if other else "private")
    members = (project,) if other and visibility == "shared" and project else ()
    min_ram = operator.min_ram if operator.min_ram is not None else (base.min_ram if base else 0)
    return ImageSettings(visibility=visibility, protected=operator.protected,
                         min_disk=min_disk, min_ram=min_ram, tags=tuple(operator.tags),
                         members=members)


def snapshot_properties(*, target: str, hardware: DomainHardware | None,
                        base: BaseImage | None, base_image_ref: str | None,
                        nova: NovaMetadata | None, operator: OperatorMetadata,
                        caller_project: str | None, caller_user: str | None,
                        instance_uuid: str) -> dict[str, str]:
    """Every property of the image of disk ``target`` known before the job runs (the
    snaptui_* bookkeeping of the run itself is added by the upload step)."""
    props: dict[str, str] = dict(hardware.properties(target)) if hardware else {}
    if base is not None:
        props.update(inheritable(base.properties))
    props.update(operator.properties)
    props.update({"image_type": "snapshot", "instance_uuid": instance_uuid,
                  "image_location": "snapshot", "image_state": "available"})
    owner = (nova.owner_project_id if nova else None) or caller_project
    if owner:
        props["owner_id"] = owner
    if caller_user:
        props["user_id"] = caller_user
    if base_image_ref:
        props["base_image_ref"] = base_image_ref
    if nova and nova.owner_project_id and caller_project \
            and nova.owner_project_id != caller_project:
        props["instance_owner"] = nova.owner_project_id
    return props


def origin_of(key: str, props: dict[str, str], *, hardware: DomainHardware | None,
              target: str, base: BaseImage | None, operator: OperatorMetadata) -> str:
    """Where the final value of ``key`` came from, for --dry-run: operator, base, xml, nova."""
    if key.startswith(SNAPTUI_PREFIX) or key in NOVA_SNAPSHOT_KEYS:
        return "snapshot"
    if key in operator.properties:
        return "operator"
    if base is not None and key in inheritable(base.properties):
        return "base image"
    if hardware is not None and key in hardware.properties(target):
        return "domain XML"
    return "?"
