"""``snaptui snapshot HOST:DOMAIN`` (or ``-c qemu+ssh://…``): the job runs on that host.

snaptui there preflights, launches the detached job and journals it; this side sends the
operator's login on the SSH channel's stdin, then renders the JSON events it streams back as a
local job's. When the connection drops the job goes on: this side re-attaches (``jobs --follow``)
a few times, then says how to follow it later. Ctrl-C cancels the job on the host (a second
Ctrl-C only stops listening).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from rich.live import Live

from snaptui.cli import output
from snaptui.cli.fleet import login_line, pick
from snaptui.core.engine.journal import JobRecord
from snaptui.core.fleet.feed import RemoteFeed
from snaptui.core.fleet.hosts import HostSpec
from snaptui.core.fleet.ssh import RemoteCall


def route_snapshot(args: argparse.Namespace, request_from_args) -> int | None:
    """Run the snapshot on the domain's host when that is an SSH host; None: run it here."""
    host, domain = pick(args, args.domain)
    args.domain = domain
    if not host.remote:
        return None
    from snaptui.core.fleet.remote_jobs import request_args

    request = request_from_args(args)
    state_line, _ = login_line(args, request.destination)
    remote_args = request_args(host, request, auth=state_line is not None)
    for flag, on in (("--dry-run", args.dry_run), ("--detach", args.detach)):
        if on:
            remote_args.insert(remote_args.index("--json"), flag)
    call = RemoteCall(host, remote_args, stdin_line=state_line)
    if args.dry_run or args.detach:
        return _print_plain(host, call, args.json)
    return RemoteFollower(host, args.json).run(call)


def _print_plain(host: HostSpec, call: RemoteCall, as_json: bool) -> int:
    last: dict[str, Any] = {}
    for event in call:
        last = {**event, "host": host.name}
        if as_json:
            output.json_line(last)
        elif event.get("event") == "launched":
            output.line(f"{host.name}:{event.get('job_id', '?')}")
        elif event.get("event") == "dry-run":
            output.line(f"# on {host.name}: {event.get('reason')}; destination "
                        f"{event.get('destination')}")
            commands = event.get("commands")
            for command in commands if isinstance(commands, list) else []:
                output.line(str(command))
    return 0 if last else 1


class RemoteFollower:
    """Render a remote job's events (JSON lines with ``host``, or the local live view)."""

    def __init__(self, host: HostSpec, as_json: bool) -> None:
        self.host = host
        self.as_json = as_json
        self.feed = RemoteFeed(host, note=lambda text: output.note(f"snaptui: {text}"))
        self.last: dict[str, Any] = {}

    @property
    def job_id(self) -> str | None:
        return self.feed.job_id

    def run(self, call: RemoteCall) -> int:
        if self.as_json:
            self._consume(self.feed.follow(self._cancel_on_interrupt(call)), None)
        else:
            with output.live_view(output.console()) as live:
                self._consume(self.feed.follow(self._cancel_on_interrupt(call)), live)
        return self._outcome()

    def _consume(self, events: Iterator[dict[str, Any]], live: Live | None) -> None:
        for event in events:
            self.last = event
            if self.as_json:
                output.json_line({**event, "host": self.host.name})
            elif live is not None:
                from snaptui.cli.job_view import render_job

                live.update(render_job(self.record()))

    def _cancel_on_interrupt(self, call: RemoteCall) -> Iterator[dict[str, Any]]:
        try:
            yield from call
        except KeyboardInterrupt:
            call.close()
            if self.job_id is None:
                raise
            from snaptui.core.fleet.remote_jobs import cancel_remote_job, follow_remote_job

            output.note(f"\nsnaptui: cancelling job {self.host.name}:{self.job_id} "
                        "(rolling back)...")
            output.note(f"snaptui: {cancel_remote_job(self.host, self.job_id)}")
            try:
                yield from follow_remote_job(self.host, self.job_id)
            except KeyboardInterrupt:
                output.note(f"\nsnaptui: detached; job {self.host.name}:{self.job_id} goes on")

    def record(self) -> JobRecord:
        """The job as the events so far tell it (the local view's renderer reads this)."""
        return self.feed.record()

    def _outcome(self) -> int:
        if self.as_json:
            return 0 if self.last.get("event") == "done" else 1
        job = self.record()
        from snaptui.cli.job_view import print_outcome

        if self.last.get("event") not in ("done", "failed", "cancelled"):
            return 1
        return print_outcome(output.console(), job)
