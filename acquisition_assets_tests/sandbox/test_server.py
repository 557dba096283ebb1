"""Tests of the sandbox entry points: loopback checks, ports file, start and stop."""

import socket
import subprocess
import sys

import pytest
import requests

from acquisition_assets.sandbox.process import (
    SandboxStartError,
    _wait_for_ports_file,
    start_sandbox,
)
from acquisition_assets.sandbox.server import SandboxServerError, resolve_loopback_host, serve

REQUEST_TIMEOUT_SECONDS = 5.0


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com", ""])
def test_serve_rejects_non_loopback_host(host):
    with pytest.raises(ValueError, match="loopback"):
        serve(host=host, email_port=0, crm_port=0)


@pytest.mark.parametrize(
    ("host", "address"),
    [("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"), ("::1", "::1"), ("[::1]", "::1")],
)
def test_resolve_loopback_host_accepts_loopback(host, address):
    assert resolve_loopback_host(host) == address


def test_cli_rejects_non_loopback_host():
    result = subprocess.run(
        [sys.executable, "-m", "acquisition_assets.sandbox", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_serve_reports_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        with pytest.raises(SandboxServerError, match=str(port)):
            serve(email_port=0, crm_port=port)


def test_start_sandbox_publishes_loopback_urls():
    with start_sandbox(seed=3, email_token="token-e", crm_token="token-c") as sandbox:
        response = requests.post(
            f"{sandbox.email_url}/email/batch",
            json=[],
            headers={"X-Postmark-Server-Token": "token-e"},
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        log = sandbox.log_text()

    assert sandbox.email_url.startswith("http://127.0.0.1:")
    assert sandbox.crm_url.startswith("http://127.0.0.1:")
    assert sandbox.email_url != sandbox.crm_url
    assert response.status_code == 200
    assert sandbox.email_url in log
    assert sandbox.crm_url in log


def test_sandbox_stop_exits_cleanly():
    sandbox = start_sandbox()

    sandbox.stop()

    assert sandbox.popen.returncode == 0
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{sandbox.email_url}/_sandbox/stats", timeout=REQUEST_TIMEOUT_SECONDS)


def test_wait_for_ports_file_reports_early_exit(tmp_path):
    log_path = tmp_path / "output.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.exit('port setup failed')"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    popen.wait(timeout=30)

    with pytest.raises(SandboxStartError, match="port setup failed"):
        _wait_for_ports_file(popen, tmp_path / "ports.json", tmp_path, timeout=5)
