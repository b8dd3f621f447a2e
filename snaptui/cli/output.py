"""Printing helpers shared by the CLI commands: rich tables, JSON, lines for people.

Sizes are bytes in JSON and ``core/present.py``'s ``size_text`` for people. Tables go to stdout;
notes for people (headers, hints) go to stderr so that stdout stays parseable.

Names, ids, paths and messages come from outside (an operator's ``--name``, a guest's disk, a
remote host's answer): they reach the terminal as text, never as Rich markup (``[/daily]``) nor
as raw control characters (an escape sequence that clears the screen). Tables made by ``table``
or ``grid`` take them as they are; anything else goes through ``plain``.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.protocol import is_renderable
from rich.style import Style
from rich.table import Table
from rich.text import Text

# Width used when stdout is not a terminal (pipes, tests): wide enough that rows never wrap.
PIPE_WIDTH = 240


# C0 controls but tab and newline, DEL, C1 controls (0x9b is CSI on its own) and the bidi
# controls that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                      "\u2066-\u2069]")


def clean(text: str) -> str:
    """``text`` with every control character shown as its escape (``\\x1b``), so no escape
    sequence, carriage return or bidi override from a name reaches the terminal raw."""
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def plain(value: object, style: str | Style = "") -> Text:
    """Outside text for a rich renderable: cleaned, and never read as markup."""
    return Text(clean(value if isinstance(value, str) else str(value)), style=style)


class SafeTable(Table):
    """A Table whose str cells (and any other non-renderable value) are plain text."""

    def add_row(self, *renderables: RenderableType | None, style: Any = None,
                end_section: bool = False) -> None:
        super().add_row(*map(_cell, renderables), style=style, end_section=end_section)


def _cell(cell: RenderableType | None) -> RenderableType | None:
    if isinstance(cell, Text):  # ours, maybe made of outside text: cleaned if it must be
        return plain(cell.plain, cell.style) if _CONTROL.search(cell.plain) else cell
    if cell is None or (not isinstance(cell, str) and is_renderable(cell)):
        return cell
    return plain(cell)


def grid(**options: Any) -> Table:
    """``Table.grid`` whose cells are plain text (a ``SafeTable``)."""
    return SafeTable.grid(**options)


def console(*, stderr: bool = False) -> Console:
    """A rich Console on stdout (or stderr) that does not wrap rows when piped."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    result = Console(file=stream, width=width, soft_wrap=False)
    result.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]
    return result


@contextlib.contextmanager
def live_view(console: Console, renderable: RenderableType = "") -> Iterator[Live]:
    """A rich Live view of a running job. When the output is not a terminal, rich prints the
    last frame without ending its line; end it, so what is printed next starts a line."""
    with Live(renderable, console=console, refresh_per_second=8) as live:
        yield live
    if not console.is_terminal:
        console.line()


def _broken_pipe() -> None:
    """rich exits 1 on a closed pipe; hand it to stdout_pipe and the top-level handler."""
    raise BrokenPipeError


def table(*columns: str, title: str | None = None) -> SafeTable:
    """A rich Table with the house look, its cells plain text (``SafeTable``); columns whose
    name ends in 'size' are right-aligned."""
    result = SafeTable(title=plain(title) if title is not None else None, header_style="bold",
                       show_edge=False, pad_edge=False)
    for name in columns:
        right = name.endswith("size") or name in ("vCPUs", "memory")
        result.add_column(name, justify="right" if right else "left")
    return result


@contextlib.contextmanager
def stdout_pipe() -> Iterator[None]:
    """Write to stdout and flush, so that a closed pipe (``snaptui ... | head``) raises
    BrokenPipeError here, for the top-level handler to end the command quietly (exit 141)."""
    yield
    sys.stdout.flush()


def print_table(rendered: Any) -> None:
    """Print a table (or any rich renderable) on stdout."""
    with stdout_pipe():
        console().print(rendered)


def print_json(data: Any) -> None:
    """Dump data as JSON on stdout (one document, keys as given, UTF-8 kept)."""
    with stdout_pipe():
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write("\n")


def line(text: str) -> None:
    """One line of parseable output on stdout (a job id, a result)."""
    with stdout_pipe():
        print(clean(text), flush=True)


def note(message: str) -> None:
    """A line for people on stderr (headers, hints); never part of parseable output."""
    print(clean(message), file=sys.stderr)


def warn(message: str) -> None:
    """``snaptui: warning: …`` on stderr."""
    note(f"snaptui: warning: {message}")


def error(message: str) -> None:
    """``snaptui: error: …`` on stderr: the one line a failed command leaves."""
    note(f"snaptui: error: {message}")


def ask(prompt: str) -> bool:
    """Ask on stderr, read one line of stdin: True for y/yes (a closed stdin or ^C: no)."""
    try:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        answer = sys.stdin.readline()
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


def json_line(data: Any) -> None:
    """One compact JSON document on one stdout line (event streams: ``--json`` follow mode)."""
    with stdout_pipe():
        print(json.dumps(data, ensure_ascii=False, default=str), flush=True)
