"""``snaptui schedule add|list|run|remove|pause|resume``: nightly snapshots and retention on
systemd timers (core/keep/systemd_units.py), or a crontab line where systemd does not run."""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from typing import Any

from snaptui.cli.output import line, note, print_json, print_table, table
from snaptui.cli.prune import add_keep_options, keep_rules
from snaptui.core.engine.plan import OUTPUT_FORMATS, QUIESCE_CHOICES, Mode
from snaptui.core.errors import BadInput
from snaptui.core.keep import schedule_control, schedules, systemd_units
from snaptui.core.keep.schedules import DEFAULT_DELAY, Schedule, check_name
from snaptui.core.priority import PRIORITIES


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("schedule", help="snapshot guests on a calendar and prune old images")
    common(p)
    verbs = p.add_subparsers(dest="schedule_verb", metavar="VERB", required=True)
    add = verbs.add_parser("add", help="define a schedule and install its systemd timer")
    common(add)
    add.add_argument("name", help="schedule name (letters, digits, - and _)")
    which = add.add_mutually_exclusive_group(required=True)
    which.add_argument("--domain", metavar="NAME", action="append", default=[],
                       help="a guest to snapshot (repeatable)")
    which.add_argument("--all", dest="all_domains", action="store_true",
                       help="every persistent guest of the host")
    add.add_argument("--exclude", metavar="NAME", action="append", default=[],
                     help="with --all: leave this guest out (repeatable)")
    add.add_argument("--on", required=True, metavar="CALENDAR",
                     help="when, as systemd's OnCalendar (daily, '*-*-* 02:00', 'Mon..Fri "
                     "22:30'; man systemd.time)")
    add.add_argument("--randomized-delay", default=DEFAULT_DELAY, metavar="SPAN",
                     help=f"RandomizedDelaySec of the timer (default {DEFAULT_DELAY})")
    add.add_argument("--replace", action="store_true",
                     help="replace the schedule of that name (and its timer)")
    add.add_argument("--user", action="store_true",
                     help="a user timer (~/.config/systemd/user) instead of a system one")
    g = add.add_argument_group("snapshot options (as snaptui snapshot)")
    g.add_argument("--mode", choices=[str(m) for m in Mode])
    g.add_argument("--to", dest="destination", choices=["glance", "library"])
    g.add_argument("--format", dest="out_format", choices=OUTPUT_FORMATS)
    g.add_argument("--priority", choices=PRIORITIES)
    g.add_argument("--quiesce", choices=QUIESCE_CHOICES)
    g.add_argument("--no-stream", action="store_true")
    g.add_argument("--backup-type", metavar="NAME",
                   help="the images' backup_type (default: the schedule's name); prune keeps "
                   "to it")
    g.add_argument("--verify", action="store_true", help="boot-check each new image")
    v = add.add_argument_group("re-verification (as snaptui verify --stale, after the prune)")
    v.add_argument("--verify-stale", metavar="AGE",
                   help="re-verify the guests' images not verified for AGE (7d) or never")
    v.add_argument("--verify-budget", metavar="DURATION",
                   help="with --verify-stale: start no boot check that could end after this")
    v.add_argument("--verify-timeout", metavar="SECONDS", type=float,
                   help="each boot check's timeout (--verify and --verify-stale; default 120)")
    add_keep_options(add)
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=run_add)

    listing = verbs.add_parser("list", help="schedules with their next and last run")
    common(listing)
    listing.add_argument("name", nargs="?", metavar="[HOST:][NAME]",
                         help="only this schedule; HOST: the schedules of that fleet host")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run_list)
    for verb, text, handler in (
            ("run", "run a schedule now (what its timer runs)", run_now),
            ("remove", "remove a schedule and its timer", run_remove),
            ("pause", "keep the schedule but run nothing until resumed", run_pause),
            ("resume", "undo pause", run_resume)):
        one = verbs.add_parser(verb, help=text)
        common(one)
        one.add_argument("name")
        one.add_argument("--user", action="store_true", help="its timer is a user timer")
        one.add_argument("--json", action="store_true")
        if verb == "run":
            one.add_argument("--remote-cloud", action="store_true",
                             help="HOST:NAME: use that host's own clouds.yaml instead of "
                             "sending your Keystone login through the SSH channel")
            one.add_argument("--auth-stdin", action="store_true", help=argparse.SUPPRESS)
        one.set_defaults(handler=handler)


def _schedule_from(args: argparse.Namespace) -> Schedule:
    snapshot = {k: v for k in ("mode", "destination", "out_format", "priority", "quiesce")
                if (v := getattr(args, k))}
    if args.no_stream:
        snapshot["stream"] = "off"
    rules = keep_rules(args)
    if rules.items():
        rules.check()
    return Schedule(name=check_name(args.name), on=args.on, domains=list(args.domain),
                    all_domains=args.all_domains, exclude=list(args.exclude),
                    backup_type=args.backup_type or "", snapshot=snapshot, verify=args.verify,
                    keep=rules.to_json(), uri=args.uri, cloud=args.cloud, library=args.library,
                    randomized_delay=args.randomized_delay,
                    verify_stale=args.verify_stale or "",
                    verify_budget=args.verify_budget or "",
                    verify_timeout=args.verify_timeout).check()


def routed(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``schedule VERB HOST:NAME`` runs on that fleet host, where its guests' disks are (as
    ``snapshot HOST:DOMAIN`` does): its snaptui does it, over SSH. For ``run`` the operator's
    Keystone login goes on the channel's stdin (``--auth-stdin``), never on argv."""
    def route(args: argparse.Namespace) -> int:
        text = args.name or ""
        head, sep, rest = text.partition(":")
        if not sep:
            return handler(args)
        from snaptui.cli.fleet import forwarded_argv, hosts_of, login_line

        hosts = hosts_of(args)
        host = next((h for h in hosts if h.name == head), None)
        if host is None:
            raise BadInput(f"{text!r}: no fleet host named {head!r} "
                           f"({', '.join(h.name for h in hosts)})")
        if not host.remote:
            args.name, args.uri = rest or None, host.uri
            return handler(args)
        login, extra = login_line(args) if args.schedule_verb == "run" else (None, [])
        argv = forwarded_argv(args, host, text, rest)
        if not rest:  # list HOST: → every schedule there
            argv.remove("")
        from snaptui.core.fleet.ssh import run_passthrough

        return run_passthrough(host, [*argv, *extra], stdin_line=login)
    return route


@routed
def run_add(args: argparse.Namespace) -> int:
    from snaptui.core.keep.schedule_run import snaptui_command
    schedule = _schedule_from(args)
    systemd_units.check_timespan(schedule.randomized_delay, "--randomized-delay")
    calendar = systemd_units.check_calendar(schedule.on)  # before anything is written
    if not args.replace and schedule.name in schedules.names():
        raise BadInput(f"schedule {schedule.name} exists (snaptui schedule list); --replace "
                       "replaces it")
    path = schedules.save(schedule)
    report: dict[str, Any] = {"schedule": schedule.to_json(), "file": str(path),
                              "next": calendar.next_elapse, "units": [], "crontab": None}
    say = note if args.json else line
    say(f"schedule {schedule.name} saved in {path}")
    overridden = bool(os.environ.get(systemd_units.DIR_ENV))
    command = snaptui_command()
    if systemd_units.systemd_running() or overridden:
        directory = systemd_units.unit_dir(args.user)
        written = systemd_units.write_units(schedule, command, directory)
        report["units"] = [str(p) for p in written]
        for unit in written:
            say(f"wrote {unit}")
        if systemd_units.systemd_running():
            timer = systemd_units.unit_names(schedule.name)[0]
            systemd_units.systemctl("daemon-reload", user=args.user)
            systemd_units.systemctl("enable", "--now", timer, user=args.user)
            say(f"enabled and started {timer}")
        else:
            say("systemd is not running here: the units are written, not enabled")
    else:
        cron = systemd_units.crontab_line(calendar, command, schedule.name, getpass.getuser())
        report["crontab"] = cron
        say("this host does not run systemd: no timer written; the /etc/cron.d line that "
            "does the same:" if cron else
            f"this host does not run systemd, and cron cannot say {calendar.normalized!r}: "
            "run `snaptui schedule run NAME` from your scheduler")
        if cron:
            say(cron)
    say(f"next run: {calendar.next_elapse or 'never'}")
    if args.json:
        print_json(report)
    return 0


@routed
def run_list(args: argparse.Namespace) -> int:
    if args.name:
        rows = [schedule_control.row(check_name(args.name)).to_json()]
        if rows[0]["problem"] and args.name not in schedules.names():
            raise BadInput(f"no schedule {args.name!r} (snaptui schedule list shows them)")
    else:
        rows = [r.to_json() for r in schedule_control.rows()]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        note("snaptui: no schedule (snaptui schedule add NAME --domain D --on daily ...)")
        return 0
    out = table("schedule", "on", "guests", "keep, verify", "next run", "last run", "result")
    for r in rows:
        result = (f"running since {r['running']}" if r["running"]
                  else r["problem"] or r["last_result"] or "—")
        out.add_row(r["name"] + (" (paused)" if r["paused"] else ""), r["on"] or "?",
                    ", ".join(r["guests"]),
                    "; ".join(x for x in (r["keep"], r["verify"] and f"verify {r['verify']}")
                              if x) or "—", r["next"] or "—",
                    r["last_run"] or "never", result)
    print_table(out)
    return 0


@routed
def run_now(args: argparse.Namespace) -> int:
    from snaptui.core.keep.schedule_run import run

    schedule = schedules.load(args.name)
    login = None
    if args.auth_stdin:  # a fleet host's run: the operator's login (cli/fleet.py)
        from snaptui.core.cloud.forwarded_login import read_auth_line

        login = read_auth_line()
    result = run(schedule, note if args.json else line, login)
    if args.json:
        print_json(result.to_json())
    return 0 if result.ok else 1


@routed
def run_remove(args: argparse.Namespace) -> int:
    schedules.load(args.name)  # NotFound for a name that is no schedule
    timer = systemd_units.unit_names(args.name)[0]
    directory = systemd_units.unit_dir(args.user)
    if systemd_units.systemd_running() and (directory / timer).exists():
        systemd_units.systemctl("disable", "--now", timer, user=args.user)
    gone = systemd_units.remove_units(args.name, directory) + schedules.remove(args.name)
    if systemd_units.systemd_running() and gone:
        systemd_units.systemctl("daemon-reload", user=args.user)
    if args.json:
        print_json({"removed": [str(p) for p in gone]})
    else:
        for path in gone:
            line(f"removed {path}")
    return 0


def _set_paused(args: argparse.Namespace, paused: bool) -> int:
    schedule_control.set_paused(args.name, paused, user=args.user)
    if args.json:
        print_json({"name": args.name, "paused": paused})
    else:
        line(f"schedule {args.name} {'paused' if paused else 'resumed'}")
    return 0


@routed
def run_pause(args: argparse.Namespace) -> int:
    return _set_paused(args, True)


@routed
def run_resume(args: argparse.Namespace) -> int:
    return _set_paused(args, False)
