"""The fleet's hosts: -c URIs, [[hosts]] in config.toml, names and HOST:DOMAIN."""

from __future__ import annotations

from pathlib import Path

import pytest

from snaptui.core.errors import BadInput
from snaptui.core.fleet.hosts import HostSpec, name_from_uri, pick_host, resolve_hosts, ssh_target
from snaptui.core.settings import load_settings

SSH_URI = "qemu+ssh://root@127.0.0.1:2222/system?keyfile=/k/id&no_verify=1"


def _settings(tmp_path: Path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_settings(path)


def test_names_from_uris() -> None:
    assert name_from_uri(None) == "local"
    assert name_from_uri("qemu:///system") == "local"
    assert name_from_uri("qemu+ssh://root@hv1.example/system") == "hv1.example"
    assert name_from_uri(SSH_URI) == "127.0.0.1-2222"


def test_ssh_target_reads_libvirt_uri_params() -> None:
    target = ssh_target(SSH_URI)
    assert (target.hostname, target.user, target.port) == ("127.0.0.1", "root", 2222)
    assert (target.keyfile, target.no_verify, target.known_hosts) == ("/k/id", True, None)
    assert HostSpec("x", SSH_URI).remote and not HostSpec("y", "qemu:///system").remote


def test_repeated_c_keeps_every_host_in_order(tmp_path: Path) -> None:
    settings = _settings(tmp_path, f'[[hosts]]\nname = "hv2"\nuri = "{SSH_URI}"\n'
                         'snaptui = ["/opt/snaptui", "--x"]\n')
    hosts = resolve_hosts(["qemu:///system", SSH_URI, "qemu:///system"], settings)
    assert [h.name for h in hosts] == ["local", "hv2"]
    assert hosts[1].snaptui == ("/opt/snaptui", "--x")
    assert [h.name for h in resolve_hosts(None, settings)] == ["hv2"]
    assert [h.name for h in resolve_hosts(None, None)] == ["local"]
    two_local = resolve_hosts(["qemu:///system", "qemu:///session"], None)
    assert [h.name for h in two_local] == ["local", "local-2"]


def test_host_domain_syntax() -> None:
    hosts = [HostSpec("local"), HostSpec("hv2", SSH_URI)]
    assert pick_host("hv2:web-1", hosts) == (hosts[1], "web-1")
    assert pick_host("web:1", [hosts[0]]) == (hosts[0], "web:1")  # not a host name: a domain
    with pytest.raises(BadInput, match="HOST:web-1"):
        pick_host("web-1", hosts)
    with pytest.raises(BadInput, match="must follow"):
        pick_host("hv2:", hosts)


@pytest.mark.parametrize("text, message", [
    ("hosts = 3\n", "array of tables"),
    ('[[hosts]]\nname = "a b"\nuri = "qemu:///system"\n', "'name' must be"),
    ('[[hosts]]\nname = "a"\n', "'uri' must be"),
    ('[[hosts]]\nname = "a"\nuri = "x"\nport = 2\n', "unknown key 'port'"),
    ('[[hosts]]\nname = "a"\nuri = "x"\n[[hosts]]\nname = "a"\nuri = "y"\n', "used twice"),
    ('[[hosts]]\nname = "a"\nuri = "x"\nsnaptui = []\n', "'snaptui' must be"),
    ("jobs = 1\n", "'jobs' must be a table"),
    ("[hosts\n", "not valid TOML"),
])
def test_bad_config_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as err:
        _settings(tmp_path, text)
    assert "\n" not in str(err.value)
