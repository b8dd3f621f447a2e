"""Preflight of ``--stream`` / ``--no-stream``: whether the disks go from a pull-mode backup's
NBD export straight to Glance (no scratch copy), or take the copy path.

Streaming is the pull-mode form of ``backup`` mode: the plan's mode is ``backup`` and its
``stream`` is true (the image's snaptui_method is ``backup-stream``). With ``--mode auto``,
``--stream auto`` streams when it can and says why when it does not; an explicit ``--mode
backup`` keeps push mode unless ``--stream`` is given; ``--stream`` with ``--mode
cold|internal|live``, or when streaming cannot work, is a one-line error, nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from snaptui.core.engine.plan import STREAM_CHOICES, Mode, SnapshotRequest
from snaptui.core.errors import BadInput
from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.libvirt import nbd_export, qemu_access
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DomainInfo, DomainState

SOCKET_MAX = 107  # sun_path holds 108 bytes with its NUL


def qcow2_writer_unavailable() -> str | None:
    try:
        import snaptui.core.disk.qcow2_stream  # noqa: F401
    except ImportError:
        return "snaptui's qcow2 stream writer is not installed (use --format raw)"
    return None


def socket_path(scratch: Path, job_id: str) -> str:
    """The NBD socket, in the job's own directory (QEMU creates the socket: it must be able
    to write there, and nothing else of snaptui's is in it); short, as sun_path is."""
    return str(qemu_access.socket_dir(scratch, job_id) / "sock")


def stream_blocked(spec: HostSpec, host: LibvirtHost) -> str | None:
    """Why jobs on this host cannot stream at all (None: they can, given a running guest and
    Glance). An SSH host's jobs run there, on its local URI: its snaptui decides (None)."""
    return None if spec.remote else host_cannot_stream(host)


def host_cannot_stream(host: LibvirtHost) -> str | None:
    """Why this connection's guests cannot be streamed by this process (None: they can)."""
    if host.is_test_driver:
        return "the test driver has no backup API"
    return nbd_export.nbd_unavailable() or nbd_export.libvirt_unavailable(host.conn, host.uri)


def stream_refusal(request: SnapshotRequest, destination: str,
                   host_blocked: Callable[[], str | None], info: DomainInfo,
                   backup_blocked: str | None, socket: str | None) -> str | None:
    """None when these disks can be streamed, else why not (one short clause).
    ``host_blocked``: why the host cannot stream at all (asked last: it may call libvirt);
    ``socket``: the job's NBD socket, None before the job has an id (the dialog)."""
    if info.state not in (DomainState.RUNNING, DomainState.PAUSED):
        return f"streaming needs a running guest ({info.name} is {info.state})"
    if backup_blocked:
        return backup_blocked
    if destination != "glance":
        return "the local library keeps the copy path"
    if request.compress:
        return "--compress needs the copy path (qemu-img writes compressed clusters)"
    if request.keep_local:
        return "--keep-local needs a local image file (the copy path)"
    if request.verify:
        return "--verify boots the local image file (the copy path)"
    if request.out_format == "qcow2" and (why := qcow2_writer_unavailable()):
        return why
    if why := host_blocked():
        return why
    if socket is not None and len(socket.encode()) > SOCKET_MAX:
        return f"the NBD socket path {socket} is longer than a unix socket allows"
    return None


def choose_stream(request: SnapshotRequest, destination: str,
                  host_blocked: Callable[[], str | None], info: DomainInfo,
                  backup_blocked: str | None, socket: str | None) -> tuple[bool, str | None]:
    """(stream?, why not when auto did not): BadInput for ``--stream`` that cannot be."""
    if request.stream not in STREAM_CHOICES:
        raise BadInput(f"stream must be one of {', '.join(STREAM_CHOICES)}")
    if request.stream == "off":
        return False, None
    if request.mode not in (Mode.AUTO, Mode.BACKUP):
        if request.stream == "on":
            raise BadInput(f"--stream is the pull-mode form of backup mode; it cannot be "
                           f"combined with --mode {request.mode}")
        return False, None
    if request.mode == Mode.BACKUP and request.stream == "auto":
        return False, None  # an explicit --mode backup keeps push mode unless --stream
    why = stream_refusal(request, destination, host_blocked, info, backup_blocked, socket)
    if why and request.stream == "on":
        raise BadInput(f"cannot stream: {why}; nothing was changed")
    return why is None, why
