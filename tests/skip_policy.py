"""No silent skips: a skipped test fails the run unless its reason is in ``ALLOWED_SKIPS``.

A skip hides a test that did not run; in CI that is how a broken import, a missing tool or a
lab that came up half-way turns into a green run. Registered by conftest.py as a plugin:
every skip (not xfail) is collected; at the end the unexpected ones are listed and the exit
status becomes 1 (if it was 0). Add a reason here only with the why next to it.
"""

from __future__ import annotations

import pytest

# reason prefix (as given to pytest.skip / skipif) -> why that skip is legitimate
ALLOWED_SKIPS: dict[str, str] = {
    "SNAPTUI_NO_DISRUPT set": "a developer asked not to restart libvirtd or kill Glance on a "
                              "shared lab; CI never sets it",
}


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def allowed(reason: str) -> bool:
    return any(reason.startswith(prefix) for prefix in ALLOWED_SKIPS)


class SkipPolicy:
    def __init__(self) -> None:
        self.unexpected: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._check(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A module skipped at import (a top-level ``importorskip``, ``allow_module_level``)."""
        self._check(report)

    def _check(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = skip_reason(report)
        if not allowed(reason):
            self.unexpected.append((report.nodeid, reason))

    def pytest_terminal_summary(self, terminalreporter) -> None:  # noqa: ANN001 - pytest type
        if not self.unexpected:
            return
        terminalreporter.section("unexpected skips (not in tests/skip_policy.py ALLOWED_SKIPS)",
                                 sep="=", red=True, bold=True)
        for nodeid, reason in self.unexpected:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unexpected and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
