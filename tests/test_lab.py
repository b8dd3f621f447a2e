"""Smoke test of the real lab started by ``scripts/lab up``: libvirt, Keystone and Glance answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import glanceclient
import libvirt
import openstack.config
import pytest

pytestmark = pytest.mark.lab  # the whole module checks the lab itself

LAB = Path(__file__).resolve().parent.parent / "scripts" / "lab"


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LAB), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_env_vars_point_at_the_lab() -> None:
    assert os.environ["LIBVIRT_DEFAULT_URI"] == "qemu:///system"
    assert os.environ["OS_CLOUD"] == "snaptui-lab"
    clouds = Path(os.environ["OS_CLIENT_CONFIG_FILE"])
    assert clouds.is_file()
    assert clouds.stat().st_mode & 0o077 == 0, "clouds.yaml holds a password: must be 0600"


def test_lab_env_json_and_status() -> None:
    env = _lab("env", "--json")
    assert env.returncode == 0, env.stderr
    assert set(json.loads(env.stdout)) == {
        "LIBVIRT_DEFAULT_URI", "OS_CLIENT_CONFIG_FILE", "OS_CLOUD", "SNAPTUI_LAB_SSH_URI",
        "SNAPTUI_LAB_SSH_KEY", "SNAPTUI_LAB_SSH_PORT", "SNAPTUI_LAB_SSH_KNOWN_HOSTS",
        "SNAPTUI_LAB_CEPH_MON", "SNAPTUI_LAB_CEPH_CONF", "SNAPTUI_LAB_CEPH_USER",
        "SNAPTUI_LAB_CEPH_KEYRING", "SNAPTUI_LAB_CEPH_SECRET_UUID", "SNAPTUI_LAB_CEPH_POOL",
        "SNAPTUI_LAB_CEPH_IMAGES_POOL"}
    status = _lab("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert [line.split()[0] for line in status.stdout.splitlines()] == [
        "libvirtd", "virtlogd", "keystone", "glance", "sshd", "ceph-mon", "ceph-mgr", "ceph-osd"]


def test_ceph_runs_with_cephx_and_glance_has_its_rbd_store(ceph_lab, os_cloud: str) -> None:
    """The client user reaches both pools with its key; without a key the cluster refuses;
    libvirt holds the key in a ceph secret; Glance lists the rbd store beside the file one."""
    import rados

    cluster = rados.Rados(conffile=ceph_lab.conf, rados_id=ceph_lab.user)
    cluster.connect(timeout=30)
    try:
        assert {"vms", "images"} <= set(cluster.list_pools())
    finally:
        cluster.shutdown()
    keyring = Path(os.environ["SNAPTUI_LAB_CEPH_KEYRING"])
    assert keyring.stat().st_mode & 0o077 == 0
    # Without its key the client is refused (librados would hunt for monitors until its own
    # timeout; the ceph CLI gives up at once)
    keyless = subprocess.run(["ceph", "--connect-timeout", "10", "-c", ceph_lab.conf,
                              "-n", f"client.{ceph_lab.user}", "--keyring", "/nonexistent",
                              "-m", ceph_lab.mon, "status"],
                             capture_output=True, text=True, timeout=60)
    assert keyless.returncode != 0
    assert "error connecting to the cluster" in keyless.stderr
    usage = subprocess.run(["virsh", "-c", "qemu:///system", "secret-dumpxml",
                            ceph_lab.secret_uuid], capture_output=True, text=True, check=True)
    assert "<usage type='ceph'>" in usage.stdout
    session = openstack.config.OpenStackConfig().get_one(cloud=os_cloud).get_session()
    stores = glanceclient.Client("2", session=session).images.get_stores_info()["stores"]
    assert {(s["id"], s.get("default") == "true") for s in stores} == {("fs", True),
                                                                       ("ceph", False)}


def test_the_lab_sshd_is_a_second_host_for_libvirt(make_domain) -> None:
    """The lab's sshd (key only, loopback) reaches libvirtd as qemu+ssh:// does on a fleet."""
    ssh = json.loads(_lab("env", "--json").stdout)
    key = Path(ssh["SNAPTUI_LAB_SSH_KEY"])
    assert key.stat().st_mode & 0o077 == 0 and key.parent.stat().st_mode & 0o077 == 0
    dom = make_domain()  # other tests come and go meanwhile: look for our own domain
    virsh = subprocess.run(["virsh", "-c", ssh["SNAPTUI_LAB_SSH_URI"], "list", "--all",
                            "--name"], capture_output=True, text=True, timeout=30, check=True)
    assert dom.name in virsh.stdout.split()
    password = subprocess.run(
        ["ssh", "-p", ssh["SNAPTUI_LAB_SSH_PORT"], "-o", "BatchMode=yes",
         "-o", "PubkeyAuthentication=no", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "root@127.0.0.1", "true"],
        capture_output=True, text=True, timeout=30, check=False)
    assert password.returncode == 255 and "Permission denied" in password.stderr


def test_libvirt_answers(conn: libvirt.virConnect) -> None:
    assert conn.getLibVersion() >= 9_000_000
    virsh = subprocess.run(["virsh", "-c", conn.getURI(), "list", "--all", "--name"],
                           capture_output=True, text=True, timeout=30, check=True)
    assert sorted(d.name() for d in conn.listAllDomains()) == sorted(virsh.stdout.split())


def test_keystone_authenticates_and_glance_lists_images(os_cloud: str) -> None:
    config = openstack.config.OpenStackConfig(
        config_files=[os.environ["OS_CLIENT_CONFIG_FILE"]]).get_one(cloud=os_cloud)
    session = config.get_session()
    assert session.get_token()
    assert session.get_endpoint(service_type="image", interface="public").startswith(
        "http://127.0.0.1:")
    glance = glanceclient.Client("2", session=session)
    images = list(glance.images.list(limit=5))
    assert all("id" in image for image in images)
