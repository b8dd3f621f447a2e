"""What ``schedule run`` does after the snapshots, on each host its guests live on: prune the
schedule's backups (its keep rules), then re-verify its guests' stale images (``verify
--stale``).

This host's guests are pruned here (``prune.apply``) and verified by a ``snaptui verify
--stale`` subprocess. A ``HOST:GUEST`` of the fleet is pruned and verified by snaptui on that
host, over SSH (``core/fleet/ssh.py``), as its snapshot was made: the images it made are proven
by that host's journal (its ``snaptui_job``, its ``snaptui_host``), its live jobs' images are
that host's to see, and a library there is that host's directory. The operator's Keystone login
(when the images go to Glance) goes on the SSH channel's stdin and on a subprocess's stdin
(``--auth-stdin``), never on argv.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from snaptui.core import audit
from snaptui.core.keep.next_prune import schedule_scope
from snaptui.core.keep.prune import apply, plan_for_store
from snaptui.core.keep.schedules import Schedule

LOCAL = "local"  # the host name of this host's stage rows
STAGE_TIMEOUT_S = 24 * 3600.0


def one_line(err: BaseException | str) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@dataclass
class PruneOutcome:
    """One host's prune: how many images it looked at, removed, failed to remove."""

    host: str
    images: int = 0
    removed: int = 0
    failed: int = 0
    error: str | None = None

    def line(self, schedule: Schedule) -> str:
        where = "" if self.host == LOCAL else f" on {self.host}"
        if self.error:
            return f"schedule {schedule.name}: prune{where} failed: {self.error}"
        failed = f", {self.failed} failed to delete" if self.failed else ""
        return (f"schedule {schedule.name}: prune{where} ({schedule.rules.text()}): removed "
                f"{self.removed} of {self.images} images{failed}")


@dataclass
class VerifyOutcome:
    """One host's ``verify --stale``: each image's outcome (verified | failed | skipped)."""

    host: str
    images: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def count(self, outcome: str) -> int:
        return sum(r.get("outcome") == outcome for r in self.images)

    def line(self, schedule: Schedule) -> str:
        where = "" if self.host == LOCAL else f" on {self.host}"
        head = f"schedule {schedule.name}: verify --stale {schedule.verify_stale}{where}"
        if self.error:
            return f"{head} failed: {self.error}"
        return (f"{head}: {self.count('verified')} verified, {self.count('failed')} failed, "
                f"{self.count('skipped')} skipped of {len(self.images)} stale images")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- the store and the login ---------------------------------------------------------------


def destination(schedule: Schedule, login: str | None) -> str:
    """Where the schedule's images go: its ``--to``; a library it names (without a cloud);
    Glance when a login was forwarded; else what this host is configured for."""
    from snaptui.core.images.factory import resolve_destination

    chosen = schedule.snapshot.get("destination")
    if chosen:
        return chosen
    if schedule.library and not schedule.cloud:
        return "library"
    return "glance" if login else resolve_destination(None, schedule.cloud, schedule.library)


def open_store(schedule: Schedule, login: str | None) -> Any:
    from snaptui.core.images.factory import open_store as open_any

    where = destination(schedule, login)
    if where == "glance" and login:
        from snaptui.core.cloud.forwarded_login import forwarded_store

        return forwarded_store(login)
    return open_any(where, cloud=schedule.cloud, library=schedule.library)


def login_for_hosts(schedule: Schedule, login: str | None) -> str | None:
    """The Keystone login another host's prune and verify resume: the one forwarded to this
    run, else this host's own (its clouds.yaml), when the images go to Glance."""
    if login or destination(schedule, login) != "glance":
        return login
    from snaptui.core.engine.jobs import store_auth_state

    store = open_store(schedule, None)
    store.cloud.authenticate()
    return store_auth_state(store)


# -- this host -----------------------------------------------------------------------------


def prune_here(schedule: Schedule, guests: list[str], login: str | None) -> PruneOutcome:
    found = PruneOutcome(LOCAL)
    try:
        store = open_store(schedule, login)
        plan = apply(store, plan_for_store(store, schedule.rules,
                                           schedule_scope(schedule, guests)))
    except Exception as err:  # noqa: BLE001 - the snapshots are made: say it, record it
        found.error = one_line(err)
        return found
    found.images = len(plan.rows)
    found.removed = sum(r.result.startswith("deleted") for r in plan.removals)
    found.failed = sum(r.result.startswith("failed") for r in plan.removals)
    return found


def verify_args(schedule: Schedule, guests: list[str]) -> list[str]:
    """``verify --stale AGE --domain=G... [--budget T] [--verify-timeout S] --json``."""
    argv = ["verify", "--stale", schedule.verify_stale, *(f"--domain={g}" for g in guests),
            "--json"]
    if schedule.verify_budget:
        argv += ["--budget", schedule.verify_budget]
    if schedule.verify_timeout is not None:
        argv += ["--verify-timeout", repr(float(schedule.verify_timeout))]
    return argv


def _verify_answer(found: VerifyOutcome, stdout: str, stderr: str, returncode: int) -> None:
    try:
        rows = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else None
    except ValueError:
        rows = None
    if isinstance(rows, list):
        found.images = [r for r in rows if isinstance(r, dict)]
    else:
        last = (stderr.strip().splitlines() or [f"exit {returncode}"])[-1]
        found.error = one_line(last.removeprefix("snaptui: "))


def verify_here(schedule: Schedule, guests: list[str], login: str | None,
                command: list[str], common: list[str]) -> VerifyOutcome:
    """``snaptui verify --stale`` for this host's guests, a subprocess (its boot checks are
    the command's own, with their marks)."""
    found = VerifyOutcome(LOCAL)
    argv = [*command, *verify_args(schedule, guests), *common]
    glance_login = login if destination(schedule, login) == "glance" else None
    if glance_login:
        argv.append("--auth-stdin")
    try:
        proc = subprocess.run(  # noqa: S603 - an argv list, no shell
            argv, capture_output=True, text=True, check=False, timeout=STAGE_TIMEOUT_S,
            input=(json.dumps(glance_login) + "\n") if glance_login else "")
    except (OSError, subprocess.TimeoutExpired) as err:
        found.error = one_line(err)
        return found
    _verify_answer(found, proc.stdout, proc.stderr, proc.returncode)
    return found


# -- another host of the fleet -------------------------------------------------------------


def fleet_hosts(uri: str | None) -> list[Any]:
    """The hosts ``snapshot HOST:D`` knows: the schedule's ``-c`` URI, else ``[[hosts]]``."""
    from snaptui.core.fleet.hosts import resolve_hosts
    from snaptui.core.settings import load_settings

    return resolve_hosts([uri] if uri else None, load_settings())


def fleet_host(name: str, uri: str | None) -> Any:
    """The SSH host of the fleet named ``name``, as ``snapshot HOST:D`` finds it."""
    from snaptui.core.errors import BadInput

    for host in fleet_hosts(uri):
        if host.name == name:
            if not host.remote:
                raise BadInput(f"host {name} is not an SSH host of the fleet")
            return host
    raise BadInput(f"no fleet host named {name!r} ([[hosts]] in config.toml)")


def _remote(host: Any, args: list[str], login: str | None) -> list[dict[str, Any]]:
    from snaptui.core.fleet.remote_jobs import host_local_uri
    from snaptui.core.fleet.ssh import RemoteCall

    head, rest = args[:1], args[1:]
    argv = [*head, "-c", host_local_uri(host), *rest, *(["--auth-stdin"] if login else [])]
    return list(RemoteCall(host, argv, stdin_line=json.dumps(login) if login else None))


def prune_there(schedule: Schedule, name: str, guests: list[str],
                login: str | None) -> PruneOutcome:
    """``snaptui prune --domain=G... --backup-type T --keep-... --yes --json`` on host
    ``name``."""
    found = PruneOutcome(name)
    keep = [f"--keep-{rule}={n}" for rule, n in schedule.rules.items()]
    args = ["prune", *(f"--domain={g}" for g in guests), f"--backup-type={schedule.type}",
            *keep, "--yes", "--json"]
    try:
        answer = _remote(fleet_host(name, schedule.uri), args, login)
    except Exception as err:  # noqa: BLE001 - one host's failure is that host's line
        found.error = one_line(err)
        return found
    rows = [r for doc in answer for r in (doc.get("images") or []) if isinstance(r, dict)]
    found.images = len(rows)
    found.removed = sum(str(r.get("result", "")).startswith("deleted") for r in rows)
    found.failed = sum(str(r.get("result", "")).startswith("failed") for r in rows)
    return found


def verify_there(schedule: Schedule, name: str, guests: list[str],
                 login: str | None) -> VerifyOutcome:
    found = VerifyOutcome(name)
    try:
        found.images = _remote(fleet_host(name, schedule.uri), verify_args(schedule, guests),
                               login)
    except Exception as err:  # noqa: BLE001 - one host's failure is that host's line
        found.error = one_line(err)
    return found


def audit_verify(schedule: Schedule, outcome: VerifyOutcome) -> None:
    """One audit record per image the stale verify looked at (or one for its failure)."""
    if outcome.error:
        audit.record("schedule-verify", outcome.host, "failed", schedule=schedule.name,
                     host=outcome.host, error=outcome.error)
        return
    for row in outcome.images:
        if row.get("outcome") == "skipped":
            continue
        audit.record("schedule-verify", str(row.get("image_id")),
                     "ok" if row.get("outcome") == "verified" else "failed",
                     schedule=schedule.name, host=outcome.host, image=row.get("image_id"),
                     error=row.get("detail") or None)


def run_stages(schedule: Schedule, local: list[str], remote: dict[str, list[str]],
               login: str | None, command: list[str], common: list[str],
               say: Callable[[str], None]) -> tuple[list[PruneOutcome], list[VerifyOutcome]]:
    """Each host's prune (with keep rules), then each host's stale verify (with
    ``verify_stale``); every outcome said in one line."""
    prunes: list[PruneOutcome] = []
    verifies: list[VerifyOutcome] = []
    if remote and (schedule.keep or schedule.verify_stale):
        try:
            login = login_for_hosts(schedule, login)
        except Exception as err:  # noqa: BLE001 - the other hosts' stages then fail, said
            say(f"schedule {schedule.name}: no Keystone login for the other hosts: "
                f"{one_line(err)}")
    if schedule.keep:
        if local:
            prunes.append(prune_here(schedule, local, login))
        prunes += [prune_there(schedule, name, guests, login) for name, guests in remote.items()]
        for pruned in prunes:
            say(pruned.line(schedule))
    if schedule.verify_stale:
        if local:
            verifies.append(verify_here(schedule, local, login, command, common))
        verifies += [verify_there(schedule, name, guests, login)
                     for name, guests in remote.items()]
        for outcome in verifies:
            say(outcome.line(schedule))
            audit_verify(schedule, outcome)
    return prunes, verifies
