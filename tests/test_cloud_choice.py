"""A cloud named by OS_CLOUD (or --os-cloud) that cannot be loaded is one line, exit 2 — never a
silent fallback to the local library; a config.toml that is not UTF-8 is one line too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cli_tools import snaptui


def _snaptui(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI with no OS_* variables but ``env``'s, in a fresh home."""
    return snaptui(*argv, env={"HOME": str(tmp_path / "home"), **env},
                   unset=[k for k in os.environ if k.startswith("OS_")], timeout=60)


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("argv", [("images",), ("snapshot", "web1", "--name", "x", "--dry-run",
                                                "-c", "test:///default")])
def test_os_cloud_without_a_clouds_yaml_is_refused(tmp_path: Path, argv) -> None:
    line = _one_line(_snaptui(tmp_path, *argv, OS_CLOUD="prod",
                              OS_CLIENT_CONFIG_FILE=str(tmp_path / "missing.yaml")))
    assert "unknown cloud 'prod'" in line
    assert not (tmp_path / "home" / ".local" / "share" / "snaptui" / "library").exists()


def test_a_cloud_entry_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  prod: 5\n")
    line = _one_line(_snaptui(tmp_path, "images", OS_CLOUD="prod",
                              OS_CLIENT_CONFIG_FILE=str(clouds)))
    assert "prod" in line and "not a cloud entry" in line


def test_config_toml_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_bytes(b'theme = "\xff"\n')
    line = _one_line(_snaptui(tmp_path, "domains", "-c", "test:///default",
                              SNAPTUI_CONFIG_DIR=str(config)))
    assert "not UTF-8" in line
