"""Fault injection into a job's libvirt domain calls (``SNAPTUI_FAULT``), for tests only.

Not part of snaptui: ``sitecustomize.py`` beside this file installs it into a job process
started with this directory on ``PYTHONPATH`` (``install_in`` does both), through the
production seam ``snaptui.core.engine.context.DOMAIN_WRAPPERS``, which is empty otherwise.

Some failures cannot be made to happen for real in the lab: libvirtd will not refuse to restart a
guest from its managed save image, nor refuse ``blockJobAbort``, on demand; and the lab's guests
have no OS, so no guest agent: ``fsFreeze`` always fails, ``fsThaw`` is never reached. The tests
of those rollback paths (tests/test_injected_faults.py) set ``SNAPTUI_FAULT`` before launching
a job; the job process inherits it and ``JobContext.domain()`` passes the libvirt domain
through the installed wrapper, a proxy that intercepts the named calls. Every other call goes
to libvirt unchanged.

Format: ``SNAPTUI_FAULT="STEP:METHOD[=ACTION][,STEP:METHOD[=ACTION]...]"``

- ``STEP``: the step running when the call is made (``JobContext.current_step``; during rollback,
  the step being undone): a full name (``abort:vda``) or its kind (``abort`` matches every disk).
- ``METHOD``: a ``virDomain`` method name: ``create``, ``fsFreeze``, ``blockJobAbort``, ...
- ``ACTION``: ``fail`` (default) raises ``libvirt.libvirtError("injected fault: ...")`` without
  calling libvirt; ``ok`` returns 0 without calling libvirt (a freeze "succeeds" on a guest
  that has no agent, so that the thaw is reached); ``once``: fails the first matching call
  only (the step fails, its undo, which runs under the same step name, does not).

The Ceph cluster connection of an RBD step (``snaptui.core.rbd.cluster.RbdCluster``) is wrapped
the same way (``CLUSTER_WRAPPERS``): ``METHOD`` is then ``image`` or ``ioctx``, and a failing
call raises ``CephError("injected fault: ...")``.

Unset (or empty), ``wrap_domain`` returns libvirt's own object.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest

ENV = "SNAPTUI_FAULT"
SEAM_DIR = Path(__file__).resolve().parent
ACTIONS = ("fail", "ok", "once")
_FIRED: set[tuple[str, str]] = set()  # (step, method) of the "once" faults already raised


@dataclass(frozen=True)
class Fault:
    step: str
    method: str
    action: str = "fail"

    def matches(self, step: str | None, method: str) -> bool:
        if method != self.method or step is None:
            return False
        return step == self.step or step.partition(":")[0] == self.step


def parse(spec: str) -> list[Fault]:
    """``STEP:METHOD[=ACTION]`` items, comma-separated; ValueError on a malformed one."""
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        target, _, action = item.partition("=")
        step, _, method = target.rpartition(":")
        action = action or "fail"
        if not step or not method or action not in ACTIONS:
            raise ValueError(f"{ENV}: {item!r} is not STEP:METHOD[=fail|ok]")
        faults.append(Fault(step, method, action))
    return faults


def injected_error(method: str, step: str | None) -> libvirt.libvirtError:
    """A libvirtError that reads like libvirt's own (``get_error_message()`` is set)."""
    message = f"injected fault: {method} refused in step {step} ({ENV})"
    err = libvirt.libvirtError(message)
    err.err = (libvirt.VIR_ERR_OPERATION_FAILED, libvirt.VIR_FROM_NONE, message,
               libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    err.args = (message,)
    return err


class FaultyDomain:
    """A ``virDomain`` whose listed methods fail (or succeed without libvirt) in listed steps."""

    def __init__(self, dom: libvirt.virDomain, faults: list[Fault],
                 current_step: Callable[[], str | None]) -> None:
        self._dom = dom
        self._faults = faults
        self._current_step = current_step

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._dom, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            step = self._current_step()
            for fault in self._faults:
                if fault.matches(step, name) and _fires(fault, step):
                    if fault.action == "ok":
                        return 0
                    raise self._error(name, step)
            return attr(*args, **kwargs)
        return call

    @staticmethod
    def _error(method: str, step: str | None) -> Exception:
        return injected_error(method, step)


def _fires(fault: Fault, step: str | None) -> bool:
    if fault.action != "once":
        return True
    key = (str(step), fault.method)
    if key in _FIRED:
        return False
    _FIRED.add(key)
    return True


class FaultyCluster(FaultyDomain):
    """An ``RbdCluster`` whose listed methods fail in listed steps."""

    @staticmethod
    def _error(method: str, step: str | None) -> Exception:
        from snaptui.core.errors import CephError

        return CephError(f"injected fault: {method} refused in step {step} ({ENV})")


def wrap_cluster(cluster: Any, current_step: Callable[[], str | None]) -> Any:
    faults = parse(os.environ.get(ENV, ""))
    return FaultyCluster(cluster, faults, current_step) if faults else cluster


def wrap_domain(dom: libvirt.virDomain, current_step: Callable[[], str | None]) -> Any:
    """``dom`` itself, or a ``FaultyDomain`` when ``SNAPTUI_FAULT`` names faults."""
    faults = parse(os.environ.get(ENV, ""))
    return FaultyDomain(dom, faults, current_step) if faults else dom


def install() -> None:
    """Wrap every job domain of this process (called by sitecustomize when ENV is set)."""
    from snaptui.core.engine import context

    if wrap_domain not in context.DOMAIN_WRAPPERS:
        context.DOMAIN_WRAPPERS.append(wrap_domain)
    if wrap_cluster not in context.CLUSTER_WRAPPERS:
        context.CLUSTER_WRAPPERS.append(wrap_cluster)


def install_in(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    """Jobs launched by this test inherit ``spec`` and load this module at start-up."""
    parse(spec)  # a malformed spec fails the test here, not in the job
    monkeypatch.setenv(ENV, spec)
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{SEAM_DIR}{os.pathsep}{path}" if path else str(SEAM_DIR))
