"""The test suite's own rules (tests/conftest.py, tests/skip_policy.py), checked by running pytest
in a subprocess: lab tests are marked from their fixtures or their module's ``pytestmark``, the
unit tier collects and runs with no lab, and a skip outside the allow-list fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
NO_LAB = ("LIBVIRT_DEFAULT_URI", "OS_CLOUD", "OS_CLIENT_CONFIG_FILE")


def pytest_run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in NO_LAB}
    env["SNAPTUI_NO_LAB"] = "1"  # a test that reaches for the lab fails instead of finding it
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def collected(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split("::", 1)[1] for line in proc.stdout.splitlines() if "::" in line]


def test_tests_using_lab_fixtures_are_marked_lab() -> None:
    """make_domain -> conn -> ... -> lab_env: the whole closure counts, not just its name."""
    unit = pytest_run("--co", "-q", "-m", "not lab", "tests/test_injected_faults.py")
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert collected(unit) == ["test_parse_reads_step_method_and_action",
                               "test_fault_matches_a_step_by_name_or_kind",
                               "test_wrapped_domain_fails_only_the_named_call_in_the_named_step"]
    assert "3/9 tests collected (6 deselected)" in unit.stdout  # the test_failing_* ones


def test_a_module_pytestmark_marks_every_test_lab() -> None:
    proc = pytest_run("--co", "-q", "-m", "not lab", "tests/test_lab.py")
    assert proc.returncode == 5, proc.stdout  # 5: nothing collected
    assert collected(proc) == []


def test_unit_tier_runs_without_the_lab() -> None:
    proc = pytest_run("-q", "-m", "not lab", "tests/test_pure_units.py",
                      "tests/test_injected_faults.py")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "deselected" in proc.stdout.splitlines()[-1]


def test_a_lab_test_fails_clearly_when_the_lab_is_off_limits() -> None:
    proc = pytest_run("-q", "tests/test_lab.py::test_libvirt_answers")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "this test needs the lab, but SNAPTUI_NO_LAB is set" in proc.stdout


def test_an_unlisted_skip_fails_the_run_and_a_listed_one_does_not(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from skip_policy import SkipPolicy\n\n\n"
        "def pytest_configure(config):\n"
        "    config.pluginmanager.register(SkipPolicy(), 'snaptui-skip-policy')\n")
    (tmp_path / "test_listed.py").write_text(
        "import pytest\n\n\n"
        "def test_disruptive():\n"
        "    pytest.skip('SNAPTUI_NO_DISRUPT set: no libvirtd restart')\n\n\n"
        "@pytest.mark.xfail(reason='known')\n"
        "def test_xfail():\n"
        "    raise AssertionError\n")
    (tmp_path / "test_unlisted.py").write_text(
        "import pytest\n\n\n"
        "@pytest.mark.skipif(True, reason='tmux is not installed')\n"
        "def test_tmux():\n"
        "    pass\n\n\n"
        "def test_import():\n"
        "    pytest.importorskip('snaptui_no_such_module')\n\n\n"
        "def test_ok():\n"
        "    pass\n")
    (tmp_path / "test_module_skip.py").write_text(
        "import pytest\n\n"
        "pytest.importorskip('snaptui_no_such_module_either')\n\n\n"
        "def test_never_runs():\n"
        "    pass\n")
    listed = pytest_run("-q", "-rs", "test_listed.py", cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout
    assert "unexpected skips" not in listed.stdout
    unlisted = pytest_run("-q", "-rs", cwd=tmp_path)
    assert unlisted.returncode == 1, unlisted.stdout
    section = unlisted.stdout.split("unexpected skips", 1)[1]
    assert "test_unlisted.py::test_tmux: tmux is not installed" in section
    assert "test_unlisted.py::test_import: could not import 'snaptui_no_such_module'" in section
    assert "test_module_skip.py: could not import 'snaptui_no_such_module_either'" in section
    assert "test_disruptive" not in section and "test_xfail" not in section
