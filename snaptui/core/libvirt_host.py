"""The libvirt adapter: one connection, typed domain listings, one-line errors.

Thin on purpose: libvirt-python does the work; this module turns its results into
``DomainInfo`` and its exceptions into ``HypervisorError`` / ``NotFound`` carrying libvirt's own
message on one line.
"""

from __future__ import annotations

import os
import threading
import uuid as uuidlib
from types import TracebackType
from typing import Any

import libvirt

from snaptui.core.domain_xml import parse_domain_xml
from snaptui.core.errors import HypervisorError, NotFound
from snaptui.core.models import DomainInfo, DomainState

_STATE_MAP: dict[int, DomainState] = {
    libvirt.VIR_DOMAIN_NOSTATE: DomainState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: DomainState.BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: DomainState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: DomainState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: DomainState.PMSUSPENDED,
}

# Errors meaning "the connection to libvirtd is gone"; read-only calls reconnect once on them.
_CONNECTION_LOST = {libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_SYSTEM_ERROR}
_CONNECTION_LOST_RPC = libvirt.VIR_ERR_INTERNAL_ERROR  # "client socket is closed"

_handler_lock = threading.Lock()
_handler_installed = False


def _ignore_libvirt_error(_ctx: Any, _err: Any) -> None:
    """libvirt's default handler prints every error to stderr; we report them ourselves."""


def silence_libvirt_stderr() -> None:
    """Stop libvirt printing errors to stderr (they are raised as exceptions anyway)."""
    global _handler_installed
    with _handler_lock:
        if not _handler_installed:
            libvirt.registerErrorHandler(_ignore_libvirt_error, None)
            _handler_installed = True


def default_uri(explicit: str | None = None) -> str:
    """The URI virsh would use: explicit ``-c``, else $LIBVIRT_DEFAULT_URI, else by user."""
    if explicit:
        return explicit
    env = os.environ.get("LIBVIRT_DEFAULT_URI")
    if env:
        return env
    return "qemu:///system" if os.geteuid() == 0 else "qemu:///session"


def error_message(err: libvirt.libvirtError) -> str:
    """libvirt's own message for an error, on one line."""
    text = err.get_error_message() or str(err)
    return " ".join(str(text).split())


def connect_error(uri: str, err: libvirt.libvirtError) -> HypervisorError:
    """A one-line HypervisorError for a failed ``virConnectOpen``."""
    message = error_message(err)
    if "Failed to connect socket" in message or "No such file or directory" in message:
        return HypervisorError(f"cannot connect to {uri}: libvirtd is not running ({message})")
    if "ermission denied" in message or "authentication" in message.lower():
        return HypervisorError(f"cannot connect to {uri}: access denied ({message})")
    return HypervisorError(f"cannot connect to {uri}: {message}")


def _is_connection_lost(err: libvirt.libvirtError) -> bool:
    code = err.get_error_code()
    if code in _CONNECTION_LOST:
        return True
    return code == _CONNECTION_LOST_RPC and "socket is closed" in error_message(err)


def domain_state(dom: libvirt.virDomain, raw_state: int | None = None) -> tuple[DomainState, bool]:
    """The domain's state (SAVED when shut off with a managed save image) and has_managed_save."""
    if raw_state is None:
        raw_state = dom.state(0)[0]
    state = _STATE_MAP.get(raw_state, DomainState.NOSTATE)
    has_save = bool(dom.hasManagedSaveImage(0))
    if state is DomainState.SHUTOFF and has_save:
        state = DomainState.SAVED
    return state, has_save


class LibvirtHost:
    """A connection to one libvirt URI that lists and looks up domains as ``DomainInfo``."""

    def __init__(self, uri: str | None = None) -> None:
        self._uri = default_uri(uri)
        self._conn: libvirt.virConnect | None = None

    # -- connection -------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        """The URI this host connects to (resolved like virsh)."""
        return self._uri

    @property
    def conn(self) -> libvirt.virConnect:
        """The raw libvirt connection (opened on first use)."""
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        return self._conn

    def connect(self) -> LibvirtHost:
        """Open the connection; raises HypervisorError with libvirt's reason on one line."""
        silence_libvirt_stderr()
        if self._conn is not None:
            return self
        try:
            self._conn = libvirt.open(self._uri)
        except libvirt.libvirtError as err:
            raise connect_error(self._uri, err) from err
        return self

    def reconnect(self) -> None:
        """Drop the current connection (if any) and open a new one."""
        self._drop()
        self.connect()

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass  # already dead: nothing left to release

    def is_alive(self) -> bool:
        """True when the connection is open and libvirtd still answers."""
        if self._conn is None:
            return False
        try:
            return bool(self._conn.isAlive()) and self._conn.getLibVersion() > 0
        except libvirt.libvirtError:
            return False

    def __enter__(self) -> LibvirtHost:
        return self.connect()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- capabilities -----------------------------------------------------------------------
    @property
    def is_test_driver(self) -> bool:
        """True for libvirt's built-in ``test:///`` driver (simulated domains, no QEMU)."""
        try:
            # The driver reports its type as "TEST" (libvirt 9.0); compare case-insensitively.
            return self.conn.getType().lower() == "test"
        except libvirt.libvirtError as err:
            raise HypervisorError(f"{self._uri}: {error_message(err)}") from err

    @property
    def supports_block_copy(self) -> bool:
        """True when live block copy (virDomainBlockCopy) can work on this driver."""
        return not self.is_test_driver and hasattr(libvirt.virDomain, "blockCopy")

    @property
    def supports_backup(self) -> bool:
        """True when push-mode backup (virDomainBackupBegin) can work on this driver."""
        return not self.is_test_driver and hasattr(libvirt.virDomain, "backupBegin")

    # -- domains ----------------------------------------------------------------------------
    def _retrying(self, what: str, func: Any, *args: Any) -> Any:
        """Run a read-only call; reconnect once if libvirtd restarted under us."""
        try:
            return func(*args)
        except libvirt.libvirtError as err:
            if not _is_connection_lost(err):
                raise
        try:
            self.reconnect()
        except HypervisorError as err:
            raise HypervisorError(f"{what}: connection to libvirtd lost; {err}") from err
        return func(*args)

    def list_domains(self) -> list[DomainInfo]:
        """All domains, active and inactive, sorted by name."""
        def listing() -> list[DomainInfo]:
            infos = []
            for dom in self.conn.listAllDomains(0):
                try:
                    infos.append(_read_info(dom))
                except NotFound:
                    continue  # undefined between listing and reading it
            return infos

        try:
            infos = self._retrying("list domains", listing)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot list domains: {error_message(err)}") from err
        return sorted(infos, key=lambda d: d.name)

    def lookup(self, name_or_uuid: str) -> libvirt.virDomain:
        """The virDomain with that name or UUID; NotFound when none exists."""
        def find() -> libvirt.virDomain:
            try:
                return self.conn.lookupByName(name_or_uuid)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            if _looks_like_uuid(name_or_uuid):
                return self.conn.lookupByUUIDString(name_or_uuid)
            raise NotFound(f"no such domain: {name_or_uuid}")

        try:
            return self._retrying(f"look up {name_or_uuid}", find)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise NotFound(f"no such domain: {name_or_uuid}") from err
            raise HypervisorError(f"cannot look up {name_or_uuid}: {error_message(err)}") from err

    def get_domain(self, name_or_uuid: str) -> DomainInfo:
        """``DomainInfo`` of one domain by name or UUID; NotFound when none exists."""
        return self.domain_info(self.lookup(name_or_uuid))

    def domain_xml(self, dom: libvirt.virDomain, *, inactive: bool = False) -> str:
        """The domain's XML (live definition, or the persistent one with ``inactive``)."""
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        try:
            return dom.XMLDesc(flags)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"{_name_of(dom)}: {error_message(err)}") from err

    def domain_info(self, dom: libvirt.virDomain) -> DomainInfo:
        """Read state, sizes, disks and Nova metadata of a virDomain into ``DomainInfo``."""
        try:
            return _read_info(dom)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"{_name_of(dom)}: {error_message(err)}") from err


def _read_info(dom: libvirt.virDomain) -> DomainInfo:
    """``DomainInfo`` of dom; NotFound if it vanished, other libvirt errors propagate."""
    try:
        raw_state, max_mem_kib, _mem, vcpus, _cpu_time = dom.info()
        state, has_save = domain_state(dom, raw_state)
        persistent = bool(dom.isPersistent())
        xml = dom.XMLDesc(0)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise NotFound(f"no such domain: {_name_of(dom)}") from err
        raise
    parsed = parse_domain_xml(xml)
    return DomainInfo(
        name=dom.name(),
        uuid=dom.UUIDString(),
        state=state,
        vcpus=int(vcpus),
        memory_kib=int(max_mem_kib),
        persistent=persistent,
        disks=parsed.disks,
        has_managed_save=has_save,
        base_image_ref=parsed.base_image_ref,
    )


def _looks_like_uuid(text: str) -> bool:
    try:
        uuidlib.UUID(text)
    except ValueError:
        return False
    return True


def _name_of(dom: libvirt.virDomain) -> str:
    try:
        return str(dom.name())
    except libvirt.libvirtError:
        return "?"
