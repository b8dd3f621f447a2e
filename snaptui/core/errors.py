"""Errors that carry one clear line for the operator.

Every error raised by core code is a ``SnaptuiError``; the CLI prints ``str(err)`` on one line
and exits non-zero, never a traceback.
"""

from __future__ import annotations


class SnaptuiError(Exception):
    """Base of every error snaptui reports to the operator (one line, no traceback)."""

    exit_code: int = 1

    def __str__(self) -> str:  # keep it to one line whatever the tool printed
        text = super().__str__()
        return " ".join(text.split())


class BadInput(SnaptuiError):
    """The operator asked for something that does not exist or cannot be done."""

    exit_code = 2


class NotFound(BadInput):
    """A domain, disk, path or image that does not exist."""


class DomainBusy(BadInput):
    """Another snaptui job (or recover, or cleanup) holds the domain's lock."""


class QemuImgError(SnaptuiError):
    """qemu-img failed; the message is qemu-img's own."""

    def __init__(self, message: str, *, argv: list[str] | None = None, returncode: int = 1):
        super().__init__(message)
        self.argv = argv or []
        self.returncode = returncode


class HypervisorError(SnaptuiError):
    """libvirt refused or failed (libvirtd down, operation invalid, ...)."""


class CloudError(SnaptuiError):
    """Keystone or Glance failed: bad credentials, unreachable, or an API error."""


class ChecksumMismatch(CloudError):
    """The uploaded image's os_hash_value differs from the sha512 computed while sending it."""


class CephError(SnaptuiError):
    """Ceph (librados/librbd) refused or failed; the message names the pool and image."""
