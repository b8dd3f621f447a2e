"""The names of the facts a job journals: what it made or changed, so that undo can find it.

``StrEnum``s, so the journal keeps its plain-string keys (``guest_stopped_at``,
``image:vda``) and a misspelt key is a name error, not a fact nobody ever reads.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NewType

DiskKey = NewType("DiskKey", str)  # "<kind>:<target>", made by DiskFact.of


class Fact(StrEnum):
    """A fact about the whole job."""

    GUEST_STOPPED_AT = "guest_stopped_at"  # time managedSave began (downtime starts)
    GUEST_PAUSED_BY_US = "guest_paused_by_us"  # managedSave paused the vCPUs; resume if still so
    GUEST_SAVED = "guest_saved"
    GUEST_RESUMED_AT = "guest_resumed_at"  # downtime ends
    FROZEN = "frozen"  # a freeze was asked for: thaw before leaving (recorded before the call)
    FROZEN_AT = "frozen_at"  # time the agent confirmed the freeze
    VERIFY_DOMAIN = "verify_domain"  # name of the transient domain booting the image
    BACKUP_JOB = "backup_job"  # a libvirt backup job may run


class DiskFact(StrEnum):
    """A fact about one disk of the job; the key is ``<kind>:<target>``."""

    OUTPUT = "output"  # scratch output file
    INTERNAL_SNAPSHOT = "internal_snapshot"
    DELTA = "delta"  # live: block-copy destination file
    BLOCK_JOB = "block_job"
    BACKUP_FILE = "backup_file"
    IMAGE = "image"  # id of the image record in the store
    CHECKSUM = "checksum"
    UPLOADED_SIZE = "uploaded_size"
    OUTPUT_ACTUAL = "output_actual"
    OUTPUT_APPARENT = "output_apparent"
    KEPT = "kept"  # --keep-local path
    RBD_SNAPSHOT = "rbd_snapshot"  # direct: pool/image@snaptui-<job> on the guest's disk
    RBD_CLONE = "rbd_clone"  # direct: pool/name of the clone in Glance's pool
    LOCATION = "location"  # direct: the rbd:// location Glance was given
    RBD_VERIFY_CLONE = "rbd_verify_clone"  # direct --verify: pool/name of the booted clone

    def of(self, target: str) -> DiskKey:
        return DiskKey(f"{self.value}:{target}")


FactKey = Fact | DiskKey
