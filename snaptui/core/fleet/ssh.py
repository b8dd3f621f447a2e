"""Run snaptui on another host over SSH: argv quoting, the ssh command line, JSON event streams.

Everything that touches a remote host's disks runs as ``snaptui … --json`` on that host
(DESIGN.md, "A fleet is many hosts"). Three rules:

- ``ssh`` runs from an argv list, never a local shell. The remote side's login shell gets one
  command string, built by ``remote_command`` alone (every word ``shlex.quote``d), so a domain
  or image name with spaces, quotes, ``$()``, ``;`` or newlines arrives as the same argv.
- The ssh options come from the host's ``qemu+ssh://`` URI (user, port, keyfile, known_hosts,
  no_verify), as libvirt's own remote driver would use them; BatchMode (never a password
  prompt), keepalives, a connect timeout.
- Failures become one line naming the host: SSH refused or unreachable (ssh exits 255), snaptui
  missing there (127/126), snaptui there too old for this protocol, or the remote's own error.

A secret (the operator's Keystone login) is written to the remote process's stdin only
(``stdin_line``), never argv or the environment: see core/fleet/remote_jobs.py.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import IO, Any

from snaptui.core.errors import SnaptuiError
from snaptui.core.fleet.hosts import HostSpec

log = logging.getLogger(__name__)

PROTOCOL = 1  # bumped when the remote commands or their JSON change incompatibly
SSH = "ssh"
CONNECT_TIMEOUT_S = 10
ALIVE_INTERVAL_S = 15
EXIT_SSH = 255
NOT_FOUND_EXITS = (126, 127)
OLD_SNAPTUI_SIGNS = ("invalid choice", "unrecognized arguments", "no such option")
TOO_OLD_HERE = "speaks remote protocol"
# The largest answer read from a host (a pretty-printed jobs list of thousands of jobs is a few
# MiB); past it the call fails in one line instead of growing this process without end.
MAX_ANSWER = 16 << 20
READ_PIECE = 1 << 20  # stdout is read at most this much at a time, a line or not
NOISE_KEPT = 1000  # of a line that is not JSON (a motd, a warning), this much is kept


class RemoteError(SnaptuiError):
    """A remote command failed; the message names the host."""


class SshUnreachable(RemoteError):
    """ssh could not connect or log in (exit 255 before any output)."""


class SshLost(RemoteError):
    """The SSH connection ended while a command was running (a remote job goes on)."""


class RemoteTooOld(RemoteError):
    """snaptui on the host does not know this command or option."""


def remote_command(argv: Sequence[str]) -> str:
    """The one string the remote login shell runs to execute exactly ``argv``."""
    if not argv:
        raise ValueError("empty remote command")
    return " ".join(shlex.quote(str(word)) for word in argv)


def ssh_options(host: HostSpec) -> list[str]:
    """ssh's options for ``host`` (from its qemu+ssh URI), without the destination."""
    target = host.ssh
    if target is None:
        raise SnaptuiError(f"{host.name}: not an SSH host ({host.uri or 'local'})")
    opts = ["-T", "-x", "-a",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            "-o", f"ServerAliveInterval={ALIVE_INTERVAL_S}",
            "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR"]
    if target.port:
        opts += ["-p", str(target.port)]
    if target.user:
        opts += ["-l", target.user]
    if target.keyfile:
        opts += ["-i", target.keyfile]
    if target.known_hosts:
        opts += ["-o", f"UserKnownHostsFile={target.known_hosts}"]
    if target.no_verify:
        opts += ["-o", "StrictHostKeyChecking=no"]
        if not target.known_hosts:  # accept any key, remember none
            opts += ["-o", "UserKnownHostsFile=/dev/null"]
    return opts


_WARNED_UNVERIFIED: set[str] = set()


def warn_if_unverified(host: HostSpec) -> None:
    """Say once per host that a login is about to go to a host whose key SSH does not check
    (``no_verify=1`` in its URI): whoever answers on that address would get the token."""
    target = host.ssh
    if target is None or not target.no_verify or host.name in _WARNED_UNVERIFIED:
        return
    _WARNED_UNVERIFIED.add(host.name)
    log.warning("%s: its URI has no_verify=1, so SSH does not check the host's key and your "
                "Keystone token goes to whoever answers; add the key to known_hosts and drop "
                "no_verify", host.name)


def ssh_argv(host: HostSpec, remote_argv: Sequence[str]) -> list[str]:
    """The local argv that runs ``remote_argv`` on ``host`` (no shell on our side)."""
    target = host.ssh
    assert target is not None  # ssh_options raised otherwise
    return [SSH, *ssh_options(host), "--", target.hostname, remote_command(remote_argv)]


def snaptui_argv(host: HostSpec, args: Sequence[str]) -> list[str]:
    """The remote argv of ``snaptui ARGS`` on ``host`` (its configured command), telling it the
    protocol this side needs (an older snaptui refuses the option or the number: RemoteTooOld)."""
    return [*host.snaptui, "--remote-protocol", str(PROTOCOL), *args]


def too_old_here(wanted: int) -> str:
    """What an older snaptui answers ``--remote-protocol N`` with (one line)."""
    from snaptui import __version__

    return (f"this snaptui {__version__} {TOO_OLD_HERE} {PROTOCOL}, the caller needs {wanted}")


def _last_line(lines: Sequence[str]) -> str:
    for text in reversed(lines):
        if text.strip():
            return " ".join(text.split())
    return ""


def _drain(stream: IO[str], keep: deque[str]) -> None:
    while text := stream.readline(READ_PIECE):  # bounded: a huge line comes in pieces
        keep.append(text[:NOISE_KEPT])


def _failure(host: HostSpec, returncode: int, stderr: Sequence[str], got_output: bool
             ) -> RemoteError | None:
    """The one-line error for a finished remote command, or None when it is not one."""
    last = _last_line(stderr)
    if returncode < 0:
        return SshLost(f"{host.name}: SSH connection lost (ssh killed by signal {-returncode})")
    if returncode == EXIT_SSH:
        if got_output:
            return SshLost(f"{host.name}: SSH connection lost: {last or 'no reason given'}")
        return SshUnreachable(f"{host.name}: cannot reach over SSH: "
                              f"{last or 'ssh exited 255'}")
    if returncode in NOT_FOUND_EXITS:
        command = " ".join(host.snaptui)
        return RemoteError(f"{host.name}: snaptui is not installed ({command!r}: {last}); "
                           f"install it on {host.name}, or set snaptui = \"/path\" in its "
                           "[[hosts]] entry")
    if returncode == 2 and (TOO_OLD_HERE in last or any(s in last for s in OLD_SNAPTUI_SIGNS)):
        return RemoteTooOld(f"{host.name}: snaptui there is too old for this one (remote "
                            f"protocol {PROTOCOL} needed); install this snaptui version on "
                            f"{host.name} ({last})")
    if returncode != 0 and not got_output:
        message = last.removeprefix("snaptui: error: ").removeprefix("snaptui: ")
        return RemoteError(f"{host.name}: {message or f'remote snaptui exited {returncode}'}")
    return None


class RemoteCall:
    """``snaptui ARGS`` running on ``host``: iterate for its JSON lines (dicts), then
    ``returncode``. Failures of the transport (see ``_failure``) raise when the stream ends.

    ``stdin_line`` is written as the first line of the remote's stdin, then stdin is closed
    (a secret goes only this way). ``close`` ends the local ssh (the remote job goes on)."""

    def __init__(self, host: HostSpec, args: Sequence[str], *,
                 stdin_line: str | None = None) -> None:
        self.host = host
        if stdin_line is not None:
            warn_if_unverified(host)
        self.argv = ssh_argv(host, snaptui_argv(host, args))
        self.returncode: int | None = None
        self.not_objects = 0  # items of the answer that were no JSON object (dropped)
        self._stderr: deque[str] = deque(maxlen=20)
        self.proc = subprocess.Popen(  # noqa: S603 - an argv list, no shell
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self._err_thread = threading.Thread(target=_drain, args=(self.proc.stderr, self._stderr),
                                            daemon=True)
        self._err_thread.start()
        try:
            if stdin_line is not None:
                self.proc.stdin.write(stdin_line.rstrip("\n") + "\n")
            self.proc.stdin.close()
        except OSError:  # ssh already gone: its exit status says why
            pass

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The answer's JSON objects (a list is flattened; ``not_objects`` counts what was
        not an object). Read in bounded pieces: a line of noise is dropped piece by piece, a
        document larger than MAX_ANSWER ends the call with one RemoteError line."""
        assert self.proc.stdout is not None
        got = False
        pending = ""  # a pretty-printed document (print_json) spans lines
        noise = False  # inside a line that is not JSON: drop the rest of it
        head = ""  # how the current line begins (it may come in several pieces)
        one_line = False  # the pending document began on the current line
        at_start = True  # the next piece begins a line
        while text := self.proc.stdout.readline(READ_PIECE):
            starts, at_start = at_start, text.endswith("\n")
            if noise:
                noise = not at_start
                continue
            if starts:
                head = text[:1]
                if pending and head in ("{", "["):  # inner lines are indented: a new document
                    self._stderr.append(pending[:NOISE_KEPT])  # the last one never closed
                    pending = ""
            if not pending:
                if not (starts and text.lstrip().startswith(("{", "["))):
                    if text.strip():
                        self._stderr.append(text[:NOISE_KEPT])
                    noise = not at_start
                    continue
                one_line = True
            pending += text
            if len(pending) > MAX_ANSWER:
                self.close()
                raise RemoteError(f"{self.host.name}: the answer of snaptui there is more than "
                                  f"{MAX_ANSWER >> 20} MiB; not read")
            if not at_start:
                continue
            # a document ends with its own line (json_line) or a closing line (print_json)
            whole = one_line or head in ("}", "]")
            one_line = False
            if not whole:
                continue
            try:
                event = json.loads(pending)
            except json.JSONDecodeError:
                continue
            pending = ""
            got = True
            for item in event if isinstance(event, list) else [event]:
                if isinstance(item, dict):
                    yield item
                else:
                    self.not_objects += 1
        self.returncode = self.proc.wait()
        self._err_thread.join(timeout=5)
        failure = _failure(self.host, self.returncode, list(self._stderr), got)
        if failure is not None:
            raise failure

    def stderr_tail(self) -> str:
        return _last_line(list(self._stderr))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_json(host: HostSpec, args: Sequence[str], *, stdin_line: str | None = None
             ) -> list[dict[str, Any]]:
    """Run ``snaptui ARGS`` on ``host`` to its end; its JSON output (a list is flattened)."""
    return list(RemoteCall(host, args, stdin_line=stdin_line))


def remote_info(host: HostSpec) -> dict[str, Any]:
    """``snaptui remote-info --json`` on ``host``: its protocol and version; RemoteTooOld when
    the host's snaptui speaks an older protocol (or has no remote-info at all)."""
    answer = run_json(host, ["remote-info", "--json"])
    info = answer[0] if answer else {}
    protocol = info.get("protocol")
    if not isinstance(protocol, int) or protocol < PROTOCOL:
        raise RemoteTooOld(f"{host.name}: snaptui {info.get('version', '?')} there speaks "
                           f"remote protocol {protocol}, this one needs {PROTOCOL}; install "
                           f"this snaptui version on {host.name}")
    return info


def run_passthrough(host: HostSpec, args: Sequence[str], *, stdin_line: str | None = None,
                    stdout: IO[str] | None = None) -> int:
    """Run ``snaptui ARGS`` on ``host`` with its stdout going to ours (tables, prompts-free
    output); its exit status. The remote's stderr comes back prefixed with the host's name,
    except a failure's last line, which is raised as a one-line RemoteError."""
    import sys

    argv = ssh_argv(host, snaptui_argv(host, args))
    if stdin_line is not None:
        warn_if_unverified(host)
    proc = subprocess.run(  # noqa: S603 - an argv list, no shell
        argv, input=(stdin_line.rstrip("\n") + "\n") if stdin_line is not None else "",
        stdout=stdout, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        errors="replace", check=False, start_new_session=True,
    )
    lines = proc.stderr.splitlines()
    failure = _failure(host, proc.returncode, lines, got_output=False)
    if failure is not None:
        failure.exit_code = proc.returncode if 0 < proc.returncode < 126 else 1
        raise failure
    for text in lines:
        if text.strip():
            print(f"{host.name}: {text}", file=sys.stderr)
    return proc.returncode
