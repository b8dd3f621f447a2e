"""Leftovers of direct snapshots in Ceph: snapshots on the guests' RBD disks and clones in
Glance's rbd pool that no Glance image owns.

- ``snaptui-<job>`` on a domain's RBD disk: pre-selected when the job is in this host's journal,
  is no longer running and is old enough, and every clone made from it goes too.
- A clone in Glance's pool named by an image id Glance does not have: pre-selected when a job of
  this host's journal planned it (its plan names the clone), that job is no longer running, the
  scan asks the same cloud the job used and it is old enough. Other such images are named like
  the clones Nova's ``direct_snapshot`` makes (the image id): "likely Nova leftover", never
  pre-selected. Glance hides other projects' private images from a non-admin login, so "no
  image" is what this login sees; the reason says so.
- ``snaptui-verify-<job>`` in a domain disk's pool: the copy-on-write clone a boot check of an
  RBD image boots, left when the check was killed. Pre-selected when the job is in this host's
  journal, no longer runs and no domain uses it; a standalone ``snaptui verify`` keeps no
  journal, so its clone is shown but only removed when chosen.
- A 32-hex-digit snapshot on a domain's RBD disk (Nova's direct_snapshot names its source
  snapshot ``uuid4().hex``): "likely Nova leftover", never pre-selected.

Clones are reported before snapshots, so removing the chosen ones in order removes children
first. The cluster is reached as each disk reaches it (its monitors, cephx user and libvirt
secret); Glance's pool is read through a connection of a disk on the same cluster (fsid).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from snaptui.core.cleanup.context import ScanContext
from snaptui.core.cleanup.findings import (
    JOB_ID_RE,
    LIKELY_NOVA,
    NOT_OURS,
    OWN_SNAPSHOT_RE,
    Finding,
    Kind,
    command,
    job_id_age_s,
)
from snaptui.core.engine.locks import locked_by
from snaptui.core.engine.rbd_access import open_cluster
from snaptui.core.errors import CephError, CloudError, HypervisorError, NotFound, SnaptuiError
from snaptui.core.models import DiskInfo, DomainInfo, NetworkSource
from snaptui.core.present import duration_text
from snaptui.core.rbd import cluster as rbd_cluster
from snaptui.core.rbd import pool as rbd_pool
from snaptui.core.rbd.cluster import RbdCluster
from snaptui.core.verify.boot import VERIFY_PREFIX

VERIFY_CLONE_RE = re.compile(rf"^{VERIFY_PREFIX}(?P<job>{JOB_ID_RE})$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NOVA_RBD_SNAPSHOT_RE = re.compile(r"^[0-9a-f]{32}$")  # Nova: uuid.uuid4().hex
SNAPTUI = "snaptui"


def source_key(source: NetworkSource) -> tuple[Any, ...]:
    """Disks with the same key reach their cluster the same way (one connection for all)."""
    return (source.hosts, source.auth_user, source.secret_uuid, source.secret_usage,
            source.config_file)


def source_from(data: dict[str, Any]) -> NetworkSource:
    """A NetworkSource back from a finding's details (JSON turned the tuples into lists)."""
    names = {f.name for f in dataclasses.fields(NetworkSource)}
    values = {k: v for k, v in data.items() if k in names}
    values["hosts"] = tuple((h, p) for h, p in values.get("hosts") or ())
    return NetworkSource(**values)


def rbd_argv(source: NetworkSource, *argv: str) -> str:
    """An ``rbd`` command line as the disk's cephx user reaches the cluster (display only)."""
    opts: list[str] = []
    if source.config_file:
        opts += ["-c", source.config_file]
    if source.auth_user:
        opts += ["--id", source.auth_user]
    mons = ",".join(f"{h}:{p}" if p else h for h, p in source.hosts if h)
    if mons:
        opts += ["-m", mons]
    return command("rbd", *opts, *argv)


@dataclass
class Clusters:
    """One open connection per cluster the domains' RBD disks are on, by fsid."""

    by_key: dict[tuple[Any, ...], tuple[RbdCluster, NetworkSource]] = field(default_factory=dict)
    by_fsid: dict[str, tuple[RbdCluster, NetworkSource]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def close(self) -> None:
        for cluster, _ in self.by_key.values():
            with contextlib.suppress(Exception):
                cluster.close()
        self.by_key.clear()
        self.by_fsid.clear()


def _connect(ctx: ScanContext, disks: Iterable[DiskInfo]) -> Clusters:
    """Connect once per distinct way of reaching a cluster (blocking)."""
    assert ctx.host is not None
    clusters = Clusters()
    for disk in disks:
        source = disk.rbd
        if source is None or source_key(source) in clusters.by_key:
            continue
        try:
            cluster = open_cluster(ctx.host, source)
        except (CephError, HypervisorError) as err:
            clusters.problems.append(str(err))
            continue
        clusters.by_key[source_key(source)] = (cluster, source)
        clusters.by_fsid.setdefault(cluster.fsid, (cluster, source))
    return clusters


# ---------------------------------------------------------------- clones in Glance's pool


@dataclass(frozen=True)
class GlancePool:
    """Glance's rbd store on one of the domains' clusters."""

    store_id: str
    pool: str
    fsid: str


def glance_pools(ctx: ScanContext, fsids: Iterable[str]) -> list[GlancePool]:
    """Glance's rbd stores on these clusters (none when the store is not Glance)."""
    rbd_stores = getattr(ctx.store, "rbd_stores", None)
    if not callable(rbd_stores):
        return []
    wanted = set(fsids)
    return [GlancePool(str(s["id"]), str(s["pool"]), str(s["fsid"])) for s in rbd_stores()
            if s.get("pool") and s.get("fsid") in wanted]


def _glance_has(ctx: ScanContext, listed: set[str], image_id: str) -> bool:
    if image_id in listed:
        return True
    try:
        ctx.store.show(image_id)  # type: ignore[union-attr]
    except NotFound:
        return False
    return True


def _store_cloud(ctx: ScanContext) -> str | None:
    return getattr(getattr(ctx.store, "cloud", None), "name", None)


def _clone_verdict(ctx: ScanContext, glance: GlancePool, image: rbd_pool.PoolImage,
                   children: tuple[str, ...]) -> dict[str, Any]:
    """safe / reason / label / unowned / unowned_ok / refused / job of one clone."""
    no_image = f"Glance has no image {image.name}"
    age = None if image.created is None else max(0.0, ctx.now - image.created)
    refused = None
    if children:
        refused = f"clones were made from it ({', '.join(children)})"
    proof = ctx.jobs.rbd_clones.get(f"{glance.fsid}/{glance.pool}/{image.name}")
    if proof is not None:
        job, cloud = proof
        verdict: dict[str, Any] = {"label": SNAPTUI, "job_id": job, "refused": refused,
                                   "safe": False, "unowned": False, "unowned_ok": False}
        if job in ctx.jobs.job_ids:
            verdict["refused"] = refused or f"snaptui job {job} is still running"
            verdict["reason"] = f"clone of snaptui job {job}, which is still running"
            return verdict
        store_cloud = _store_cloud(ctx)
        if cloud and store_cloud and cloud != store_cloud:
            verdict["reason"] = (f"clone of snaptui job {job}, whose image went to cloud "
                                 f"{cloud!r}, not {store_cloud!r} asked now: not pre-selected")
        elif not ctx.old_enough(age):
            verdict["reason"] = (f"clone of snaptui job {job} and {no_image}, but only "
                                 f"{duration_text(age)} old (--older-than)")
        elif refused:
            verdict["reason"] = f"clone of snaptui job {job} and {no_image}; {refused}"
        else:
            verdict["safe"] = True
            verdict["reason"] = (f"left by snaptui job {job}, which is no longer running, and "
                                 f"{no_image} ({duration_text(age)} old)")
        return verdict
    parent_snap = (image.parent or "").rpartition("@")[2]
    own = OWN_SNAPSHOT_RE.match(parent_snap)
    if own:
        ok = refused is None and ctx.old_enough(age)
        return {"label": SNAPTUI, "job_id": own.group("job"), "refused": refused,
                "safe": False, "unowned": True, "unowned_ok": ok,
                "reason": (f"clone of {image.parent}, but snaptui job {own.group('job')} is not "
                           f"in this host's journal and {no_image}: kept unless chosen "
                           "explicitly" + (f"; {refused}" if refused else ""))}
    where = f"an unflattened clone of {image.parent}" if image.parent else "a standalone image"
    return {"label": LIKELY_NOVA, "job_id": None, "refused": refused, "safe": False,
            "unowned": True, "unowned_ok": False,
            "reason": (f"{LIKELY_NOVA}: {where} named by an image id, as Nova's direct_snapshot "
                       f"names its clone, and {no_image} visible to this login (another "
                       "project's private image is not visible either): flagged only, never "
                       "pre-selected" + (f"; {refused}" if refused else ""))}


def _clone_commands(source: NetworkSource, image: rbd_pool.PoolImage) -> tuple[str, ...]:
    lines = [rbd_argv(source, "snap", "unprotect", f"{image.spec}@{s.name}")
             for s in image.snapshots if s.protected]
    if image.snapshots:
        lines.append(rbd_argv(source, "snap", "purge", image.spec))
    lines.append(rbd_argv(source, "rm", image.spec))
    return tuple(lines)


def _clone_finding(ctx: ScanContext, glance: GlancePool, source: NetworkSource,
                   image: rbd_pool.PoolImage, leftovers: set[str]) -> Finding:
    children = tuple(c for c in image.children if c not in leftovers)
    verdict = _clone_verdict(ctx, glance, image, children)
    domain = ctx.domain_of_job(verdict["job_id"])
    if domain is None and image.parent:
        domain = _disk_owner(ctx, image.parent.partition("@")[0])
    return Finding(
        key=f"rbd:{glance.fsid}/{image.spec}", kind=Kind.RBD,
        location=f"rbd {image.spec} (Glance store {glance.store_id}: no image)",
        size=image.used, safe=verdict["safe"], reason=verdict["reason"],
        commands=_clone_commands(source, image), domain=domain, action="rbd rm",
        refused=verdict["refused"], unowned=verdict["unowned"],
        unowned_ok=verdict["unowned_ok"], label=verdict["label"],
        details={"what": "clone", "fsid": glance.fsid, "pool": image.pool, "image": image.name,
                 "store": glance.store_id, "parent": image.parent, "job_id": verdict["job_id"],
                 "created": image.created, "source": dataclasses.asdict(source),
                 "snapshots": [dataclasses.asdict(s) for s in image.snapshots]},
    )


def _disk_owner(ctx: ScanContext, spec: str) -> str | None:
    """The domain whose RBD disk is ``pool/image``."""
    for dom in ctx.domains:
        if any(d.rbd and f"{d.rbd.pool}/{d.rbd.image}" == spec for d in dom.disks):
            return dom.name
    return None


def _pool_candidates(cluster: RbdCluster, glance: GlancePool,
                     has_image: Any) -> list[rbd_pool.PoolImage]:
    """Images of Glance's pool named by an image id Glance does not have (blocking)."""
    found = []
    for name in rbd_pool.image_names(cluster, glance.pool):
        if not UUID_RE.match(name) or has_image(name):
            continue
        image = rbd_pool.read_image(cluster, glance.pool, name)
        if image is not None and not has_image(name):  # an upload may have finished since
            found.append(image)
    return found


# ---------------------------------------------------------------- boot checks' clones


def _verify_verdict(ctx: ScanContext, job: str, in_use: str | None,
                    age: float | None) -> dict[str, Any]:
    refused = f"the disk of domain {in_use}" if in_use else None
    verdict: dict[str, Any] = {"label": SNAPTUI, "job_id": job, "safe": False,
                               "unowned": False, "unowned_ok": False, "refused": refused}
    if job in ctx.jobs.job_ids:
        verdict["refused"] = refused or f"snaptui job {job} is still running"
        verdict["reason"] = f"boot-check clone of snaptui job {job}, which is still running"
    elif job not in ctx.jobs.journal_ids:
        verdict.update(unowned=True, unowned_ok=refused is None and ctx.old_enough(age))
        verdict["reason"] = (f"boot-check clone named by snaptui job {job}, which is not in this "
                             "host's journal (a standalone verify keeps none): kept unless "
                             "chosen explicitly")
    elif not ctx.old_enough(age):
        verdict["reason"] = (f"boot-check clone of snaptui job {job}, but only "
                             f"{duration_text(age)} old (--older-than)")
    else:
        verdict["safe"] = refused is None
        verdict["reason"] = (f"boot-check clone left by snaptui job {job}, which is no longer "
                             f"running ({duration_text(age)} old)")
    if refused and job not in ctx.jobs.job_ids:
        verdict["reason"] += f"; {refused}"
    return verdict


def _verify_clone_findings(ctx: ScanContext, cluster: RbdCluster, source: NetworkSource,
                           pool: str) -> list[Finding]:
    """Boot checks' clones left in one pool of the domains' disks (blocking)."""
    found = []
    for name in rbd_pool.image_names(cluster, pool):
        own = VERIFY_CLONE_RE.match(name)
        if own is None:
            continue
        job = own.group("job")
        domain = ctx.domain_of_job(job)
        if ctx.only_domains is not None and domain not in ctx.only_domains:
            continue  # --domain: a clone is its job's domain's (unknown: none asked for)
        image = rbd_pool.read_image(cluster, pool, name)
        if image is None:
            continue  # its check ended while scanning
        verdict = _verify_verdict(ctx, job, _disk_owner(ctx, image.spec),
                                  job_id_age_s(job, ctx.now))
        found.append(Finding(
            key=f"rbd:{cluster.fsid}/{image.spec}", kind=Kind.RBD,
            location=f"rbd {image.spec} (boot check of {image.parent or 'an image'})",
            size=image.used, safe=verdict["safe"], reason=verdict["reason"],
            commands=_clone_commands(source, image), domain=domain, action="rbd rm",
            refused=verdict["refused"], unowned=verdict["unowned"],
            unowned_ok=verdict["unowned_ok"], label=verdict["label"],
            details={"what": "verify-clone", "fsid": cluster.fsid, "pool": pool, "image": name,
                     "parent": image.parent, "job_id": job, "created": image.created,
                     "source": dataclasses.asdict(source),
                     "snapshots": [dataclasses.asdict(s) for s in image.snapshots]},
        ))
    return found


# ---------------------------------------------------------------- snapshots on domain disks


def _snapshot_verdict(ctx: ScanContext, dom: DomainInfo, name: str, children: tuple[str, ...],
                      safe_children: bool) -> dict[str, Any] | None:
    own = OWN_SNAPSHOT_RE.match(name)
    if own is None:
        if not NOVA_RBD_SNAPSHOT_RE.match(name):
            return None  # somebody's snapshot with a name of their own: not a leftover of ours
        return {"label": LIKELY_NOVA, "job_id": None, "safe": False, "unowned": True,
                "unowned_ok": False, "refused": None,
                "reason": (f"{LIKELY_NOVA} (32 hex digits, as Nova's direct_snapshot names the "
                           f"snapshot it clones), {NOT_OURS}: flagged only, never pre-selected"
                           + (f"; clones made from it: {', '.join(children)}" if children
                              else ""))}
    job = own.group("job")
    age = job_id_age_s(job, ctx.now)
    refused = locked_by(dom.name, dom.uuid)
    if job in ctx.jobs.job_ids:
        return {"label": SNAPTUI, "job_id": job, "safe": False, "unowned": False,
                "unowned_ok": False, "refused": refused or f"snaptui job {job} is still running",
                "reason": f"snapshot of snaptui job {job}, which is still running"}
    verdict: dict[str, Any] = {"label": SNAPTUI, "job_id": job, "safe": False, "unowned": False,
                               "unowned_ok": False, "refused": refused}
    blocked = [refused] if refused else []
    if children and not safe_children:
        blocked.append(f"clones were made from it ({', '.join(children)}), not all of them "
                       "leftovers that go first")
    if job not in ctx.jobs.journal_ids:
        verdict.update(unowned=True, unowned_ok=not blocked and ctx.old_enough(age))
        verdict["reason"] = (f"named by snaptui job {job}, which is not in this host's journal "
                             "(another host's or state dir's?): kept unless chosen explicitly")
    elif not ctx.old_enough(age):
        verdict["reason"] = (f"left by snaptui job {job}, but only {duration_text(age)} old "
                             "(--older-than)")
    else:
        verdict["reason"] = (f"left by snaptui job {job}, which is no longer running "
                             f"({duration_text(age)} old)")
        verdict["safe"] = not blocked
    if blocked:
        verdict["reason"] += "; " + "; ".join(blocked)
    if children and safe_children:
        verdict["reason"] += f"; its clones ({', '.join(children)}) go first"
    return verdict


def _disk_findings(ctx: ScanContext, dom: DomainInfo, disk: DiskInfo, cluster: RbdCluster,
                   fsid: str, clones: dict[str, Finding]) -> list[Finding]:
    """Snapshot leftovers on one RBD disk (blocking)."""
    source = disk.rbd
    assert source is not None
    image = rbd_pool.read_image(cluster, source.pool, source.image, measure=False)
    if image is None:
        return []
    found = []
    for snap in image.snapshots:
        kids = tuple(snap.children)
        safe_children = all(c in clones and clones[c].safe for c in kids)
        verdict = _snapshot_verdict(ctx, dom, snap.name, kids, safe_children)
        if verdict is None:
            continue
        spec = f"{image.spec}@{snap.name}"
        commands = ([rbd_argv(source, "snap", "unprotect", spec)] if snap.protected else []) + \
            [rbd_argv(source, "snap", "rm", spec)]
        found.append(Finding(
            key=f"rbd:{fsid}/{spec}", kind=Kind.RBD,
            location=f"rbd {spec} ({dom.name} {disk.target})",
            size=rbd_pool.held_by_snapshot(cluster, source.pool, source.image, snap.name),
            safe=verdict["safe"], reason=verdict["reason"], commands=tuple(commands),
            domain=dom.name, action="rbd snap rm", refused=verdict["refused"],
            unowned=verdict["unowned"], unowned_ok=verdict["unowned_ok"], label=verdict["label"],
            details={"what": "snapshot", "fsid": fsid, "pool": source.pool,
                     "image": source.image, "name": snap.name, "target": disk.target,
                     "protected": snap.protected, "children": list(kids),
                     "job_id": verdict["job_id"], "domain_uuid": dom.uuid,
                     "source": dataclasses.asdict(source)},
        ))
    return found


# ---------------------------------------------------------------- the scanner


def _rbd_disks(domains: Iterable[DomainInfo]) -> list[tuple[DomainInfo, DiskInfo]]:
    return [(dom, disk) for dom in domains for disk in dom.disks
            if disk.rbd is not None and not disk.rbd.snapshot]


async def scan_rbd(ctx: ScanContext) -> AsyncIterator[Finding]:
    """Clones in Glance's rbd pools first, then snapshots on the domains' RBD disks."""
    disks = _rbd_disks(ctx.domains)
    if ctx.host is None or not disks or not rbd_cluster.available():
        return
    clusters = await asyncio.to_thread(_connect, ctx, (d for _, d in disks))
    problems = clusters.problems
    try:
        clones: dict[str, Finding] = {}
        try:
            for finding in await _scan_clones(ctx, clusters):
                clones[f"{finding.details['pool']}/{finding.details['image']}"] = finding
                yield finding
        except SnaptuiError as err:  # the disks' snapshots are still worth a look
            problems.append(f"clones in Glance's pool: {err}")
        pools = {(source_key(d.rbd), d.rbd.pool) for _, d in disks if d.rbd is not None}
        for key, pool in sorted(pools, key=lambda kp: kp[1]):
            if (entry := clusters.by_key.get(key)) is None:
                continue
            try:
                for finding in await asyncio.to_thread(_verify_clone_findings, ctx, *entry,
                                                       pool):
                    yield finding
            except CephError as err:
                problems.append(f"boot checks' clones in pool {pool}: {err}")
        wanted = [(dom, disk) for dom, disk in disks if ctx.wanted(dom)]
        for done, (dom, disk) in enumerate(wanted):
            ctx.progress(Kind.RBD, done, len(wanted), f"{dom.name} {disk.target}")
            assert disk.rbd is not None
            entry = clusters.by_key.get(source_key(disk.rbd))
            if entry is None:
                continue
            cluster = entry[0]
            try:
                found = await asyncio.to_thread(_disk_findings, ctx, dom, disk, cluster,
                                                cluster.fsid, clones)
            except CephError:
                continue  # removed while scanning: nothing of it to clean now
            for finding in found:
                yield finding
        ctx.progress(Kind.RBD, len(wanted), len(wanted))
    finally:
        await asyncio.to_thread(clusters.close)
    if problems:  # after the findings: iter_findings makes it one line of the report
        raise SnaptuiError("; ".join(problems))


async def _scan_clones(ctx: ScanContext, clusters: Clusters) -> list[Finding]:
    if ctx.store is None or not clusters.by_fsid:
        return []
    try:
        pools = await asyncio.to_thread(glance_pools, ctx, clusters.by_fsid)
    except CloudError as err:
        raise SnaptuiError(f"Glance's rbd stores cannot be read ({err})") from None
    if not pools:
        return []
    listed = {image.id for image in await asyncio.to_thread(lambda: list(
        ctx.store.iter_images()))}  # type: ignore[union-attr]

    def has_image(name: str) -> bool:
        return _glance_has(ctx, listed, name)

    findings: list[Finding] = []
    for glance in pools:
        cluster, source = clusters.by_fsid[glance.fsid]
        ctx.progress(Kind.RBD, 0, None, f"Glance pool {glance.pool}")
        candidates = await asyncio.to_thread(_pool_candidates, cluster, glance, has_image)
        specs = {c.spec for c in candidates}
        findings += [_clone_finding(ctx, glance, source, image, specs) for image in candidates]
    return findings
