"""Numeric options are finite, positive and within what the tool below accepts, checked before
anything is touched; ``info`` refuses a file it cannot read as an image without blocking
(issue 23, item 11). Each is one line on stderr, exit 2, nothing changed.

Before: ``--bwlimit`` of 400 digits exited 70; ``--bwlimit 1180591620717411303424`` passed
preflight (qemu-img's ``-r`` takes at most 2^63-1, so a cold job saved the guest, failed the
convert and restarted it); ``--verify-timeout nan|inf`` and ``--min-disk 99999999999999999999999``
were accepted; ``info FIFO`` hung.

The snapshot cases run on a shut-off lab guest (nothing of QEMU starts) into a library.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import libvirt
import pytest
from cli_tools import snaptui

from snaptui.core.engine.neighbour import neighbour_fields
from snaptui.core.engine.preflight.quiesce import check_verify_options
from snaptui.core.errors import BadInput
from snaptui.core.images.properties import OperatorMetadata, validate_operator
from snaptui.core.paths import state_dir
from snaptui.core.throttle import MAX_RATE, parse_rate

NO_IMAGE = "not a regular file or a block device"


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("snaptui: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- the checks themselves


@pytest.mark.parametrize("text", ["9" * 400, "1180591620717411303424", str(1 << 63), "9e99",
                                  "8388608T", "nan", "inf", "-1", "0", "0.4"])
def test_rates_out_of_range_are_refused(text: str):
    with pytest.raises(BadInput, match="--bwlimit"):
        parse_rate(text)


def test_rates_up_to_what_qemu_img_takes_are_read_exactly():
    assert parse_rate(str(MAX_RATE)) == MAX_RATE == (1 << 63) - 1
    assert parse_rate("1.5K") == 1536 and parse_rate("50M") == 50 << 20
    assert parse_rate("8388607T") == 8388607 << 40
    with pytest.raises(BadInput, match="--bwlimit"):
        neighbour_fields("low", MAX_RATE + 1)


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e9])
def test_verify_timeouts_must_be_finite_and_bounded(timeout: float):
    with pytest.raises(BadInput, match="--verify-timeout"):
        check_verify_options(None, timeout, None)


@pytest.mark.parametrize("field", ["min_disk", "min_ram"])
def test_min_disk_and_ram_fit_glance(field: str):
    validate_operator(OperatorMetadata(**{field: (1 << 31) - 1}), glance=True)
    with pytest.raises(BadInput, match=field.replace("_", "-")):
        validate_operator(OperatorMetadata(**{field: 99999999999999999999999}), glance=True)


# ---------------------------------------------------------------- info on what is no file


def test_info_refuses_a_fifo_at_once(tmp_path: Path):
    import socket

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    one_line_error(snaptui("info", str(fifo), timeout=30), str(fifo), NO_IMAGE)
    sock = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))
        one_line_error(snaptui("info", str(sock), timeout=30), NO_IMAGE)
    one_line_error(snaptui("info", "/dev/null", timeout=30), NO_IMAGE)


# ---------------------------------------------------------------- snapshot: nothing touched


def assert_untouched(lab, library: Path) -> None:
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    jobs = state_dir() / "jobs"
    assert not jobs.exists() or not list(jobs.glob("*.jsonl"))
    scratch = state_dir() / "scratch"
    assert not scratch.exists() or not list(scratch.iterdir())
    assert not library.exists() or not [p for p in library.iterdir()
                                         if not p.name.startswith(".")]


@pytest.mark.parametrize(("options", "words"), [
    (["--bwlimit", "9" * 400], ["--bwlimit"]),
    (["--bwlimit", "1180591620717411303424"], ["--bwlimit"]),
    (["--verify", "--verify-timeout", "nan"], ["--verify-timeout"]),
    (["--verify", "--verify-timeout", "inf"], ["--verify-timeout"]),
    (["--min-disk", "99999999999999999999999"], ["--min-disk"]),
    (["--min-ram", "99999999999999999999999"], ["--min-ram"]),
], ids=["bwlimit-400-digits", "bwlimit-2^70", "verify-nan", "verify-inf", "min-disk", "min-ram"])
def test_snapshot_refuses_out_of_range_numbers_touching_nothing(make_domain, tmp_path: Path,
                                                                options: list[str],
                                                                words: list[str]):
    lab = make_domain(state="shut off")
    library = tmp_path / "lib"
    proc = snaptui("snapshot", lab.name, "--name", "x", "--mode", "cold", "--to", "library",
                   "--library", str(library), *options)
    one_line_error(proc, *words)
    assert_untouched(lab, library)
