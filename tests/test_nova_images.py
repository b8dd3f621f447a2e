"""Images as good as Nova's, and Nova never made to stop an instance, on the real lab.

Domains carry Nova's ``<nova:instance>`` metadata and boot from a base image in the lab's
Glance; a second Keystone project stands for the instance's tenant. The domains have no OS: the
properties come from their XML, so a UEFI one is defined (OVMF, secure boot off) but not booted.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from cli_tools import snaptui
from lab_domains import TEST_PREFIX, make_disk

from snaptui.core.engine.jobs import follow, launch, prepare
from snaptui.core.engine.plan import Mode, SnapshotRequest
from snaptui.core.images.glance import GlanceImages

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
BASE_PROPERTIES = {
    "os_distro": "debian", "os_version": "12", "hw_vif_model": "e1000", "hw_rng_model": "virtio",
    "img_signature": "c2ln", "img_signature_hash_method": "SHA-256",
    "img_signature_key_type": "RSA-PSS", "img_signature_certificate_uuid": str(uuid.uuid4()),
    "cinder_encryption_key_id": str(uuid.uuid4()),
    "cinder_encryption_key_deletion_policy": "on_image_deletion",
    "cache_in_nova": "True", "bittorrent": "True", "img_block_device_mapping": "[]",
}
NOT_INHERITED = {k for k in BASE_PROPERTIES if k.startswith(("img_", "cinder_"))} | {
    "cache_in_nova", "bittorrent"}


@pytest.fixture(scope="module")
def keystone(os_cloud: str) -> Iterator:
    import openstack

    cloud = openstack.connect(cloud=os_cloud)
    yield cloud
    cloud.close()


@pytest.fixture
def tenant(keystone) -> Iterator[str]:
    """A second project in the lab's Keystone (the instance's tenant); deleted afterwards."""
    project = keystone.identity.create_project(name=f"snaptui-test-{uuid.uuid4().hex[:8]}",
                                               domain_id="default")
    yield project.id
    keystone.identity.delete_project(project, ignore_missing=True)


@pytest.fixture
def base_image(store: GlanceImages, own_images: list[str]) -> str:
    """The instance's root image: Nova-relevant properties, min_ram 64, min_disk 2."""
    client = store._client
    image = client.images.create(name="snaptui-test nova base", disk_format="qcow2",
                                 container_format="bare", min_ram=64, min_disk=2,
                                 **BASE_PROPERTIES)
    own_images.append(image["id"])
    return str(image["id"])


def nova_xml(name: str, disks: list[tuple[str, Path, str]], *, project: str, base: str,
             efi: bool, agent: bool, nvram: Path | None = None) -> str:
    devices = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{path}'/><target dev='{target}' bus='{bus}'/></disk>"
        for target, path, bus in disks)
    if any(bus == "scsi" for _, _, bus in disks):
        devices += "<controller type='scsi' index='0' model='virtio-scsi'/>"
    if agent:
        devices += ("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
                    "</channel>")
    firmware = ""
    if efi:
        firmware = (f"<loader readonly='yes' type='pflash'>{OVMF_CODE}</loader>"
                    f"<nvram template='{OVMF_VARS}'>{nvram}</nvram>")
    machine = "q35" if efi else "pc"
    kind = "qemu" if efi else "kvm"
    return f"""<domain type='{kind}'>
  <name>{name}</name><uuid>{uuid.uuid4()}</uuid>
  <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
    <nova:name>{name}-server</nova:name>
    <nova:flavor name="m1.tiny"><nova:memory>128</nova:memory><nova:disk>5</nova:disk>
      <nova:swap>0</nova:swap><nova:ephemeral>0</nova:ephemeral><nova:vcpus>1</nova:vcpus>
    </nova:flavor>
    <nova:owner><nova:user uuid="{uuid.uuid4().hex}">someone</nova:user>
      <nova:project uuid="{project}">tenant</nova:project></nova:owner>
    <nova:root type="image" uuid="{base}"/>
  </nova:instance></metadata>
  <memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='{machine}'>hvm</type>{firmware}<boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>{devices}<interface type='user'><model type='virtio'/></interface>
    <video><model type='vga'/></video><serial type='pty'/></devices>
</domain>"""


@pytest.fixture
def nova_domain(conn: libvirt.virConnect, disk_dir: Path) -> Iterator:
    """Factory: a domain with Nova metadata; destroyed and undefined (with its NVRAM) after."""
    made: list[str] = []

    def factory(*, project: str, base: str, efi: bool = False, agent: bool = False,
                buses: tuple[str, ...] = ("virtio",), state: str = "shut off") -> libvirt.virDomain:
        name = TEST_PREFIX + "nova-" + uuid.uuid4().hex[:8]
        disks = []
        for i, bus in enumerate(buses):
            target = ("vd" if bus == "virtio" else "sd") + "abc"[i]
            disks.append((target, make_disk(disk_dir / f"{name}-{target}.qcow2", seed="4M"), bus))
        dom = conn.defineXML(nova_xml(name, disks, project=project, base=base, efi=efi,
                                      agent=agent, nvram=disk_dir / f"{name}-vars.fd"))
        made.append(name)
        if state == "running":
            dom.create()
        return dom

    yield factory
    for name in made:
        try:
            dom = conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                              | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        except libvirt.libvirtError:
            pass


def made_images(events: list[dict]) -> list[dict]:
    return events[-1]["images"] if "images" in events[-1] else [events[-1]]


def test_uefi_nova_instance_image_has_novas_properties_and_the_xmls(
        nova_domain, base_image, tenant, store, own_images):
    dom = nova_domain(project=tenant, base=base_image, efi=True, agent=True,
                      buses=("virtio", "scsi", "sata"))
    name = dom.name()
    common = ("snapshot", name, "--name", "snaptui-test nova uefi", "--all-disks", "--to",
              "glance", "--property", "größe=Ünïcødé — 日本", "--property", "os_version=12.5",
              "--tag", "snaptui-test", "--tag", "étiquette")
    dry = snaptui(*common, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Nova instance" in dry.stdout and "hw_firmware_type=uefi" in dry.stdout
    assert "os_distro=debian" in dry.stdout and "größe=Ünïcødé — 日本" in dry.stdout

    proc = snaptui(*common, "--json")
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["event"] == "done", proc.stdout + proc.stderr
    images = {i["image_id"]: i for i in made_images([done])}
    own_images.extend(images)
    by_bus = {}
    for image_id in images:
        raw = store.raw_image(image_id)
        by_bus[raw["hw_disk_bus"]] = raw
        assert raw["hw_firmware_type"] == "uefi" and raw["hw_machine_type"].startswith("pc-q35")
        assert raw["architecture"] == "x86_64" and raw["hw_qemu_guest_agent"] == "yes"
        assert "os_secure_boot" not in raw  # secure boot is off in this XML
        assert raw["hw_vif_model"] == "e1000"  # the base image states it: it wins over virtio
        assert raw["hw_video_model"] == "vga"
        assert (raw["os_distro"], raw["hw_rng_model"]) == ("debian", "virtio")  # inherited
        assert raw["os_version"] == "12.5" and raw["größe"] == "Ünïcødé — 日本"  # operator
        assert not NOT_INHERITED & raw.keys()
        assert raw["base_image_ref"] == base_image and raw["image_type"] == "snapshot"
        assert raw["instance_uuid"] == dom.UUIDString()
        assert raw["owner_id"] == tenant and raw["instance_owner"] == tenant
        assert raw["min_ram"] == 64
        assert raw["visibility"] == "shared" and store.members(image_id) == [tenant]
        assert sorted(raw["tags"]) == ["snaptui-test", "étiquette"]
    assert set(by_bus) == {"virtio", "scsi", "sata"}
    assert by_bus["scsi"]["hw_scsi_model"] == "virtio-scsi"
    assert "hw_scsi_model" not in by_bus["virtio"] and "hw_scsi_model" not in by_bus["sata"]
    assert by_bus["virtio"]["min_disk"] == 5  # the flavor's root disk (the base says 2)
    assert by_bus["scsi"]["min_disk"] == 2 and by_bus["sata"]["min_disk"] == 2


def test_running_nova_instance_is_never_stopped_without_consent(
        nova_domain, base_image, store, own_images, tmp_path):
    dom = nova_domain(project=store.project_id, base=base_image, state="running")
    name = dom.name()
    before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    for mode in ("cold", "internal"):
        proc = snaptui("snapshot", name, "--name", "snaptui-test never", "--mode", mode,
                       "--to", "glance")
        assert proc.returncode == 2  # bad input
        err = proc.stderr.strip()
        assert "\n" not in err and "Traceback" not in err
        assert "Nova instance" in err and "power-state sync" in err and "15 s" in err
    bad = snaptui("snapshot", name, "--name", "x", "--property", "os_glance_import_task=1")
    assert bad.returncode == 2 and "os_glance" in bad.stderr and "\n" not in bad.stderr.strip()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and not dom.hasManagedSaveImage(0)
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before
    assert json.loads(snaptui("jobs", "--json").stdout) == []

    dry = json.loads(snaptui("snapshot", name, "--name", "x", "--to", "glance", "--no-derive",
                             "--dry-run", "--json").stdout)
    # auto streams a running guest to Glance (backup in pull mode: never stopped, never paused)
    assert dry["mode"] == "backup" and dry["stream"] and "Nova instance" in dry["reason"]
    planned = dry["images"][0]["properties"]
    assert not {"hw_firmware_type", "hw_disk_bus", "hw_machine_type"} & planned.keys()
    assert planned["hw_vif_model"] == "e1000"  # inherited properties stay

    proc = snaptui("snapshot", name, "--name", "snaptui-test nova auto", "--to", "glance",
                   "--protected", "--min-ram", "256", "--json")
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["event"] == "done", proc.stdout + proc.stderr
    own_images.append(done["image_id"])
    raw = store.raw_image(done["image_id"])
    try:
        assert raw["snaptui_method"] == "backup-stream" and done["downtime_s"] == 0
        assert raw["visibility"] == "private"  # the caller is in the instance's project
        assert raw["owner_id"] == store.project_id and "instance_owner" not in raw
        assert raw["user_id"] == store.user_id
        assert raw["hw_firmware_type"] == "bios" and raw["hw_disk_bus"] == "virtio"
        assert "hw_qemu_guest_agent" not in raw  # no agent channel in this XML
        assert raw["protected"] is True and raw["min_ram"] == 256 and raw["min_disk"] == 5
    finally:
        store.set_protected(done["image_id"], False)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_allowed_nova_downtime_is_cut_short_and_the_guest_restarted(
        nova_domain, base_image, store, tmp_path):
    dom = nova_domain(project=store.project_id, base=base_image, state="running")
    refused = snaptui("snapshot", dom.name(), "--name", "x", "--mode", "cold", "--to", "library",
                      "--library", str(tmp_path / "lib"), "--allow-nova-downtime", "--dry-run")
    assert refused.returncode == 0 and "must be back within 15 s" in refused.stdout
    request = SnapshotRequest(domain=dom.name(), name="snaptui-test nova guard", mode=Mode.COLD,
                              destination="library", library_dir=str(tmp_path / "lib"),
                              allow_nova_downtime=True)
    plan, steps = asyncio.run(prepare(request))
    assert plan.downtime_limit_s == 12.0
    plan.downtime_limit_s = 0.2  # shorter than the managed save itself: the guard must fire
    job_id = launch(plan, request, steps)
    events = list(follow(job_id, timeout_s=120))
    assert events[-1]["event"] == "failed"
    assert "Nova stops an instance" in events[-1]["error"]
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and not dom.hasManagedSaveImage(0)
    assert not list((tmp_path / "lib").glob("*.qcow2"))


async def test_dashboard_dialog_refuses_stopping_a_nova_instance(nova_domain, libvirt_uri):
    """The dialog on the real lab: a running Nova instance, its real available modes."""
    from test_ui_dialog import NO_RESULT, DialogHost
    from textual.widgets import Input, RadioButton, Static, TextArea

    from snaptui.core.engine.preflight.checks import available_modes
    from snaptui.core.libvirt.host import LibvirtHost
    from snaptui.ui.screens.snapshot_dialog import SnapshotDialog

    dom = nova_domain(project=uuid.uuid4().hex, base=str(uuid.uuid4()), state="running")
    before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    with LibvirtHost(libvirt_uri).connect() as host:
        info = host.get_domain(dom.name())
        modes = available_modes(info, host)
    app = DialogHost(SnapshotDialog(info, modes, "library", None))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        buttons = {b.name: b for b in app.dialog.query("#mode RadioButton").results(RadioButton)}
        for mode in ("cold", "internal"):
            assert buttons[mode].disabled and "Nova" in str(buttons[mode].label)
        assert "Nova instance" in str(app.dialog.query_one("#nova", Static).render())
        assert "auto will use live" in str(app.dialog.query_one("#mode-hint", Static).render())
        app.dialog.query_one("#props").collapsed = False
        await pilot.pause()
        app.dialog.query_one("#properties", TextArea).text = "os_glance_x=1"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.result is NO_RESULT  # refused, shown, nothing launched
        assert "os_glance" in str(app.dialog.query_one("#props-error", Static).render())
        app.dialog.query_one("#properties", TextArea).text = "größe=Ünïcødé 日本\nrole=db"
        app.dialog.query_one("#tags", Input).value = "a, étiquette"
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert isinstance(app.result, SnapshotRequest) and app.result.mode == Mode.AUTO
    assert app.result.properties == {"größe": "Ünïcødé 日本", "role": "db"}
    assert app.result.tags == ("a", "étiquette")
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before


def test_library_sidecar_carries_the_same_properties_and_fields(
        nova_domain, base_image, tenant, tmp_path):
    from snaptui.core.images.library import ImageLibrary

    dom = nova_domain(project=tenant, base=base_image, efi=True, agent=True)
    lib = tmp_path / "lib"
    proc = snaptui("snapshot", dom.name(), "--name", "snaptui-test nova lib", "--to", "library",
                   "--library", str(lib), "--tag", "t", "--protected", "--json")
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["event"] == "done", proc.stdout + proc.stderr
    props = ImageLibrary(lib).show(done["image_id"]).properties
    assert props["os_distro"] == "debian" and props["hw_firmware_type"] == "uefi"
    assert props["base_image_ref"] == base_image and props["owner_id"] == tenant
    assert not NOT_INHERITED & props.keys()
    sidecar = json.loads((lib / f"{done['image_id']}.json").read_text())
    assert (sidecar["min_ram"], sidecar["min_disk"], sidecar["tags"]) == (64, 5, ["t"])
    assert sidecar["protected"] is True and sidecar["visibility"] == "private"


def test_guest_with_host_devices_is_never_saved(tmp_path):
    """libvirt's test driver runs a guest with a PCI and a mediated device over a real disk:
    cold and internal are refused before anything stops, live/backup are not offered either
    (that driver cannot), so nothing at all happens to it."""
    disk = make_disk(tmp_path / "hd.qcow2", seed="1M")
    node = tmp_path / "node.xml"
    node.write_text(f"""<node><domain type='test'><name>snaptui-test-hostdev</name>
      <uuid>{uuid.uuid4()}</uuid><memory unit='MiB'>128</memory><vcpu>1</vcpu>
      <os><type arch='x86_64'>hvm</type></os>
      <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
        <hostdev mode='subsystem' type='pci' managed='yes'><source>
          <address domain='0x0000' bus='0x3b' slot='0x00' function='0x1'/></source></hostdev>
        <hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>
          <address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>
      </devices></domain></node>""")
    before = disk.read_bytes()
    for mode in ("cold", "internal", "auto"):
        proc = snaptui("snapshot", "snaptui-test-hostdev", "-c", f"test://{node}", "--name", "x",
                       "--mode", mode, "--to", "library", "--library", str(tmp_path / "lib"))
        err = proc.stderr.strip()
        assert proc.returncode == 2 and "\n" not in err, err
        assert "host or mediated devices" in err and "pci 0000:3b:00.1" in err
    assert disk.read_bytes() == before and not list(tmp_path.glob("lib/*.json"))
