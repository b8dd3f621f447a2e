"""The operator's SSH connection drops mid-job: the job finishes (or rolls back) on its own.

A real terminal: tmux (own server socket) gives the dashboard or the CLI a pty. The test drives
the dashboard with keys as a person would (filter to the domain, `s`, choose cold, confirm), or
types `snaptui snapshot` into a shell, waits until the cold convert runs (the guest is saved),
then kills the tmux session or sends SIGHUP to the shell — what sshd does when the connection
goes. The detached job must bring the guest back, and the next `snaptui jobs --json` tells the
outcome.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fault_tools import (
    MID_STEP_BWLIMIT,
    MID_STEP_RATE,
    STATE_NAMES,
    alive,
    assert_lab_clean,
    capture,
    step_running,
    wait_for,
    wait_gone,
    wait_terminal,
    wait_until,
)

from snaptui.core.engine.journal import jobs_dir, load_job
from snaptui.core.images.library import ImageLibrary

REPO = Path(__file__).resolve().parent.parent
SNAPTUI = [sys.executable, "-m", "snaptui"]  # this checkout's (PYTHONPATH=REPO in the env)
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def styled_cells(line: str) -> list[tuple[str, tuple]]:
    """One terminal row from ``tmux capture-pane -e`` as (character, (fg, bg, attributes))
    cells: the style is the SGR state in force, however tmux chose to spell the changes."""
    fg: tuple = ()
    bg: tuple = ()
    attrs: set[int] = set()
    cells: list[tuple[str, tuple]] = []
    pos = 0
    for match in [*SGR.finditer(line), None]:
        text = line[pos:match.start() if match else len(line)]
        cells.extend((ch, (fg, bg, frozenset(attrs))) for ch in text)
        if match is None:
            break
        pos = match.end()
        codes = [int(c) if c else 0 for c in match.group(1).split(";")]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code in (38, 48):  # 38;5;N or 38;2;R;G;B (and 48 for the background)
                n = 3 if codes[i + 1:i + 2] == [5] else 5
                value = tuple(codes[i + 1:i + n])
                fg, bg = (value, bg) if code == 38 else (fg, value)
                i += n
                continue
            if code == 0:
                fg, bg, attrs = (), (), set()
            elif 30 <= code <= 37 or 90 <= code <= 97:
                fg = (code,)
            elif code == 39:
                fg = ()
            elif 40 <= code <= 47 or 100 <= code <= 107:
                bg = (code,)
            elif code == 49:
                bg = ()
            elif 21 <= code <= 29:
                attrs -= {code - 20, 1} if code == 22 else {code - 20}
            else:
                attrs.add(code)
            i += 1
    return cells
BIG = {"size": "1G", "seed": "768M"}  # converted at MID_STEP_RATE: ~6 s to drop the terminal

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One tmux server of our own (``-L``), so other users' sessions are never touched."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"snaptui-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], env=self.env,
                              capture_output=True, text=True, check=check, timeout=30)

    def start(self, argv: list[str]) -> None:
        self.run("new-session", "-d", "-s", "drop", "-x", "160", "-y", "48", *argv)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "drop", *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "drop", "-l", text)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "drop", check=False).stdout

    def styled(self) -> str:
        """The screen with its colours and attributes (SGR escapes): shows where focus is."""
        return self.run("capture-pane", "-e", "-p", "-t", "drop", check=False).stdout

    def cursor_row(self) -> int:
        """The terminal cursor's row: Textual puts it in the focused Input (for IMEs)."""
        return int(self.run("display-message", "-p", "-t", "drop", "#{cursor_y}").stdout)

    def row_of(self, *texts: str) -> int | None:
        """The first screen row that holds every one of ``texts``."""
        return next((y for y, line in enumerate(self.screen().splitlines())
                     if all(t in line for t in texts)), None)

    def wait(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """``wait_until`` that shows the screen as it is when the wait fails."""
        try:
            wait_until(predicate, timeout, what, poll=0.05)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.screen()}") from None

    def text_cells(self, text: str) -> list[tuple[str, tuple]] | None:
        """The cells of the first ``text`` on the screen, each with its colours and attributes
        (only these cells: a scrollbar or the screen behind a dialog may restyle on their own)."""
        for line in self.styled().splitlines():
            cells = styled_cells(line)
            at = "".join(ch for ch, _ in cells).find(text)
            if at >= 0:
                return cells[at:at + len(text)]
        return None

    def press_and_wait(self, key: str, timeout: float = 10.0) -> None:
        """Press ``key`` and wait until the screen shows its effect (anything restyled)."""
        before = self.styled()
        self.keys(key)
        deadline = time.monotonic() + timeout
        while self.styled() == before:
            if time.monotonic() > deadline:
                raise AssertionError(f"{key} changed nothing on the screen in {timeout} s:\n"
                                     + self.screen())
            time.sleep(0.05)

    def focus_title(self, title: str, key: str = "Tab", presses: int = 30) -> None:
        """Press ``key`` (one at a time, each after its effect shows) until the widget whose own
        text is ``title`` (a collapsible's title, a button) is drawn focused: those cells
        restyle. Found whatever the tab order (more fields may come); fails after ``presses``."""
        blurred = self.text_cells(title)
        assert blurred is not None, f"{title!r} is not on the screen:\n{self.screen()}"
        for _ in range(presses):
            self.press_and_wait(key)
            if self.text_cells(title) != blurred:
                return
        raise AssertionError(f"{title!r} never took the focus in {presses} × {key}:\n"
                             + self.screen())

    def focus_input(self, label: str, key: str = "Tab", presses: int = 30) -> int:
        """Press ``key`` (one at a time, each after its effect shows) until the terminal cursor
        is in the input labelled ``label``: Textual puts the cursor in the focused input (for
        IMEs). Not the label's style: labels restyle when focus enters or leaves their group.
        Returns the input's first row (the label's); fails after ``presses``."""
        for _ in range(presses):
            self.press_and_wait(key)
            row = self.row_of(label)
            if row is not None and row <= self.cursor_row() <= row + 2:
                return row
        raise AssertionError(f"the {label!r} input never took the focus in {presses} × {key}:"
                             f"\n{self.screen()}")

    def pane_pid(self) -> int:
        return int(self.run("display-message", "-p", "-t", "drop", "#{pane_pid}").stdout)

    def wait_screen(self, text: str, timeout: float = 30.0) -> None:
        self.wait(lambda: text in self.screen(), timeout, f"{text!r} on the screen")

    def kill(self) -> None:
        self.run("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    env = dict(os.environ, TERM="xterm-256color", SNAPTUI_LIBRARY_DIR=str(tmp_path / "lib"),
               PYTHONPATH=str(REPO))
    env.pop("OS_CLOUD", None)  # no cloud: images go to the library, Glance is not needed here
    (tmp_path / "clouds.yaml").write_text("clouds: {}\n")
    env["OS_CLIENT_CONFIG_FILE"] = str(tmp_path / "clouds.yaml")
    session = Tmux(env)
    yield session
    session.kill()


def only_job() -> str:
    """The one job this test's state dir holds, once its journal exists."""
    journals = wait_until(lambda: list(jobs_dir().glob("*.jsonl")), 60, "a job's journal",
                          poll=0.1)
    assert len(journals) == 1, journals
    return journals[0].stem


def after_the_drop(lab, before, job_id: str, tmux: Tmux, tmp_path: Path,
                   pids: list[int]) -> str:
    """The terminal's processes are gone, the job ends on its own, the guest runs, and the next
    snaptui start reports the outcome."""
    wait_gone(pids, timeout=15)
    job = load_job(job_id)
    outlived = not job.terminal and job.pid is not None and alive(job.pid)
    assert job.terminal or outlived, "the job process died with the terminal"
    job = wait_terminal(job_id, timeout=120)
    assert job.status == "done", (job.status, job.error)
    assert not job.recovered, "the job process died with the terminal (recover finished it)"
    assert STATE_NAMES[lab.dom.state()[0]] == "running"
    image = ImageLibrary(tmp_path / "lib").show(job.result["image_id"])
    assert image.status == "active"
    proc = subprocess.run([*SNAPTUI, "jobs", "--json"], env=tmux.env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = {j["job_id"]: j for j in json.loads(proc.stdout)}
    assert listed[job_id]["status"] == "done"
    assert_lab_clean(lab, before, job_id, statuses=("done",), library=tmp_path / "lib")
    return (f"job {job_id} {listed[job_id]['status']} after the drop "
            f"({'still running when the terminal was gone' if outlived else 'already done'}), "
            "guest running, "
            f"downtime {listed[job_id]['downtime_s']:.1f} s")


def terminal_processes(leader: int) -> list[int]:
    """The processes of the pane's session (the shell, snaptui); the job has its own session."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [pid for pid, sid in (map(int, line.split()) for line in out.splitlines())
            if sid == leader]


@pytest.mark.timeout(240)
def test_dashboard_in_tmux_killed_mid_convert(make_domain, tmux, tmp_path):
    lab = make_domain(state="running", **BIG)
    before = capture(lab)
    tmux.start([*SNAPTUI, "-c", lab.conn.getURI()])
    tmux.wait_screen(lab.name, timeout=60)
    # Each key waits for its effect on the screen before the next one: keys sent on timers
    # once reached a field before the focus had. Widgets are found by their labels, not by
    # counting tabs, so a field added to the dialog does not break the walk.
    tmux.keys("/")
    tmux.wait_screen("filter…")  # typed before the input has focus, letters are app keys
    tmux.type(lab.name)
    tmux.wait(lambda: re.search(r"\b1/\d+ match", tmux.screen()), 30, "the one match")
    row = tmux.row_of(lab.name, "running")  # the domain's row in the table (not the filter)
    assert row is not None, tmux.screen()

    def name_cells() -> list[tuple[str, tuple]]:
        cells = styled_cells(tmux.styled().splitlines()[row])
        at = "".join(ch for ch, _ in cells).find(lab.name)
        return cells[at:at + len(lab.name)]

    blurred = name_cells()
    tmux.keys("Enter")  # the table takes the focus: its cursor row is drawn focused
    tmux.wait(lambda: name_cells() != blurred, 10, "the table focused")
    tmux.keys("s")
    tmux.wait_screen(f"Snapshot {lab.name} (running)")
    tmux.keys("Down")  # auto -> cold (the dialog opens with the mode focused)
    tmux.wait_screen("cold mode: the guest will be stopped")
    # The bandwidth cap, by keyboard: back to the "Host load" title, open it, on to the
    # bandwidth field; the typed cap must show in that field's row before Enter submits.
    tmux.focus_title("Host load", key="BTab")
    tmux.keys("Enter")
    tmux.wait_screen("Bandwidth")
    field = tmux.focus_input("Bandwidth")
    tmux.type(MID_STEP_RATE)
    tmux.wait(lambda: any(MID_STEP_RATE in line for line in
                          tmux.screen().splitlines()[field:field + 3]), 10,
              f"{MID_STEP_RATE} in the bandwidth field")
    tmux.keys("Enter")  # submits the form from the field
    tmux.wait_screen(f"Stop {lab.name}?")
    tmux.keys("y")
    job_id = only_job()
    wait_for(job_id, step_running("convert:vda", min_done=1), timeout=60, what="convert progress")
    assert load_job(job_id).plan["bwlimit"] == MID_STEP_BWLIMIT  # the cap typed in the dialog
    assert not lab.dom.isActive()  # the guest is saved while the terminal goes away
    terminal = terminal_processes(tmux.pane_pid())
    tmux.run("kill-session", "-t", "drop")
    print("\n  dashboard killed mid-convert:",
          after_the_drop(lab, before, job_id, tmux, tmp_path, terminal))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["kill-session", "sighup-shell"])
def test_cli_snapshot_terminal_goes_away(make_domain, tmux, tmp_path, how):
    lab = make_domain(state="running", **BIG)
    before = capture(lab)
    tmux.start(["bash", "--norc", "-i"])
    tmux.type(f"{shlex.join(SNAPTUI)} snapshot {lab.name} --name snaptui-test-drop --mode cold "
              f"--to library --library {tmp_path / 'lib'} --bwlimit {MID_STEP_RATE}")
    tmux.keys("Enter")
    job_id = only_job()
    wait_for(job_id, step_running("convert:vda", min_done=1), timeout=60, what="convert progress")
    assert not lab.dom.isActive()
    shell = tmux.pane_pid()
    terminal = terminal_processes(shell)
    assert len(terminal) > 1, "snaptui is not running in the shell"
    if how == "kill-session":
        tmux.run("kill-session", "-t", "drop")
    else:
        os.kill(shell, signal.SIGHUP)  # what the pty's hangup does to the login shell
    print(f"\n  snaptui snapshot, {how} mid-convert:",
          after_the_drop(lab, before, job_id, tmux, tmp_path, terminal))
