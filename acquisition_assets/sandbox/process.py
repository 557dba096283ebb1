"""Start and stop the sandbox as a subprocess, and call its /_sandbox/ control routes."""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from acquisition_assets.sandbox.state import (
    DEFAULT_CRM_TOKEN,
    DEFAULT_EMAIL_TOKEN,
    REFERRAL_FORM_GUID,
)

CONTROL_TIMEOUT_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.02
SERVICES = ("email", "crm")


class SandboxStartError(RuntimeError):
    """Error raised when the sandbox subprocess exits or times out before publishing its URLs."""


class SandboxProcess:
    """A running sandbox subprocess with its base URLs and tokens.

    Use it as a context manager, or call stop(), so the subprocess does not outlive the caller.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        workdir: Path,
        email_url: str,
        crm_url: str,
        email_token: str,
        crm_token: str,
    ) -> None:
        self.popen = popen
        self.workdir = workdir
        self.email_url = email_url
        self.crm_url = crm_url
        self.email_token = email_token
        self.crm_token = crm_token

    def url(self, service: str) -> str:
        """Return the base URL of 'email' or 'crm'."""
        if service not in SERVICES:
            raise ValueError(f"Unknown sandbox service '{service}'; use one of {SERVICES}.")
        return self.email_url if service == "email" else self.crm_url

    def set_faults(self, service: str, **knobs: Any) -> dict[str, Any]:
        """Update knobs of one service and return all of its knobs."""
        return self._call("POST", service, "/_sandbox/faults", json=knobs)

    def faults(self, service: str) -> dict[str, Any]:
        """Return the current knobs of one service."""
        return self._call("GET", service, "/_sandbox/faults")

    def reset(self) -> None:
        """Clear the data, counters and knobs of both services."""
        self._call("POST", "email", "/_sandbox/reset")

    def stats(self, service: str) -> dict[str, Any]:
        """Return the request counters of one service."""
        return self._call("GET", service, "/_sandbox/stats")

    def messages(self, tag: str | None = None, recipient: str | None = None) -> dict[str, Any]:
        """Return the accepted messages, optionally filtered, with counts per idempotency key."""
        params = {"tag": tag, "recipient": recipient}
        return self._call("GET", "email", "/_sandbox/messages", params=params)

    def contacts(self) -> dict[str, Any]:
        """Return the stored CRM contacts with their upsert counts."""
        return self._call("GET", "crm", "/_sandbox/contacts")

    def add_submission(
        self, values: dict[str, str], form_guid: str = REFERRAL_FORM_GUID
    ) -> dict[str, Any]:
        """Store a form submission on the CRM side and return it."""
        body = {"form_guid": form_guid, "values": values}
        return self._call("POST", "crm", "/_sandbox/submissions", json=body)

    def log_text(self) -> str:
        """Return what the subprocess has written to stdout and stderr so far."""
        return _read_log(self.workdir)

    def stop(self) -> None:
        """Terminate the subprocess, kill it if it does not exit in time, and clean up."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "SandboxProcess":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(
            method, self.url(service) + path, timeout=CONTROL_TIMEOUT_SECONDS, **kwargs
        )
        response.raise_for_status()
        return response.json()


def start_sandbox(
    seed: int = 0,
    email_token: str = DEFAULT_EMAIL_TOKEN,
    crm_token: str = DEFAULT_CRM_TOKEN,
    timeout: float = 20.0,
) -> SandboxProcess:
    """Start the sandbox on free loopback ports and wait until both services listen.

    Raises:
        SandboxStartError: the subprocess exited, or did not publish its URLs within
            timeout seconds. The message includes its output.
    """
    workdir = Path(tempfile.mkdtemp(prefix="acquisition-sandbox-"))
    ports_file = workdir / "ports.json"
    command = [
        sys.executable,
        "-m",
        "acquisition_assets.sandbox",
        "--host",
        "127.0.0.1",
        "--email-port",
        "0",
        "--crm-port",
        "0",
        "--email-token",
        email_token,
        "--crm-token",
        crm_token,
        "--seed",
        str(seed),
        "--ports-file",
        str(ports_file),
    ]
    # A file, unlike a pipe, never fills up and blocks a sandbox that logs a lot.
    with open(workdir / "output.log", "wb") as log:
        popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    try:
        urls = _wait_for_ports_file(popen, ports_file, workdir, timeout)
    except SandboxStartError:
        _kill(popen)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return SandboxProcess(
        popen, workdir, urls["email_url"], urls["crm_url"], email_token, crm_token
    )


def _wait_for_ports_file(
    popen: subprocess.Popen[bytes], ports_file: Path, workdir: Path, timeout: float
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ports_file.exists():
            return json.loads(ports_file.read_text(encoding="utf-8"))
        if popen.poll() is not None:
            raise SandboxStartError(
                f"The sandbox exited with code {popen.returncode} before it started listening. "
                f"Its output:\n{_read_log(workdir)}"
            )
        time.sleep(POLL_SECONDS)
    raise SandboxStartError(
        f"The sandbox did not start listening within {timeout} seconds. "
        f"Its output:\n{_read_log(workdir)}"
    )


def _read_log(workdir: Path) -> str:
    try:
        return (workdir / "output.log").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _kill(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        popen.kill()
        popen.wait()
