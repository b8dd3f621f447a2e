"""Security on the real lab: no shell, no secret in any output or state file, private scratch and
state files, TLS verified unless --insecure, a warning for readable secrets, the audit log."""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import http.server
import json
import os
import pwd
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import requests
import yaml
from cli_tools import snaptui
from fault_tools import MID_STEP_RATE, step_running, wait_for, wait_terminal

from snaptui.core import audit
from snaptui.core.cloud.config import load_session
from snaptui.core.images.glance import GlanceImages
from snaptui.core.paths import state_dir

REPO = Path(__file__).resolve().parent.parent
SHELL_CALLS = {"system", "popen", "getoutput", "getstatusoutput", "create_subprocess_shell",
               "spawnl", "spawnlp", "spawnv", "spawnvp"}


def lab_auth() -> dict[str, str]:
    config = yaml.safe_load(Path(os.environ["OS_CLIENT_CONFIG_FILE"]).read_text())
    return config["clouds"][os.environ["OS_CLOUD"]]["auth"]


def write_clouds(path: Path, clouds: dict, mode: int = 0o600) -> dict[str, str]:
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    os.chmod(path, mode)
    return {"OS_CLIENT_CONFIG_FILE": str(path)}


def lab_cloud(**auth: str) -> dict:
    config = yaml.safe_load(Path(os.environ["OS_CLIENT_CONFIG_FILE"]).read_text())
    cloud = config["clouds"][os.environ["OS_CLOUD"]]
    cloud["auth"].update(auth)
    return cloud


def issue_token() -> str:
    """A project-scoped token from the lab Keystone (like `openstack token issue`)."""
    auth = lab_auth()
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": auth["username"], "password": auth["password"],
            "domain": {"id": auth.get("user_domain_id", "default")}}}},
        "scope": {"project": {"name": auth["project_name"],
                              "domain": {"id": auth.get("project_domain_id", "default")}}},
    }}
    reply = requests.post(auth["auth_url"].rstrip("/") + "/auth/tokens", json=body, timeout=30)
    assert reply.status_code == 201, reply.text
    return reply.headers["X-Subject-Token"]


def token_cloud(token: str) -> dict:
    auth = lab_auth()
    base = lab_cloud()
    return {**{k: v for k, v in base.items() if k != "auth"}, "auth_type": "v3token",
            "auth": {"auth_url": auth["auth_url"], "token": token,
                     "project_name": auth["project_name"],
                     "project_domain_id": auth.get("project_domain_id", "default")}}


# ---------------------------------------------------------------- no shell


def _python_files() -> Iterator[Path]:
    for root in ("snaptui", "scripts", "benchmarks", "tests"):
        for path in (REPO / root).rglob("*"):
            if path.is_file() and (path.suffix == ".py" or path.read_bytes()[:40].startswith(
                    b"#!/usr/bin/env python")):
                yield path


def test_no_shell_anywhere() -> None:
    offences = []
    files = list(_python_files())
    assert any(p.name == "qemu_img.py" for p in files) and any(p.name == "lab" for p in files)
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.keyword) and node.arg == "shell" and not (
                    isinstance(node.value, ast.Constant) and node.value.value is False):
                offences.append(f"{where} shell=")
            elif isinstance(node, ast.Attribute) and node.attr in SHELL_CALLS:
                offences.append(f"{where} .{node.attr}")
            elif isinstance(node, ast.ImportFrom) and any(
                    a.name in SHELL_CALLS for a in node.names):
                offences.append(f"{where} import of a shell call")
    assert offences == []


# ---------------------------------------------------------------- secrets never shown


def _state_files() -> list[Path]:
    return [p for p in state_dir().rglob("*") if p.is_file()]


def test_password_and_token_never_appear_anywhere(make_domain, tmp_path: Path) -> None:
    password = lab_auth()["password"]
    token = issue_token()
    assert len(password) >= 8 and len(token) > 20
    pw_env = write_clouds(tmp_path / "clouds.yaml", {os.environ["OS_CLOUD"]: lab_cloud()})
    tok_env = {**write_clouds(tmp_path / "token-clouds.yaml", {"tok": token_cloud(token)}),
               "OS_CLOUD": "tok"}
    lab = make_domain(state="running")
    glance = GlanceImages.from_cloud(os.environ["OS_CLOUD"])
    outputs: list[str] = []
    made: list[str] = []
    try:
        for env, label in ((pw_env, "pw"), (tok_env, "tok")):
            runs = [
                ("-v", "snapshot", lab.name, "--name", f"snaptui-test-sec-{label}", "--mode",
                 "cold", "--json"),
                ("-v", "snapshot", lab.name, "--name", "snaptui-test-dry", "--dry-run"),
                ("-v", "snapshot", lab.name, "--name", "snaptui-test-dry", "--dry-run", "--json"),
                ("-v", "images"), ("-v", "images", "--json"), ("-v", "jobs", "--json"),
                ("-v", "jobs"), ("audit", "--json"), ("-v", "snapshot", lab.name, "--name", "x",
                                                      "--mode", "internal", "--format", "raw",
                                                      "--compress"),
            ]
            for argv in runs:
                proc = snaptui(*argv, env=env)
                outputs += [proc.stdout, proc.stderr]
                if "--json" in argv and argv[1] == "snapshot" and "--dry-run" not in argv:
                    assert proc.returncode == 0, proc.stderr
                    made.append(json.loads(proc.stdout.splitlines()[-1])["image_id"])
        # a wrong password and a revoked token fail without echoing either
        for env in (write_clouds(tmp_path / "bad.yaml", {os.environ["OS_CLOUD"]: lab_cloud(
                password=password + "-wrong")}),):
            proc = snaptui("-v", "images", env=env)
            assert proc.returncode != 0
            outputs += [proc.stdout, proc.stderr]
        assert len(made) == 2
        files = _state_files()
        assert any(p.name == "audit.jsonl" for p in files)
        assert any(p.suffix == ".log" for p in files) and any(p.suffix == ".jsonl" for p in files)
        for secret in (password, token):
            for text in outputs:
                assert secret not in text
            for path in files:
                assert secret.encode() not in path.read_bytes(), path
    finally:
        for image_id in made:
            with contextlib.suppress(Exception):
                glance.delete(image_id)
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


# ---------------------------------------------------------------- file modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_scratch_and_state_files_are_private(make_domain, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Watch the scratch dir while a real cold job converts a 512 MiB disk. snaptui makes the
    state dirs 0700 and the scratch dir 0711 (QEMU, not root on a stock host, must enter it;
    nobody may list it), every file 0600."""
    monkeypatch.delenv("SNAPTUI_SCRATCH_DIR")  # the scratch dir snaptui makes: <state>/scratch
    lab = make_domain(state="running", size="1G", seed="512M")
    scratch = state_dir() / "scratch"
    seen: dict[str, set[int]] = {}
    dir_modes: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                dir_modes.add(_mode(scratch))
                for entry in scratch.iterdir():
                    with contextlib.suppress(OSError):
                        seen.setdefault(entry.name, set()).add(_mode(entry))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-modes", "--mode", "cold",
                       "--format", "raw", "--to", "library", "--library", str(tmp_path / "lib"),
                       "--keep-local", str(tmp_path / "kept.raw"), "--json",
                       "--bwlimit", MID_STEP_RATE)  # the watcher sees every file
    finally:
        done.set()
        watcher.join()
    assert proc.returncode == 0, proc.stderr
    assert any(name.endswith(".partial") for name in seen), seen
    assert dir_modes == {0o711}
    assert all(modes == {0o600} for modes in seen.values()), seen

    job_id = json.loads(proc.stdout.splitlines()[0])["job_id"]
    state = state_dir()
    private_files = [state / "audit.jsonl", state / "jobs" / f"{job_id}.jsonl",
                     state / "jobs" / f"{job_id}.log", tmp_path / "kept.raw"]
    private_files += list((state / "locks").iterdir())
    private_files += list((tmp_path / "lib").iterdir())
    assert len(private_files) >= 7
    for path in private_files:
        assert _mode(path) == 0o600, path
    for directory in (state, state / "jobs", state / "locks", tmp_path / "lib"):
        assert _mode(directory) == 0o700, directory
    assert _mode(scratch) == 0o711


# ---------------------------------------------------------------- TLS


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An HTTPS server with a self-signed certificate on 127.0.0.1; yields (url, paths seen)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self) -> None:
            seen.append(self.path)
            body = b'{"error": {"code": 404, "message": "nothing here", "title": "Not Found"}}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _reply

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/v3", seen
    server.shutdown()
    server.server_close()


def test_tls_is_verified_unless_insecure(tls_server, lab_env, tmp_path: Path) -> None:
    url, seen = tls_server
    env = {**write_clouds(tmp_path / "clouds.yaml", {"tls": lab_cloud(auth_url=url)}),
           "OS_CLOUD": "tls"}
    proc = snaptui("images", env=env, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "TLS error" in lines[0] and "certificate verify failed" in lines[0], lines[0]
    assert "--insecure" in lines[0]
    assert seen == []  # the handshake failed: no request reached the server

    proc = snaptui("--insecure", "images", env=env, timeout=60)
    assert proc.returncode != 0  # a 404 server is no Keystone, but TLS is passed
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "TLS" not in lines[0] and "certificate" not in lines[0], lines
    assert seen, "with --insecure the request must reach the server"


def test_sessions_verify_by_default(lab_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SNAPTUI_INSECURE", raising=False)
    assert load_session().session.verify is True
    assert load_session(insecure=True).session.verify is False
    monkeypatch.setenv("SNAPTUI_INSECURE", "1")  # what --insecure sets for the job processes
    assert load_session().session.verify is False
    assert load_session(insecure=False).session.verify is True


# ---------------------------------------------------------------- readable secrets


def test_readable_secret_files_get_one_warning_line(lab_env, tmp_path: Path) -> None:
    cloud = {os.environ["OS_CLOUD"]: lab_cloud()}
    for mode, warned in ((0o644, True), (0o640, True), (0o604, True), (0o600, False),
                         (0o620, False)):
        env = write_clouds(tmp_path / f"clouds-{mode:o}.yaml", cloud, mode)
        proc = snaptui("images", "--json", env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
        if warned:
            assert len(warnings) == 1, proc.stderr
            assert f"mode {mode:04o}" in warnings[0] and "chmod 600" in warnings[0]
            assert env["OS_CLIENT_CONFIG_FILE"] in warnings[0]
            assert lab_auth()["password"] not in proc.stderr
        else:
            assert warnings == [], proc.stderr
    # snaptui's own config files too, and a token counts as a secret
    config = Path(os.environ["SNAPTUI_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text('[cloud]\ntoken = "abc"\n')
    os.chmod(config / "config.toml", 0o644)
    proc = snaptui("domains", "--json")
    assert [line for line in proc.stderr.splitlines() if "config.toml" in line]


# ---------------------------------------------------------------- audit log


def test_audit_records_every_destructive_step_with_who(make_domain, tmp_path: Path) -> None:
    lab = make_domain(state="running")
    env = {"SSH_CLIENT": "192.0.2.7 50000 22", "SUDO_USER": "alice"}
    before = dt.datetime.now(dt.UTC)
    proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-audit", "--mode", "cold",
                   "--to", "library", "--library", str(tmp_path / "lib"), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout.splitlines()[-1])
    job_id = json.loads(proc.stdout.splitlines()[0])["job_id"]
    records = list(audit.read())
    assert _mode(state_dir() / "audit.jsonl") == 0o600
    actions = [(r["action"], r["result"]) for r in records]
    for step in ("save", "restart", "image:vda", "upload:vda", "finish:vda"):
        assert (step, "started") in actions and (step, "ok") in actions, actions
    assert not any(a.startswith("convert") for a, _ in actions)  # scratch only: not audited
    for r in records:
        assert r["who"] == {"user": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(),
                            "ssh_client": env["SSH_CLIENT"], "sudo_user": "alice"}
        when = dt.datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
        assert r["time"].endswith("Z") and when >= before - dt.timedelta(seconds=1)
        assert r["target"] == lab.name and r["domain_uuid"] == lab.uuid
        assert r["job_id"] == job_id
    image = next(r for r in records if r["action"] == "image:vda" and r["result"] == "ok")
    assert image["image"] == done["image_id"] and image["disk"] == "vda"
    assert image["image_name"] == "snaptui-test-audit"

    listing = snaptui("audit")
    assert listing.returncode == 0 and "image:vda" in listing.stdout and "alice" in listing.stdout
    assert json.loads(snaptui("audit", "--json", "--since", "2999-01-01").stdout) == []
    assert len(json.loads(snaptui("audit", "--json", "--since", "1h").stdout)) == len(records)


def test_audit_records_rollback_as_undone(make_domain, tmp_path: Path) -> None:
    lab = make_domain(state="running", size="1G", seed="768M")
    proc = snaptui("snapshot", lab.name, "--name", "snaptui-test-audit-undo", "--mode", "cold",
                   "--format", "raw", "--to", "library", "--library", str(tmp_path / "lib"),
                   "--detach", "--bwlimit", MID_STEP_RATE)  # still converting when cancelled
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    wait_for(job_id, step_running("convert:vda"), timeout=60, what="the convert running")
    assert snaptui("cancel", job_id).returncode == 0
    assert wait_terminal(job_id, timeout=60).status == "cancelled"
    actions = [(r["action"], r["result"]) for r in audit.read() if r["job_id"] == job_id]
    assert actions == [("save", "started"), ("save", "ok"), ("undo:save", "started"),
                       ("undo:save", "undone")], actions
    assert lab.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_audit_record_api_scrubs_secrets() -> None:
    entry = audit.record("delete-image", "0d3c5c1e-0000-4000-8000-000000000000", "ok",
                         cloud="lab", password="hunter2", auth={"token": "gAAAA-secret"},
                         error=None)
    assert entry is not None
    text = (state_dir() / "audit.jsonl").read_text()
    assert "hunter2" not in text and "gAAAA-secret" not in text
    last = json.loads(text.splitlines()[-1])
    assert last["action"] == "delete-image" and last["result"] == "ok"
    assert last["password"] == "***" and last["auth"] == {"token": "***"}
    assert "error" not in last and last["who"]["uid"] == os.getuid()
    with pytest.raises(ValueError):
        audit.record("x", "y", "maybe")
