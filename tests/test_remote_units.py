"""core/fleet/ssh.py and core/fleet/remote_jobs.py without a lab: ssh options from the URI, the
remote snapshot's argv, what is forwarded, and how ssh's exits read (tests/test_fleet.py runs
all of it through the lab's real sshd)."""

from __future__ import annotations

import shlex

import pytest

from snaptui.cli import parse_args
from snaptui.cli.fleet import forwarded_argv
from snaptui.cli.snapshot import request_from_args
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.fleet.remote_jobs import host_local_uri, request_args
from snaptui.core.fleet.ssh import (
    RemoteError,
    RemoteTooOld,
    SshLost,
    SshUnreachable,
    _failure,
    remote_command,
    ssh_argv,
)

HV = HostSpec("hv1", "qemu+ssh://ops@hv1.example:2200/system?keyfile=/k/id&known_hosts=/k/kh",
              ("/opt/snaptui/bin/snaptui",))
LAB = HostSpec("lab2", "qemu+ssh://root@127.0.0.1:22422/system?keyfile=/k/id&no_verify=1")


def _opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_ssh_argv_follows_the_uri_and_never_prompts() -> None:
    argv = ssh_argv(HV, ["snaptui", "jobs", "--json"])
    assert argv[0] == "ssh" and argv[-3:-1] == ["--", "hv1.example"]
    assert (_opt(argv, "-p"), _opt(argv, "-l"), _opt(argv, "-i")) == ("2200", "ops", "/k/id")
    opts = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "BatchMode=yes" in opts and "UserKnownHostsFile=/k/kh" in opts
    assert any(o.startswith("ServerAliveInterval=") for o in opts)
    assert not any(o.startswith("StrictHostKeyChecking") for o in opts)
    lab = [a for a in ssh_argv(LAB, ["x"]) if "=" in a]
    assert "StrictHostKeyChecking=no" in lab and "UserKnownHostsFile=/dev/null" in lab


def test_remote_command_quotes_every_word() -> None:
    words = ["snaptui", "a b", "$(x)", "it's", ";", "\n", ""]
    assert shlex.split(remote_command(words)) == words
    with pytest.raises(ValueError):
        remote_command([])


def test_request_args_rebuild_the_request_for_the_host() -> None:
    args = parse_args(["snapshot", "-- odd", "--name", "n;$(x)", "--mode", "cold",
                       "--property", "k=v w", "--tag", "t", "--verify", "--compress"])
    request = request_from_args(args)
    argv = request_args(HV, request, auth=True)
    assert argv[-2:] == ["--", "-- odd"] and _opt(argv, "-c") == "qemu:///system"
    assert "--auth-stdin" in argv and _opt(argv, "--to") == "glance"
    back = request_from_args(parse_args(argv))
    assert back.name == request.name and back.mode == Mode.COLD
    assert (back.properties, back.tags, back.verify, back.compress) == \
        ({"k": "v w"}, ("t",), True, True)
    plain = request_args(HV, SnapshotRequest(domain="d", name="n", destination="library"),
                         auth=False)
    assert "--auth-stdin" not in plain and _opt(plain, "--to") == "library"


def test_host_local_uri() -> None:
    assert host_local_uri(HV) == "qemu:///system"
    assert host_local_uri(HostSpec("s", "qemu+ssh://h/session")) == "qemu:///session"


def test_forwarded_argv_drops_our_connections_and_renames_the_target() -> None:
    args = parse_args(["-c", "qemu:///system", "info", "hv1:dom", "--json",
                       "--connect=qemu+ssh://x/system"])
    assert forwarded_argv(args, HV, "hv1:dom", "dom") == \
        ["-c", "qemu:///system", "info", "dom", "--json"]


@pytest.mark.parametrize(("code", "stderr", "output", "kind", "words"), [
    (255, ["ssh: connect to host h port 1: Connection refused"], False, SshUnreachable,
     "hv1: cannot reach over SSH: ssh: connect to host h port 1: Connection refused"),
    (255, ["Connection to h closed by remote host."], True, SshLost, "connection lost"),
    (-9, [], True, SshLost, "killed by signal 9"),
    (127, ["env: '/nope': No such file or directory"], False, RemoteError,
     "snaptui is not installed"),
    (2, ["snaptui: error: argument COMMAND: invalid choice: 'remote-info'"], False,
     RemoteTooOld, "install this snaptui version on hv1"),
    (2, ["snaptui: error: no such job: x"], False, RemoteError, "hv1: no such job: x"),
])
def test_ssh_exits_read_as_one_line(code, stderr, output, kind, words) -> None:
    err = _failure(HV, code, stderr, output)
    assert type(err) is kind and words in str(err) and "\n" not in str(err)


def test_a_finished_stream_is_no_failure() -> None:
    assert _failure(HV, 0, [], True) is None
    assert _failure(HV, 1, ["x"], True) is None  # the failed event said it


def test_an_older_snaptui_refuses_a_newer_protocol_in_one_line(capsys) -> None:
    """What a host's snaptui answers when this side needs more than it speaks (here: 99)."""
    from snaptui.cli import main
    from snaptui.core.fleet.ssh import PROTOCOL

    assert main(["--remote-protocol", "99", "jobs", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"speaks remote protocol {PROTOCOL}, the caller needs 99" in err
    assert type(_failure(HV, 2, [err], False)) is RemoteTooOld
    assert main(["--remote-protocol", str(PROTOCOL), "remote-info", "--json"]) == 0
    assert f'"protocol": {PROTOCOL}' in capsys.readouterr().out


@pytest.mark.parametrize("flag", [[], ["--stream"], ["--no-stream"]])
def test_request_args_carry_the_stream_choice(flag: list[str]) -> None:
    request = request_from_args(parse_args(["snapshot", "d", "--name", "n", *flag]))
    back = request_from_args(parse_args(request_args(HV, request, auth=False)))
    assert back.stream == request.stream == {"--stream": "on", "--no-stream": "off"}.get(
        "".join(flag), "auto")
