"""A running guest's disks as a point-in-time NBD export: libvirt's pull-mode backup, read with
libnbd (Debian's ``python3-libnbd``, ``import nbd``).

``virDomainBackupBegin`` with ``<domainbackup mode='pull'>`` makes QEMU serve each chosen disk
as it was at that instant on a unix socket; blocks the guest rewrites meanwhile are first copied
to a qcow2 scratch file (copy-before-write). Socket and scratch live in snaptui's 0700 scratch
dir, so the job's peak scratch is that CoW file alone. The guest is never paused.

All reads of guest data go through ``NbdDisk.read`` (one place for a bandwidth limiter).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import libvirt

from snaptui.core.errors import HypervisorError
from snaptui.core.libvirt import qemu_access

META_CONTEXT = "base:allocation"
STATUS_SPAN = 1 << 30  # bytes asked of block_status at a time (the server may answer less)
MIN_LIBVIRT = 7_002_000  # pull-mode backup over a unix socket: libvirt 7.2 (qemu >= 4.2 too)
END_TIMEOUT_S = 30.0


def nbd_unavailable() -> str | None:
    """None when libnbd's Python binding imports, else why streaming cannot be used."""
    try:
        import nbd  # noqa: F401
    except ImportError as err:
        return f"libnbd's Python binding is not installed ({err}; scripts/setup links it)"
    return None


def libvirt_unavailable(conn: libvirt.virConnect, uri: str) -> str | None:
    """None when this connection can export a disk to this process over a unix socket."""
    try:
        version = conn.getLibVersion()
    except libvirt.libvirtError as err:
        return f"libvirt did not answer: {err.get_error_message()}"
    if version < MIN_LIBVIRT:
        return f"pull-mode backup needs libvirt >= 7.2 (this is {_dotted(version)})"
    if not hasattr(libvirt.virDomain, "backupBegin"):
        return "libvirt-python has no backup API"
    scheme = uri.split(":", 1)[0]
    if "+" in scheme and not scheme.endswith("+unix"):
        return f"the NBD socket would be on the remote host of {uri}"
    return None


def _dotted(version: int) -> str:
    return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"


@dataclass(frozen=True)
class ExportPaths:
    """The socket and the per-disk CoW scratch files of one job (all in its scratch dir)."""

    socket: str
    scratch: dict[str, str]  # disk target -> CoW scratch qcow2

    def files(self) -> list[str]:
        return [self.socket, *self.scratch.values()]


def pull_backup_xml(paths: ExportPaths, all_targets: list[str]) -> str:
    """``<domainbackup mode='pull'>`` exporting the chosen disks (named by target)."""
    parts = []
    for target in all_targets:
        scratch = paths.scratch.get(target)
        if scratch is None:
            parts.append(f"<disk name={quoteattr(target)} backup='no'/>")
        else:
            parts.append(f"<disk name={quoteattr(target)} backup='yes' type='file'>"
                         f"<scratch file={quoteattr(scratch)}/></disk>")
    return (f"<domainbackup mode='pull'><server transport='unix' socket="
            f"{quoteattr(paths.socket)}/><disks>{''.join(parts)}</disks></domainbackup>")


def begin(dom: Any, paths: ExportPaths, all_targets: list[str]) -> None:
    """Start the pull-mode backup (the scratch files exist already: REUSE_EXTERNAL) and make
    the socket private (QEMU creates it 0775)."""
    try:
        dom.backupBegin(pull_backup_xml(paths, all_targets), None,
                        libvirt.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL)
    except libvirt.libvirtError as err:
        raise HypervisorError(f"backup begin (pull mode): {err.get_error_message()}") from err
    try:
        os.chmod(paths.socket, 0o600)
    except OSError as err:
        raise HypervisorError(f"NBD socket {paths.socket}: {err.strerror}") from err


def backup_running(dom: Any) -> bool:
    """True while the domain runs a backup job (pull mode has no end of its own)."""
    try:
        dom.backupGetXMLDesc(0)
    except libvirt.libvirtError as err:
        if err.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_BACKUP,
                                    libvirt.VIR_ERR_OPERATION_INVALID):
            return False
        raise HypervisorError(f"backup job: {err.get_error_message()}") from err
    return True


def end(dom: Any, timeout: float = END_TIMEOUT_S) -> None:
    """End the domain's backup job, if any, and wait until libvirt says it is gone."""
    try:
        if not dom.isActive():
            return
        if backup_running(dom):
            dom.abortJob()
    except libvirt.libvirtError as err:
        if backup_running(dom):
            raise HypervisorError(f"end of the backup job: {err.get_error_message()}") from err
    deadline = time.monotonic() + timeout
    while dom.isActive() and backup_running(dom):
        if time.monotonic() > deadline:
            raise HypervisorError("backup job still present after it was ended")
        time.sleep(0.05)


def prepare_socket_dir(dom: Any, paths: ExportPaths) -> None:
    """The socket's own directory, where QEMU (as libvirt runs it for ``dom``) may create it."""
    who = qemu_access.from_domain_xml(dom.XMLDesc(0))
    qemu_access.make_socket_dir(Path(paths.socket).parent, who)


def remove_files(paths: ExportPaths) -> None:
    """Remove the CoW scratch files, the socket and its directory (idempotent)."""
    for path in paths.files():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    directory = Path(paths.socket).parent
    if directory.name.endswith(qemu_access.SOCKET_DIR_SUFFIX):
        qemu_access.remove_socket_dir(directory)


@dataclass(frozen=True)
class Extent:
    offset: int
    length: int
    data: bool  # False: reads as zeros


class NbdDisk:
    """One exported disk, read over libnbd: its size, allocation map and data."""

    def __init__(self, socket: str | Path, export: str) -> None:
        import nbd

        self._nbd = nbd
        self.handle = nbd.NBD()
        self.bytes_read = 0
        try:
            self.handle.add_meta_context(META_CONTEXT)
            self.handle.set_export_name(export)
            self.handle.connect_unix(str(socket))
            self.size = self.handle.get_size()
        except nbd.Error as err:
            raise HypervisorError(f"NBD export {export} on {socket}: {err.string}") from err

    def extents(self) -> list[Extent]:
        """The allocation map, merged into runs of data / zeros covering the whole disk."""
        nbd = self._nbd
        if not self.handle.can_meta_context(META_CONTEXT):
            return [Extent(0, self.size, True)]
        out: list[Extent] = []
        found: list[tuple[int, int]] = []

        def status(meta: str, _off: int, entries: list[int], _err: Any) -> int:
            if meta == META_CONTEXT:
                found.extend(zip(entries[::2], entries[1::2], strict=True))
            return 0
        offset = 0
        while offset < self.size:
            found.clear()
            try:
                self.handle.block_status(min(self.size - offset, STATUS_SPAN), offset, status)
            except nbd.Error as err:
                raise HypervisorError(f"NBD block status at {offset}: {err.string}") from err
            if not found:
                raise HypervisorError(f"NBD block status at {offset}: no extent answered")
            for length, flags in found:
                length = min(length, self.size - offset)
                data = not flags & nbd.STATE_ZERO
                if out and out[-1].data == data and out[-1].offset + out[-1].length == offset:
                    out[-1] = Extent(out[-1].offset, out[-1].length + length, data)
                else:
                    out.append(Extent(offset, length, data))
                offset += length
                if offset >= self.size:
                    break
        return out

    def read(self, offset: int, length: int) -> bytes:
        """Every read of guest data passes here (a bandwidth limiter goes in this function)."""
        try:
            data = self.handle.pread(length, offset)
        except self._nbd.Error as err:
            raise HypervisorError(f"NBD read of {length} bytes at {offset}: "
                                  f"{err.string}") from err
        self.bytes_read += len(data)
        return data  # a bytearray, not copied again: the hash and the HTTP body take it as is

    def close(self) -> None:
        try:
            self.handle.shutdown()
        except self._nbd.Error:
            pass  # the server went first (backup ended, libvirtd restarted)


RAW_CHUNK = 1 << 20  # one NBD read (the upload sends it as image_store.SEND_CHUNK pieces)
ZEROS = bytes(RAW_CHUNK)


def data_bytes(extents: list[Extent]) -> int:
    return sum(e.length for e in extents if e.data)


def raw_chunks(extents: list[Extent], read: Any, chunk: int = RAW_CHUNK) -> Iterator[bytes]:
    """The whole disk in order as raw bytes: data extents read, zero extents generated."""
    for extent in extents:
        done = 0
        while done < extent.length:
            n = min(chunk, extent.length - done)
            yield read(extent.offset + done, n) if extent.data else ZEROS[:n]
            done += n
