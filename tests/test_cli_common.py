"""Common options, one-line failures and the modes of directories the operator hands snaptui.

Each test here failed before its fix: ``--library`` given before the command was dropped,
``images --insecure`` was refused, a state dir that is a file or a closed stdout gave a
traceback, a failing recover stopped unrelated commands, and ``private_dir`` chmodded any
directory it was given (the sticky bit of a shared scratch directory was stripped).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest
from cli_tools import snaptui

from snaptui.cli import parse_args
from snaptui.cli.snapshot import request_from_args
from snaptui.core.errors import BadInput
from snaptui.core.images.library import ImageLibrary
from snaptui.core.paths import private_dir, state_dir

REPO = Path(__file__).resolve().parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------ unit: the parser

@pytest.mark.parametrize("argv", [
    ["--library", "/L", "-c", "test:///default", "--os-cloud", "C", "--insecure", "-v",
     "snapshot", "dom", "--name", "n"],
    ["snapshot", "dom", "--name", "n", "--library", "/L", "-c", "test:///default",
     "--os-cloud", "C", "--insecure", "-v"],
    ["--library", "/L", "--insecure", "snapshot", "dom", "--name", "n", "-c", "test:///default",
     "--os-cloud", "C", "-v"],
])
def test_common_options_mean_the_same_before_and_after_the_command(argv):
    args = parse_args(argv)
    assert (args.library, args.uri, args.cloud, args.insecure, args.verbose) == \
        ("/L", "test:///default", "C", True, True)
    request = request_from_args(args)
    assert (request.library_dir, request.uri, request.cloud) == ("/L", "test:///default", "C")


@pytest.mark.parametrize("command", [["domains"], ["images"], ["info", "x"], ["jobs"],
                                     ["cancel", "j"], ["recover"], ["cleanup"], ["audit"],
                                     ["snapshot", "d", "--name", "n"]])
def test_every_command_takes_every_common_option(command):
    args = parse_args([*command, "--insecure", "-v", "--library", "/L", "-c", "U",
                       "--os-cloud", "C"])
    assert (args.insecure, args.verbose, args.library, args.uri, args.cloud) == \
        (True, True, "/L", "U", "C")
    bare = parse_args(command)
    assert (bare.insecure, bare.verbose, bare.library, bare.uri, bare.cloud) == \
        (False, False, None, None, None)


def test_connect_repeats_for_a_fleet():
    """-c given twice is two hosts (issue 16: it used to keep only the last), in order, before
    and after the command alike; args.uri is the first for single-host commands."""
    args = parse_args(["-c", "A", "domains", "-c", "B", "-c", "A"])
    assert (args.uris, args.uri) == (["A", "B"], "A")
    assert parse_args(["domains", "-c", "B"]).uris == ["B"]
    assert parse_args(["domains"]).uris == []


# ------------------------------------------------------------ unit: directories

def test_private_dir_creates_0700_but_keeps_what_exists(tmp_path):
    made = private_dir(tmp_path / "a" / "b")
    assert mode(made) == 0o700 and mode(tmp_path / "a") == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    assert private_dir(shared) == shared
    assert mode(shared) == 0o1777
    listed = tmp_path / "listed"
    listed.mkdir()
    listed.chmod(0o755)
    assert list(ImageLibrary(listed).iter_images()) == []
    assert mode(listed) == 0o755


def test_private_dir_warns_about_group_writable_without_sticky_bit(tmp_path, caplog):
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o775)
    with caplog.at_level("WARNING", logger="snaptui.core.paths"):
        private_dir(loose)
    assert any(str(loose) in r.getMessage() and "sticky" in r.getMessage()
               for r in caplog.records), caplog.records
    assert mode(loose) == 0o775


def test_private_dir_refuses_a_file(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(BadInput, match="is not a directory"):
        private_dir(afile)


# ------------------------------------------------------------ the CLI, on the lab

def one_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [["jobs"], ["audit"], ["domains"], ["recover"],
                                     ["cleanup", "--dry-run"], ["snapshot", "x", "--name", "y"]])
def test_state_dir_that_is_a_file_is_one_line(tmp_path, command, libvirt_uri):
    afile = tmp_path / "state-file"
    afile.write_text("not a directory")
    proc = snaptui(*command, env={"SNAPTUI_STATE_DIR": str(afile)})
    one_line(proc, "SNAPTUI_STATE_DIR", str(afile), "is not a directory")
    assert proc.returncode == 2
    assert afile.read_text() == "not a directory"


@pytest.mark.parametrize("command", [["jobs", "--json"], ["audit", "--json"], ["jobs"]])
def test_closed_stdout_is_quiet(command, libvirt_uri):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has gone: every write is EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "snaptui", *command], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO)
    finally:
        os.close(write_end)
    assert proc.stderr == "", proc.stderr
    assert proc.returncode == 141


def test_failing_recover_does_not_stop_an_unrelated_command(make_domain):
    lab = make_domain(state="shut off")
    jobs = state_dir() / "jobs"
    jobs.parent.mkdir(parents=True, exist_ok=True)
    jobs.write_text("a file where the journal directory should be")
    proc = snaptui("domains", "--json")
    assert proc.returncode == 0, proc.stderr
    assert lab.name in {d["name"] for d in json.loads(proc.stdout)}
    warning = [line for line in proc.stderr.splitlines() if "interrupted jobs" in line]
    assert len(warning) == 1 and warning[0].startswith("snaptui: warning: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_images_takes_insecure(store):
    proc = snaptui("images", "--insecure", "--json")
    assert proc.returncode == 0, proc.stderr  # before: argparse refused --insecure here
    assert {image["id"] for image in json.loads(proc.stdout)} == \
        {image.id for image in store.iter_images()}


def test_library_before_the_command_is_used_and_a_shared_scratch_keeps_its_mode(
        make_domain, tmp_path):
    lab = make_domain(state="running", size="32M", seed="8M")
    library = tmp_path / "lib-before"
    scratch = tmp_path / "shared-scratch"
    scratch.mkdir()
    scratch.chmod(0o1777)
    proc = snaptui("--library", str(library), "snapshot", lab.name, "--name", "snaptui-test-lib",
                   "--mode", "cold", "--format", "raw", "--to", "library", "--json",
                   env={"SNAPTUI_SCRATCH_DIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["event"] == "done", done
    assert ImageLibrary(library).show(done["image_id"]).name == "snaptui-test-lib"
    assert mode(scratch) == 0o1777
    assert mode(library) == 0o700  # made by snaptui
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
