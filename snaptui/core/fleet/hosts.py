"""The hosts snaptui works on: one (the default libvirt URI) or a fleet.

Where they come from, first match wins: ``-c URI`` given once or more on the command line (a
URI that a ``[[hosts]]`` entry names keeps that entry's name and command), else the config's
``[[hosts]]``, else the single default host. A host's name is what the Host column shows and
what ``HOST:DOMAIN`` names; a host reached over SSH (``qemu+ssh://``) runs its disk jobs
through snaptui on that host (core/fleet/ssh.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from snaptui.core.errors import BadInput
from snaptui.core.settings import HostEntry, Settings, valid_host_name

LOCAL_NAME = "local"
DEFAULT_REMOTE_COMMAND = ("snaptui",)


@dataclass(frozen=True)
class HostSpec:
    """One hypervisor: its name, libvirt URI (None = libvirt's default) and, for an SSH host,
    the snaptui command to run there."""

    name: str
    uri: str | None = None
    snaptui: tuple[str, ...] = DEFAULT_REMOTE_COMMAND

    @property
    def transport(self) -> str:
        """The URI scheme's transport: "ssh" for qemu+ssh://, "" for a local URI."""
        return uri_transport(self.uri)

    @property
    def remote(self) -> bool:
        """Jobs on this host run through snaptui over SSH (its disks are not ours)."""
        return self.transport == "ssh"

    @property
    def ssh(self) -> SshTarget | None:
        return ssh_target(self.uri) if self.remote and self.uri else None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "uri": self.uri, "remote": self.remote}


LOCAL_TRANSPORTS = ("", "unix")


def uri_transport(uri: str | None) -> str:
    """A libvirt URI's transport: "ssh" for qemu+ssh://, "" for qemu:///system."""
    return urlsplit(uri).scheme.partition("+")[2] if uri else ""


def refuse_remote_disks(uri: str | None) -> None:
    """BadInput (one line, exit 2) for a libvirt URI that reaches another host other than by
    ``qemu+ssh://`` (qemu+tls, qemu+tcp, qemu+libssh2, qemu://HOST ...): libvirt would act on
    the remote guest while snaptui read and wrote files at the same paths here. A qemu+ssh
    host runs its disk jobs through snaptui over SSH, never through this process."""
    if not uri:
        return
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2]
    if transport in LOCAL_TRANSPORTS and not parts.netloc:
        return
    if transport == "ssh":
        return  # routed to snaptui on that host by the callers
    raise BadInput(f"{uri}: snapshots and cleanup reach another host's disks only through "
                   f"snaptui over SSH (qemu+ssh://); {transport or 'tls'} is not supported")


@dataclass(frozen=True)
class SshTarget:
    """What a ``qemu+ssh://`` URI says about the SSH connection (libvirt's remote URI params)."""

    hostname: str
    user: str | None = None
    port: int | None = None
    keyfile: str | None = None
    known_hosts: str | None = None
    no_verify: bool = False


def ssh_target(uri: str) -> SshTarget:
    parts = urlsplit(uri)
    if not parts.hostname:
        raise BadInput(f"{uri}: a qemu+ssh URI needs a host name")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"{uri}: bad port") from None
    return SshTarget(hostname=parts.hostname, user=parts.username, port=port,
                     keyfile=query.get("keyfile"), known_hosts=query.get("known_hosts"),
                     no_verify=query.get("no_verify", "0") not in ("", "0"))


def name_from_uri(uri: str | None) -> str:
    """A short name for a URI: its host (with a non-default port), or "local"."""
    if not uri:
        return LOCAL_NAME
    parts = urlsplit(uri)
    if not parts.hostname:
        return LOCAL_NAME
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname}-{port}" if port and port != 22 else parts.hostname


def _spec(entry: HostEntry) -> HostSpec:
    return HostSpec(name=entry.name, uri=entry.uri,
                    snaptui=entry.snaptui or DEFAULT_REMOTE_COMMAND)


def resolve_hosts(uris: Sequence[str] | None, settings: Settings | None = None
                  ) -> list[HostSpec]:
    """The hosts of this run: ``-c`` URIs (in order, duplicates once), else ``[[hosts]]``,
    else the default host."""
    entries = settings.hosts if settings else ()
    if not uris:
        if entries:
            return [_spec(e) for e in entries]
        return [HostSpec(name=LOCAL_NAME, uri=None)]
    by_uri = {e.uri: e for e in entries}
    hosts: list[HostSpec] = []
    for uri in dict.fromkeys(uris):
        entry = by_uri.get(uri)
        hosts.append(_spec(entry) if entry else HostSpec(name=name_from_uri(uri), uri=uri))
    return _unique_names(hosts)


def _unique_names(hosts: list[HostSpec]) -> list[HostSpec]:
    """Two URIs that derive the same name (qemu:///system and qemu:///session) get -2, -3."""
    seen: dict[str, int] = {}
    out = []
    for host in hosts:
        n = seen[host.name] = seen.get(host.name, 0) + 1
        out.append(host if n == 1 else HostSpec(f"{host.name}-{n}", host.uri, host.snaptui))
    return out


def split_host(text: str, hosts: Sequence[HostSpec]) -> tuple[HostSpec | None, str]:
    """``HOST:REST`` → (that host, REST) when HOST names one of ``hosts``; else (None, text).

    Only a known host name is taken, so ``DOMAIN:vda`` (``snaptui info``) keeps its meaning.
    """
    head, sep, rest = text.partition(":")
    if sep and valid_host_name(head):
        for host in hosts:
            if host.name == head:
                if not rest:
                    raise BadInput(f"{text!r}: a domain name must follow '{head}:'")
                return host, rest
    return None, text


def pick_host(text: str, hosts: Sequence[HostSpec]) -> tuple[HostSpec, str]:
    """The host a ``[HOST:]DOMAIN`` argument is on: the named one, else the only one.

    With several hosts and no ``HOST:`` the domain must be named with its host (one line).
    """
    host, rest = split_host(text, hosts)
    if host is not None:
        return host, rest
    if len(hosts) == 1:
        return hosts[0], text
    names = ", ".join(h.name for h in hosts)
    raise BadInput(f"{text!r}: several hosts ({names}); name the domain as HOST:{text}")


def host_local_uri(host: HostSpec) -> str:
    """The URI of ``host``'s libvirtd as seen on the host (qemu+ssh://h/system → qemu:///system)."""
    parts = urlsplit(host.uri or "")
    driver = parts.scheme.partition("+")[0] or "qemu"
    return f"{driver}://{parts.path or '/system'}"
