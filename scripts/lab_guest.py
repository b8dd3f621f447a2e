"""Real guests for the lab: a self-booting Linux disk built from Debian packages (stdlib only).

The disk (raw layout, stored as qcow2) boots on its own under BIOS and UEFI, as a Glance image
would in Nova:

  MBR (syslinux mbr.bin, partition 1 active)
  p1  FAT16 "SNAPBOOT", 40 MiB: ldlinux.sys/.c32 (BIOS), EFI/BOOT/BOOTX64.EFI = syslinux.efi +
      ldlinux.e64 (UEFI), syslinux.cfg, vmlinuz (linux-image-cloud-amd64), initrd.img
  p2  ext4 "snaptui-data": the guest's /data, where the writer appends /data/records

The initramfs is the guest's whole userspace: busybox-static, qemu-guest-agent with its shared
libraries (copied from the host, which has them for QEMU), the virtio modules and /init
(scripts/lab_guest_init). The artefacts are cached under $SNAPTUI_LAB_CACHE/guests/KEY, KEY
being a digest of the packages' versions and of this builder, so a rebuild happens only when one
of them changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab_proc import LabError, private_dir, run, say
from lab_system import ensure_packages

HERE = Path(__file__).resolve().parent
INIT = HERE / "lab_guest_init"
KERNEL_META = "linux-image-cloud-amd64"
GUEST_PACKAGES = ("busybox-static", "qemu-guest-agent")
HOST_PACKAGES = ("e2fsprogs", "mtools", "syslinux", "syslinux-common", "syslinux-efi", "ovmf",
                 "cpio", "qemu-utils")
MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
           "virtio_pci", "virtio_blk", "virtio_console")
MIB = 1 << 20
BOOT_START, BOOT_SIZE = 1 * MIB, 40 * MIB
DATA_START = BOOT_START + BOOT_SIZE
DISK_SIZE = 128 * MIB
DATA_LABEL = "snaptui-data"
RECORDS_PATH = "/records"  # inside the data filesystem (/data/records in the guest)
CMDLINE = "console=ttyS0,115200 quiet"
SYSLINUX_CFG = f"""DEFAULT linux
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND {CMDLINE}
"""
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@dataclass(frozen=True)
class Artefacts:
    """The cached files one guest build produced (read-only: guests boot from copies)."""

    root: Path

    disk = property(lambda self: self.root / "disk.qcow2")
    kernel = property(lambda self: self.root / "vmlinuz")
    initrd = property(lambda self: self.root / "initrd.img")
    manifest_file = property(lambda self: self.root / "manifest.json")

    def manifest(self) -> dict:
        return json.loads(self.manifest_file.read_text())


def _capture(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {proc.stderr.strip()[:300]}")
    return proc.stdout


def candidates(packages: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """apt's candidate Version and Depends of each package (one apt-cache call)."""
    text = _capture(["apt-cache", "show", "--no-all-versions", *packages])
    found = {}
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version|Depends): (.*)$", stanza, re.M))
        if "Package" in fields:
            found[fields["Package"]] = fields
    missing = [p for p in packages if "Version" not in found.get(p, {})]
    if missing:
        raise LabError(f"apt knows no version of {' '.join(missing)}; run apt-get update")
    return found


def package_versions() -> dict[str, str]:
    """The exact packages the guest is built from, name -> version (the kernel resolved)."""
    found = candidates((KERNEL_META, *GUEST_PACKAGES))
    match = re.match(r"(linux-image-[^\s,(]+) \(= ([^)\s]+)\)", found[KERNEL_META].get(
        "Depends", ""))
    if not match:
        raise LabError(f"cannot find the kernel package {KERNEL_META} depends on")
    versions = {match.group(1): match.group(2)}
    versions.update({name: found[name]["Version"] for name in GUEST_PACKAGES})
    for host in ("syslinux-common", "syslinux-efi"):
        versions[host] = _capture(["dpkg-query", "-W", "-f=${Version}", host]).strip()
    return versions


def cache_key(versions: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode())
    for source in (Path(__file__), INIT):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def guests_dir(cache: Path) -> Path:
    return cache / "guests"


def _download(packages: list[str], into: Path, log: Path) -> None:
    """apt-get download (apt-get update once if the lists are stale), then dpkg-deb -x."""
    debs = into / "debs"
    debs.mkdir()  # private: apt warns that it downloads unsandboxed as root, which is fine
    argv = ["apt-get", "download", "-q", *packages]
    proc = subprocess.run(argv, cwd=debs, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        say("apt-get download failed; running apt-get update once")
        run(["apt-get", "update", "-q"], log, what="apt-get update")
        proc = subprocess.run(argv, cwd=debs, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"apt-get download {' '.join(packages)} failed: "
                           f"{proc.stderr.strip()[-300:]}")
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(into / "pkgroot")], log, what="dpkg-deb -x")


def _libraries(binary: Path) -> list[Path]:
    """The shared libraries ``ldd`` resolves for ``binary`` (all present on the host)."""
    out = _capture(["ldd", str(binary)])
    libs = re.findall(r"(/\S+) \(0x", out)
    if "not found" in out or not libs:
        raise LabError(f"ldd {binary}: a library is missing on this host:\n{out}")
    return [Path(lib) for lib in libs]


def _initramfs(pkgroot: Path, work: Path, out: Path, log: Path) -> None:
    tree = work / "initramfs"
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "lib/modules", "etc", "proc", "sys",
                "dev", "run", "tmp", "data"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(pkgroot / "bin" / "busybox", tree / "bin" / "busybox")
    qga = pkgroot / "usr" / "sbin" / "qemu-ga"
    shutil.copy2(qga, tree / "usr" / "sbin" / "qemu-ga")
    for lib in _libraries(qga):  # at the paths ldd names, the loader at /lib64/...
        dest = tree / str(lib).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), dest)
    kernel_mods = next((pkgroot / "lib" / "modules").iterdir()) / "kernel"
    for name in MODULES:
        found = [p for p in kernel_mods.rglob(f"{name}.ko*")]
        if len(found) != 1:
            raise LabError(f"module {name} not found (or ambiguous) in the kernel package")
        if found[0].suffix != ".ko":
            raise LabError(f"module {found[0].name} is compressed; the guest's insmod "
                           "expects plain .ko files")
        shutil.copy2(found[0], tree / "lib" / "modules" / f"{name}.ko")
    shutil.copy2(INIT, tree / "init")
    os.chmod(tree / "init", 0o755)
    shutdown = tree / "sbin" / "shutdown"
    shutdown.write_text('#!/bin/sh\n# qemu-ga guest-shutdown: ask /init to stop its writer and '
                        'unmount /data\ncase " $* " in *" -r "*) kill -USR1 1 ;; '
                        '*) kill -TERM 1 ;; esac\n')
    os.chmod(shutdown, 0o755)
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    with open(work / "initramfs.cpio", "wb") as fh:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "--reproducible"], cwd=tree,
                       input="\n".join(files).encode() + b"\n", stdout=fh, check=True,
                       stderr=subprocess.PIPE)
    with open(work / "initramfs.cpio", "rb") as src, open(out, "wb") as dst:
        dst.write(subprocess.run(["gzip", "-n", "-6"], input=src.read(), check=True,
                                 capture_output=True).stdout)


def _mbr(boot_code: bytes) -> bytes:
    """Sector 0: syslinux's boot code, p1 (FAT16 LBA, active) and p2 (Linux)."""
    def entry(active: bool, ptype: int, start: int, size: int) -> bytes:
        chs = b"\xfe\xff\xff"  # beyond CHS range: LBA only
        return struct.pack("<B3sB3sII", 0x80 if active else 0, chs, ptype, chs,
                           start // 512, size // 512)
    sector = bytearray(512)
    sector[:440] = boot_code[:440].ljust(440, b"\0")
    sector[440:444] = os.urandom(4)  # disk signature
    table = entry(True, 0x0E, BOOT_START, BOOT_SIZE) + entry(
        False, 0x83, DATA_START, DISK_SIZE - DATA_START)
    sector[446:446 + len(table)] = table
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def _boot_partition(kernel: Path, initrd: Path, work: Path, log: Path) -> Path:
    """A FAT16 image with syslinux for BIOS (installed by the mtools-based installer, no
    mount) and syslinux.efi as the UEFI removable-media loader."""
    fat = work / "boot.fat"
    with open(fat, "wb") as fh:
        fh.truncate(BOOT_SIZE)
    img = str(fat)
    run(["mformat", "-i", img, "-v", "SNAPBOOT", "-H", str(BOOT_START // 512), "-h", "64",
         "-s", "32", "-T", str(BOOT_SIZE // 512), "::"], log, what="mformat")
    run(["syslinux", "--install", img], log, what="syslinux --install")
    cfg = work / "syslinux.cfg"
    cfg.write_text(SYSLINUX_CFG)
    efi_dir = Path("/usr/lib/SYSLINUX.EFI/efi64")
    run(["mmd", "-i", img, "::/EFI", "::/EFI/BOOT"], log, what="mmd")
    copies = [(kernel, "::/vmlinuz"), (initrd, "::/initrd.img"), (cfg, "::/syslinux.cfg"),
              (efi_dir / "syslinux.efi", "::/EFI/BOOT/BOOTX64.EFI"),
              (Path("/usr/lib/syslinux/modules/efi64/ldlinux.e64"), "::/EFI/BOOT/ldlinux.e64"),
              (cfg, "::/EFI/BOOT/syslinux.cfg")]
    for src, dest in copies:
        run(["mcopy", "-i", img, "-o", str(src), dest], log, what=f"mcopy {dest}")
    return fat


def _data_partition(work: Path, log: Path) -> Path:
    data = work / "data.ext4"
    with open(data, "wb") as fh:
        fh.truncate(DISK_SIZE - DATA_START)
    run(["mkfs.ext4", "-q", "-F", "-L", DATA_LABEL, "-E", "root_owner=0:0", str(data)], log,
        what="mkfs.ext4")
    return data


def _copy_into(disk, part: Path, offset: int) -> None:
    with open(part, "rb") as src:
        disk.seek(offset)
        while chunk := src.read(MIB):
            if chunk.count(0) == len(chunk):
                disk.seek(len(chunk), os.SEEK_CUR)  # keep the raw file sparse
            else:
                disk.write(chunk)


def _build(versions: dict[str, str], work: Path, out: Path, log: Path) -> None:
    kernel_pkg = next(n for n in versions if n.startswith("linux-image-"))
    _download([f"{n}={versions[n]}" for n in (kernel_pkg, *GUEST_PACKAGES)], work, log)
    pkgroot = work / "pkgroot"
    kernel = next((pkgroot / "boot").glob("vmlinuz-*"))
    shutil.copy2(kernel, out / "vmlinuz")
    _initramfs(pkgroot, work, out / "initrd.img", log)
    fat = _boot_partition(out / "vmlinuz", out / "initrd.img", work, log)
    data = _data_partition(work, log)
    raw = work / "disk.raw"
    with open(raw, "wb") as disk:
        disk.truncate(DISK_SIZE)
        disk.write(_mbr(Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()))
        _copy_into(disk, fat, BOOT_START)
        _copy_into(disk, data, DATA_START)
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
         str(out / "disk.qcow2")], log, what="qemu-img convert")
    manifest = {"packages": versions, "kernel": kernel.name, "cmdline": CMDLINE,
                "disk_size": DISK_SIZE, "data_offset": DATA_START, "data_label": DATA_LABEL,
                "records_path": RECORDS_PATH, "boot": "syslinux (BIOS) / syslinux.efi (UEFI)"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def ensure_artefacts(cache: Path, log_dir: Path) -> Artefacts:
    """The cached guest artefacts for the current package versions, built when missing."""
    base = private_dir(guests_dir(cache))
    try:
        versions = package_versions()
    except LabError:  # a fresh system may never have fetched apt's package lists
        say("apt knows no candidate for the guest's packages; running apt-get update once")
        private_dir(log_dir)
        run(["apt-get", "update", "-q"], log_dir / "apt.log", what="apt-get update")
        versions = package_versions()
    key = cache_key(versions)
    target = Artefacts(base / key)
    if target.manifest_file.is_file():
        return target
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test sessions build once
        if target.manifest_file.is_file():
            return target
        start = time.monotonic()
        private_dir(log_dir)
        log = log_dir / "guest-build.log"
        log.write_text("")  # the last build's log only
        say(f"building guest artefacts {key} (log {log})")
        with tempfile.TemporaryDirectory(prefix=f".build-{key}-", dir=base) as tmp:
            work = Path(tmp)
            out = work / "out"
            out.mkdir()
            _build(versions, work, out, log)
            for stale in base.iterdir():
                if stale.is_dir() and not stale.name.startswith("."):
                    shutil.rmtree(stale, ignore_errors=True)
            os.chmod(out, 0o755)
            out.rename(target.root)
        say(f"guest artefacts built in {time.monotonic() - start:.1f} s: {target.root}")
    return target


def lab_paths(env: dict[str, str] | None = None) -> tuple[Path, Path]:
    """(cache dir, log dir) per SNAPTUI_LAB_CACHE / SNAPTUI_LAB_DIR, as scripts/lab uses them."""
    env = os.environ if env is None else env
    cache = Path(env.get("SNAPTUI_LAB_CACHE") or "/var/cache/snaptui-lab")
    root = Path(env.get("SNAPTUI_LAB_DIR") or "/var/tmp/snaptui-lab")
    return cache, root / "logs"


def ensure(env: dict[str, str] | None = None) -> Artefacts:
    """Install the host tools the build needs, then return the (cached) artefacts."""
    cache, log_dir = lab_paths(env)
    private_dir(log_dir)
    ensure_packages(log_dir, HOST_PACKAGES)
    return ensure_artefacts(cache, log_dir)
