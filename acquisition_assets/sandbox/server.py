"""Entry point that serves the email and CRM sandboxes from one process on loopback."""

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from acquisition_assets.sandbox.crm_app import create_crm_app
from acquisition_assets.sandbox.email_app import create_email_app
from acquisition_assets.sandbox.state import DEFAULT_CRM_TOKEN, DEFAULT_EMAIL_TOKEN, SandboxState

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}
# Seconds that shutdown waits for running requests, which lost_response_rate and
# timeout_rate can keep asleep for timeout_seconds, before cancelling them.
GRACEFUL_SHUTDOWN_SECONDS = 1.0
STARTUP_POLL_SECONDS = 0.01


class SandboxServerError(RuntimeError):
    """Error raised when the sandbox cannot bind one of its ports."""


class _SharedLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to serve(), which runs two of them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own handlers would replace each other and re-raise the signal on exit.
        yield


def resolve_loopback_host(host: str) -> str:
    """Return the loopback address to bind for host, or raise ValueError for any other host."""
    address = LOOPBACK_HOSTS.get(host.strip().strip("[]").lower())
    if address is None:
        raise ValueError(
            f"The sandbox serves on loopback only; got host '{host}'. "
            "Use 127.0.0.1, ::1 or localhost."
        )
    return address


def serve(
    host: str = "127.0.0.1",
    email_port: int = 8025,
    crm_port: int = 8026,
    email_token: str = DEFAULT_EMAIL_TOKEN,
    crm_token: str = DEFAULT_CRM_TOKEN,
    seed: int = 0,
    ports_file: str | os.PathLike[str] | None = None,
) -> None:
    """Serve both sandboxes until SIGTERM or SIGINT.

    A port of 0 picks a free port. Once both services listen, their base URLs are written
    to ports_file as JSON with keys email_url and crm_url, through a temporary file and a
    rename, so a reader never sees a partial file.

    Raises:
        ValueError: host is not a loopback address.
        SandboxServerError: a port could not be bound.
    """
    address = resolve_loopback_host(host)
    # serve() is the main loop of its process, so it sets up logging unless the caller did.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    state = SandboxState(seed=seed, email_token=email_token, crm_token=crm_token)
    apps = {"email": create_email_app(state), "crm": create_crm_app(state)}
    sockets: dict[str, socket.socket] = {}
    try:
        sockets["email"] = _bind(address, email_port, "email")
        sockets["crm"] = _bind(address, crm_port, "crm")
        asyncio.run(_serve_apps(apps, sockets, ports_file))
    finally:
        for sock in sockets.values():
            sock.close()
    logger.info("Sandbox stopped")


def _bind(address: str, port: int, service: str) -> socket.socket:
    """Bind a listening socket, so a port of 0 is resolved before the URLs are published."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise SandboxServerError(
            f"Could not listen on {address} port {port} for the {service} sandbox: {exc}. "
            "Stop the process that uses the port or pass port 0 to pick a free one."
        ) from exc
    return sock


def base_url(sock: socket.socket) -> str:
    """Return the http:// base URL of a bound socket."""
    address, port = sock.getsockname()[:2]
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


async def _serve_apps(
    apps: dict[str, Starlette],
    sockets: dict[str, socket.socket],
    ports_file: str | os.PathLike[str] | None,
) -> None:
    servers = {name: _SharedLoopServer(_config(app)) for name, app in apps.items()}
    _install_signal_handlers(list(servers.values()))
    tasks = [
        asyncio.create_task(server.serve(sockets=[sockets[name]]))
        for name, server in servers.items()
    ]

    while not all(server.started for server in servers.values()):
        # A task that ends before its server started has failed; result() re-raises why.
        for task in tasks:
            if task.done():
                task.result()
        await asyncio.sleep(STARTUP_POLL_SECONDS)

    urls = {f"{name}_url": base_url(sock) for name, sock in sockets.items()}
    logger.info("Email sandbox (Postmark API) listening on %s", urls["email_url"])
    logger.info("CRM sandbox (HubSpot CRM v3 API) listening on %s", urls["crm_url"])
    if ports_file is not None:
        _write_atomically(Path(ports_file), json.dumps(urls))

    await asyncio.gather(*tasks)


def _config(app: Starlette) -> uvicorn.Config:
    # Access logs are off because the benchmark sends thousands of requests; the
    # /_sandbox/stats counters report them instead.
    return uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def _install_signal_handlers(servers: list[uvicorn.Server]) -> None:
    """Stop all servers on SIGTERM or SIGINT, and force the exit on a second signal."""

    def request_stop(signal_name: str) -> None:
        already_stopping = any(server.should_exit for server in servers)
        logger.info("Received %s, stopping the sandbox", signal_name)
        for server in servers:
            server.should_exit = True
            server.force_exit = already_stopping

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, request_stop, sig.name)
        except (NotImplementedError, RuntimeError):
            # Outside the main thread, or on Windows, the caller must stop the process.
            logger.warning("Cannot handle %s here; stop the sandbox process directly", sig.name)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
