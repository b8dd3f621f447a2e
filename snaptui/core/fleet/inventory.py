"""The fleet's inventory: one libvirt connection per host, domains from all of them.

Each host is listed on its own thread, so a slow or down host never delays the others; a host
that fails is *down* with libvirt's one-line reason (connection refused, SSH refused, ...) and
the others keep working. Nothing is retried in a loop: the next listing (the dashboard's next
refresh) connects again, so a host that comes back is up again.

Domains carry their host's name (``DomainInfo.host``); the same uuid can be on two hosts (a
migrated guest, or two URIs reaching one libvirtd), so a domain is keyed by ``domain_key``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

from snaptui.core.errors import HypervisorError, NotFound
from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.libvirt.host import LibvirtHost
from snaptui.core.models import DomainInfo

Connect = Callable[[HostSpec], LibvirtHost]


def domain_key(host: str, uuid: str) -> str:
    """The key of a domain in the fleet: ``HOST:UUID`` (host names never contain ':')."""
    return f"{host}:{uuid}"


def key_of(info: DomainInfo) -> str:
    return domain_key(info.host, info.uuid)


def split_key(key: str) -> tuple[str, str]:
    """``HOST:UUID`` → (host, uuid)."""
    host, _, uuid = key.partition(":")
    return host, uuid


@dataclass(frozen=True)
class HostStatus:
    """What the last listing of a host said: up (``error`` None) or down with the reason."""

    name: str
    uri: str
    error: str | None = None
    listed: bool = False  # False until the first listing has finished

    @property
    def up(self) -> bool:
        return self.listed and self.error is None

    @property
    def reason(self) -> str | None:
        """libvirt's reason alone: what precedes "cannot connect to URI: " (also after a lost
        connection's "list domains: connection to libvirtd lost; ") the host's name says."""
        if self.error is None:
            return None
        _, found, reason = self.error.partition(f"cannot connect to {self.uri}: ")
        return reason if found and reason else self.error

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "uri": self.uri, "up": self.up, "error": self.error}


@dataclass(frozen=True)
class HostListing:
    """One host's domains (each with ``host`` set), or none and the error when it is down."""

    status: HostStatus
    domains: tuple[DomainInfo, ...] = ()


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class FleetHost:
    """One host of the fleet: its spec, its libvirt connection and its last status.

    ``list_domains`` may be called from many threads: while one lists, the others return None
    at once and the one listing lists again when it is done (a refresh asked for during a slow
    listing is not lost, and a host that hangs does not gather a thread per refresh).
    """

    def __init__(self, spec: HostSpec, libvirt: LibvirtHost) -> None:
        self.spec = spec
        self.libvirt = libvirt
        self._lock = threading.Lock()
        self._busy = False
        self._again = False
        self.status = HostStatus(spec.name, libvirt.uri)

    @property
    def name(self) -> str:
        return self.spec.name

    def list_domains(self) -> HostListing | None:
        """This host's domains now (connecting if needed); None when another thread is
        already listing it (that thread lists once more and returns the newer listing)."""
        with self._lock:
            if self._busy:
                self._again = True
                return None
            self._busy = True
        try:
            while True:
                with self._lock:
                    self._again = False
                listing = self.list_now()
                with self._lock:
                    if not self._again:
                        return listing
        finally:
            with self._lock:
                self._busy = False

    def list_now(self) -> HostListing:
        """List this host now, whoever else is listing it."""
        try:
            found = self.libvirt.list_domains()
        except HypervisorError as err:
            self.status = HostStatus(self.name, self.libvirt.uri, one_line(err), listed=True)
            return HostListing(self.status)
        self.status = HostStatus(self.name, self.libvirt.uri, None, listed=True)
        return HostListing(self.status, tuple(replace(d, host=self.name) for d in found))

    def get_domain(self, name_or_uuid: str) -> DomainInfo:
        """One domain of this host (NotFound when it is gone), with ``host`` set."""
        return replace(self.libvirt.get_domain(name_or_uuid), host=self.name)

    def close(self) -> None:
        self.libvirt.close()


class Fleet:
    """The hosts of this run, each with its own connection (opened lazily, by its thread)."""

    def __init__(self, specs: Sequence[HostSpec], connect: Connect | None = None) -> None:
        if not specs:
            raise ValueError("a fleet needs at least one host")
        connect = connect or (lambda spec: LibvirtHost(spec.uri))
        self.hosts = [FleetHost(spec, connect(spec)) for spec in specs]
        self._by_name = {h.name: h for h in self.hosts}

    @classmethod
    def of(cls, hosts: Sequence[tuple[HostSpec, LibvirtHost]]) -> Fleet:
        """A fleet over connections that already exist (the first is the local host)."""
        conns = dict((spec.name, conn) for spec, conn in hosts)
        return cls([spec for spec, _ in hosts], lambda spec: conns[spec.name])

    def __getitem__(self, name: str) -> FleetHost:
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFound(f"no such host: {name}") from None

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def first(self) -> FleetHost:
        """The first host named (the default for what is not yet fleet-aware)."""
        return self.hosts[0]

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def statuses(self) -> list[HostStatus]:
        return [h.status for h in self.hosts]

    def iter_listings(self, timeout: float | None = None) -> Iterator[HostListing]:
        """Each host's listing as soon as it is in, all hosts at once on their own threads.

        A host that has not answered after ``timeout`` seconds is reported down (its thread
        is left to finish on its own: libvirt calls cannot be interrupted).
        """
        pool = ThreadPoolExecutor(max_workers=len(self.hosts), thread_name_prefix="fleet-list")
        pending: dict[Future[HostListing], FleetHost] = {
            pool.submit(host.list_now): host for host in self.hosts}
        try:
            while pending:
                done, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
                if not done:
                    for host in pending.values():
                        error = f"no answer from {host.libvirt.uri} within {timeout:g} s"
                        yield HostListing(HostStatus(host.name, host.libvirt.uri, error, True))
                    return
                for future in done:
                    pending.pop(future)
                    yield future.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def list_all(self, timeout: float | None = None) -> list[HostListing]:
        """Every host's listing, in the fleet's order."""
        found = {listing.status.name: listing for listing in self.iter_listings(timeout)}
        return [found[name] for name in self.names if name in found]

    def close(self) -> None:
        for host in self.hosts:
            host.close()
