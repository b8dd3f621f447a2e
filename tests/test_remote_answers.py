"""What a remote host (or anything answering on its ssh) sends back is data to check, never
trusted (issue 23, item 8): a bad ``jobs`` row is reported and the other rows are still listed;
``fold`` takes any event without crashing; an endless answer is cut off at a size limit.

The "remote" is the lab's sshd on loopback with a stand-in snaptui there (a script that prints
the crafted answer): the fault injected is the answer, the SSH channel is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from snaptui.core.engine.journal import fold
from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.fleet.ssh import MAX_ANSWER, RemoteCall, RemoteError

REPO = Path(__file__).resolve().parent.parent
GOOD = {"job_id": "20260101-000000-a1b2c3", "domain": "web1", "mode": "cold", "status": "done",
        "started": 1767225600.0, "image_name": "nightly", "steps": []}
BAD_ROWS = [
    {**GOOD, "job_id": 5},
    {**GOOD, "job_id": "../../x\x1b[2J"},
    {**GOOD, "started": "yesterday"},
    {**GOOD, "status": {"not": "a status"}},
    {**GOOD, "domain": ["a"], "steps": 5},
    "not an object",
    {**GOOD, "image_name": "x" * 100_000},
]


def fake_remote(tmp_path: Path, body: str) -> list[str]:
    """The snaptui command of a host that answers with what ``body`` (Python) prints."""
    script = tmp_path / "fake_snaptui.py"
    script.write_text("import json, sys\n" + textwrap.dedent(body))
    return [sys.executable, str(script)]


@pytest.fixture
def ssh_uri(lab_env) -> str:
    uri = os.environ.get("SNAPTUI_LAB_SSH_URI")
    if not uri:
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "lab"), "env", "--json"],
                              capture_output=True, text=True, check=True)
        uri = json.loads(proc.stdout)["SNAPTUI_LAB_SSH_URI"]
    return uri


def write_hosts(ssh_uri: str, command: list[str]) -> None:
    config = Path(os.environ["SNAPTUI_CONFIG_DIR"]) / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[[hosts]]\nname = "local"\nuri = "test:///default"\n\n'
                      f'[[hosts]]\nname = "lab2"\nuri = "{ssh_uri}"\n'
                      f"snaptui = {json.dumps(command)}\n")


def test_bad_remote_rows_are_reported_and_the_good_ones_listed(tmp_path: Path, ssh_uri: str):
    from snaptui.cli.fleet import fleet_job_rows

    rows = [GOOD, *BAD_ROWS]
    command = fake_remote(tmp_path, f"print(json.dumps({rows!r}, indent=2))")
    host = HostSpec("lab2", ssh_uri, tuple(command))
    listed, problems = fleet_job_rows([host])
    assert [r["job_id"] for r in listed] == [GOOD["job_id"]], listed
    assert len(problems) == 1 and "lab2" in problems[0] and str(len(BAD_ROWS)) in problems[0]

    write_hosts(ssh_uri, command)
    proc = subprocess.run([sys.executable, "-m", "snaptui", "jobs"], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ), cwd=REPO)
    assert proc.returncode == 1, proc.stderr  # a host with problems: listed, and said
    assert GOOD["job_id"] in proc.stdout and "\x1b" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "snaptui", "jobs", "--json"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ),
                          cwd=REPO)
    assert [r["job_id"] for r in json.loads(proc.stdout)] == [GOOD["job_id"]], proc.stderr


@pytest.mark.parametrize("event", [
    {"event": "job", "plan": 5, "request": "x", "steps": 5},
    {"event": "job", "plan": {"domain_name": ["x"]}, "steps": [{"name": 5}, 7, None]},
    {"event": "pid", "pid": "abc"},
    {"event": "fact", "key": ["x"], "value": 1},
    {"event": "fact", "key": "guest_stopped_at", "value": "noon"},
    {"event": "step_started", "step": {"a": 1}, "t": "x"},
    {"event": "progress", "step": "a", "done": "x", "total": -1},
    {"event": "note", "text": {"x": 1}},
    {"event": "done", "t": "later", "downtime_s": "long"},
    {"event": "failed", "t": None, "error": 5},
    [{"event": "step_started", "step": "a", "t": 2.0},
     {"event": "progress", "step": "a", "done": "x", "total": -1, "rate": "fast",
      "eta_s": [1], "unit": {"b": 1}}],
    [{"event": "step_started", "step": "a", "t": 2.0},
     {"event": "progress", "step": "a", "done": 1e308, "total": 1e-308}],
])
def test_fold_takes_any_event(event: dict | list):
    """A remote job's events (RemoteFeed.record folds them) and a damaged journal: whatever
    the types, folding, the JSON row and the follow view never raise."""
    from snaptui.cli.job_view import render_job
    from snaptui.cli.output import console

    events = [{"event": "job", "plan": {"domain_name": "web1", "mode": "cold"},
               "steps": [{"name": "a", "title": "A"}], "t": 1.0},
              *(event if isinstance(event, list) else [event])]
    job = fold("20260101-000000-a1b2c3", Path("-"), events)
    json.dumps(job.to_json(), default=str)
    with open(os.devnull, "w") as sink:
        view = console()
        view.file = sink
        view.print(render_job(job))
    assert isinstance(job.domain, str) and isinstance(job.downtime_s, float | None)


def test_an_endless_answer_is_cut_off(tmp_path: Path, ssh_uri: str):
    """81 MB of garbage after a '{' used to be buffered whole and answer []: now the call stops
    at MAX_ANSWER with one line naming the host."""
    size = MAX_ANSWER + (8 << 20)
    command = fake_remote(tmp_path, f"""
        out = sys.stdout
        out.write("{{")
        chunk = "x" * (1 << 20)
        for _ in range({size} >> 20):
            out.write(chunk)
        out.flush()
        """)
    call = RemoteCall(HostSpec("lab2", ssh_uri, tuple(command)), ["jobs", "--json"])
    started = time.monotonic()
    with pytest.raises(RemoteError, match="lab2: .*more than"):
        list(call)
    call.close()
    assert time.monotonic() - started < 60


def test_a_huge_line_of_noise_is_skipped_and_the_answer_still_read(tmp_path: Path,
                                                                    ssh_uri: str):
    command = fake_remote(tmp_path, f"""
        sys.stdout.write("motd " + "y" * ({MAX_ANSWER} + 1000) + "\\n")
        print(json.dumps([{GOOD!r}]))
        """)
    rows = list(RemoteCall(HostSpec("lab2", ssh_uri, tuple(command)), ["jobs", "--json"]))
    assert [r["job_id"] for r in rows] == [GOOD["job_id"]]


def test_a_remote_job_event_names_a_job_only_with_a_job_id():
    """The job id a host announces is what re-attaching sends back and what is printed: one
    that is no job id is not adopted (the feed stays nameless rather than carry it)."""
    from snaptui.core.fleet.feed import RemoteFeed

    host = HostSpec("lab2", "qemu+ssh://root@127.0.0.1/system")
    for bad in ("../../x\x1b[2J", 5, {"a": 1}, None):
        feed = RemoteFeed(host)
        events = list(feed.follow([{"event": "job", "job_id": bad}, {"event": "done"}]))
        assert len(events) == 2 and feed.job_id is None, bad
        assert feed.name == "lab2:?"
        feed.record()
    feed = RemoteFeed(host)
    list(feed.follow([{"event": "job", "job_id": GOOD["job_id"]}]))
    assert feed.job_id == GOOD["job_id"]
