"""Text from outside (names, ids, paths, reasons) reaches the terminal as text: square brackets
are not Rich markup, and control characters / escape sequences never reach the terminal raw
(issue 23, item 7). ``--name 'nightly [/daily]'`` was accepted, then ``jobs`` and ``images`` exited
70 with MarkupError; ``db[bold red]prod`` listed as ``dbprod``.

Real journal, library, audit log and image files in each test's own dirs; no lab.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cli_tools import snaptui

from snaptui.core import audit
from snaptui.core.engine.journal import JournalWriter, journal_path
from snaptui.core.images.library import ImageLibrary
from snaptui.core.images.store import add_image

NAMES = ("nightly [/daily]", "db[bold red]prod", "[link=http://x]click[/link]")
HOSTILE = "web\x1b[2J\x1b]0;owned\x07\rx\u202e"  # clear screen, set title, CR, bidi override
RAW = ("\x1b", "\x07", "\r", "\u202e")


def assert_shown(proc: subprocess.CompletedProcess[str], *texts: str) -> None:
    assert proc.returncode == 0, proc.stderr
    for text in texts:
        assert text in proc.stdout, (text, proc.stdout)
    for raw in RAW:
        assert raw not in proc.stdout + proc.stderr, (raw, proc.stdout)


def finished_job(job_id: str, domain: str, name: str) -> None:
    journal = JournalWriter(journal_path(job_id))
    journal.append("job", format=1, job_id=job_id,
                   plan={"job_id": job_id, "domain_name": domain, "mode": "cold"},
                   request={"domain": domain, "name": name},
                   steps=[{"name": "convert:vda", "title": f"Convert {name}"}])
    journal.append("step_failed", step="convert:vda", error=f"cannot read {name}")
    journal.append("failed", error=f"qemu-img failed on {name}")
    journal.close()


def test_jobs_shows_brackets_and_escape_sequences_as_text():
    for n, name in enumerate((*NAMES, HOSTILE)):
        finished_job(f"20260101-00000{n}-eeeeee", name, name)
    proc = snaptui("jobs")
    assert_shown(proc, *NAMES, "web\\x1b[2J")


def test_images_shows_library_names_as_text(tmp_path: Path):
    library = tmp_path / "library"
    blob = tmp_path / "blob.raw"
    blob.write_bytes(b"\0" * 4096)
    store = ImageLibrary(library)
    for name in NAMES:
        add_image(store, blob, name=name, disk_format="raw")
    proc = snaptui("images", "--library", str(library))
    assert_shown(proc, *NAMES)


def test_audit_shows_targets_as_text():
    for name in (*NAMES, HOSTILE):
        audit.record("snapshot:save", name, "failed", error=f"{name} went away")
    proc = snaptui("audit")
    assert_shown(proc, *NAMES)


def test_info_shows_backing_paths_and_snapshot_names_as_text(tmp_path: Path):
    base = tmp_path / "base[bold red].qcow2"
    top = tmp_path / "top[i].qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                    str(top)], check=True)
    subprocess.run(["qemu-img", "snapshot", "-c", "before [/upgrade]", str(top)], check=True)
    proc = snaptui("info", str(top))
    assert_shown(proc, str(top), str(base), "before [/upgrade]")


def test_follow_view_and_outcome_show_names_as_text():
    """The live view of ``snapshot``/``jobs --follow`` and its last line (not a terminal here:
    rich prints the final frame) show the job's domain, step titles and error as text."""
    finished_job("20260101-000009-eeeeee", "db[bold red]prod", "nightly [/daily]")
    proc = snaptui("jobs", "--follow", "20260101-000009-eeeeee")
    assert proc.returncode == 1, proc.stderr
    for text in ("db[bold red]prod", "Convert nightly [/daily]",
                 "qemu-img failed on nightly [/daily]"):
        assert text in proc.stdout, (text, proc.stdout)
