"""`scripts/lab guest ...`: build, start, remove and check the lab's real guests (via virsh).

  scripts/lab guest build                          build the cached artefacts (if missing)
  scripts/lab guest start NAME [--uefi] [--no-agent] [--no-wait]
                                                   define + start a TCG guest, wait for userspace
  scripts/lab guest remove NAME                    destroy + undefine it, drop its files
  scripts/lab guest check IMAGE                    e2fsck + records check of a disk image

A guest's files (disk copy, console log, OVMF variables) live in $SNAPTUI_LAB_DIR/guests/NAME.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import lab_guest
import lab_guest_check
from lab_guest_domain import DESCRIPTION, USERSPACE_MARKER, GuestSpec, domain_xml, prepare_files
from lab_proc import LabError, private_dir, say
from lab_system import URI

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def add_parser(sub) -> None:
    guest = sub.add_parser("guest", help="real Linux guests (TCG): build, start, remove, check")
    gsub = guest.add_subparsers(dest="guest_command", required=True)
    gsub.add_parser("build", help="build the cached guest artefacts when missing")
    start = gsub.add_parser("start", help="define and start a guest, wait for its userspace")
    start.add_argument("name")
    start.add_argument("--uefi", action="store_true", help="boot with OVMF (secure boot off)")
    start.add_argument("--no-agent", action="store_true", help="no guest agent channel")
    start.add_argument("--no-wait", action="store_true", help="do not wait for userspace")
    remove = gsub.add_parser("remove", help="destroy and undefine a guest made by start")
    remove.add_argument("name")
    check = gsub.add_parser("check", help="check a guest disk image (raw or qcow2)")
    check.add_argument("image", type=Path)


def _virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["virsh", "-q", "-c", URI, *args], capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise LabError(f"virsh {args[0]} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc


def _guest_dir(name: str) -> Path:
    if not NAME.fullmatch(name):
        raise LabError(f"bad guest name {name!r}: use letters, digits, '.', '_' and '-'")
    _, log_dir = lab_guest.lab_paths()
    return log_dir.parent / "guests" / name


def cmd_start(name: str, uefi: bool, agent: bool, wait: bool) -> int:
    workdir = _guest_dir(name)
    if _virsh("domstate", name, check=False).returncode == 0:
        raise LabError(f"a domain named {name} exists already")
    artefacts = lab_guest.ensure()
    private_dir(workdir.parent)
    spec = GuestSpec(name, workdir, uefi=uefi, agent=agent)
    prepare_files(spec, artefacts)
    xml = workdir / "domain.xml"
    xml.write_text(domain_xml(spec))
    _virsh("define", str(xml))
    start = time.monotonic()
    _virsh("start", name)
    if wait:
        deadline = start + 600
        while USERSPACE_MARKER not in spec.console.read_text(errors="replace"):
            if time.monotonic() > deadline or _virsh("domstate", name).stdout.strip() != \
                    "running":
                raise LabError(f"{name} did not reach userspace; see {spec.console}")
            time.sleep(0.2)
        say(f"{name}: userspace after {time.monotonic() - start:.1f} s (TCG)")
    print(f"guest {name} running\n  disk    {spec.disk}\n  console {spec.console}\n"
          f"  agent   {'org.qemu.guest_agent.0' if agent else 'none'}\n"
          f"  remove  scripts/lab guest remove {name}")
    return 0


def cmd_remove(name: str) -> int:
    workdir = _guest_dir(name)
    desc = _virsh("desc", name, check=False)
    if desc.returncode != 0:
        say(f"no domain {name}")
    elif desc.stdout.strip() != DESCRIPTION:
        raise LabError(f"{name} was not made by `scripts/lab guest start`; left alone")
    else:
        _virsh("destroy", name, check=False)
        _virsh("undefine", "--nvram", name)
        say(f"removed domain {name}")
    if workdir.is_dir():
        shutil.rmtree(workdir)
    return 0


def cmd_check(image: Path) -> int:
    if not image.is_file():
        raise LabError(f"no image file {image}")
    found = lab_guest_check.check_image(image)
    records = found.records
    print(f"filesystem  {'clean' if found.fs_clean else 'NOT CLEAN'}"
          f"{' (journal replayed first)' if found.needs_recovery else ''}")
    print(f"records     {'ok' if records.ok else 'BAD: ' + str(records.problem)}; "
          f"last {records.last}{', last one cut' if records.cut_tail else ''}")
    if not found.fs_clean:
        print(found.fsck_output.rstrip())
    return 0 if found.ok else 1


def main(args: argparse.Namespace) -> int:
    if os.geteuid() != 0 and args.guest_command != "check":
        raise LabError("real guests need root (apt-get, libvirt's system instance)")
    if args.guest_command == "build":
        start = time.monotonic()
        artefacts = lab_guest.ensure()
        say(f"guest artefacts ready in {time.monotonic() - start:.1f} s")
        print(artefacts.root)
        return 0
    if args.guest_command == "start":
        return cmd_start(args.name, args.uefi, not args.no_agent, not args.no_wait)
    if args.guest_command == "remove":
        return cmd_remove(args.name)
    return cmd_check(args.image)
