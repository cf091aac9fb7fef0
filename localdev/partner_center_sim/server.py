"""Start the simulator: TLS files, credentials, state, then uvicorn on a bound socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from .app import DropFilter, build_app
from .auth import TokenService
from .catalog import Catalog
from .certs import ensure_tls_files
from .clock import SimClock
from .state import SimConfig, SimState

log = logging.getLogger("partner_center_sim")

CONNECTION_FILE = "connection.json"
CREDENTIALS_FILE = "credentials.json"
DEFAULT_USER = "partner-admin@sim.onmicrosoft.com"
SNAPSHOT_INTERVAL_SECONDS = 0.5
SNAPSHOT_QUIET_SECONDS = 1.5
SNAPSHOT_MAX_DELAY_SECONDS = 60.0


@dataclass(slots=True)
class ServerOptions:
    """Command-line options."""

    port: int
    state_dir: Path
    customers: int = 0
    host: str = "127.0.0.1"
    reseller_id: str | None = None
    persist: bool = True
    settings: dict[str, Any] | None = None


def run(options: ServerOptions) -> None:
    """Serve until SIGTERM/SIGINT, then write a last snapshot."""
    options.state_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("uvicorn.error").addFilter(DropFilter())
    # uvicorn re-raises the stop signal after its graceful shutdown; with our own handlers in
    # place that re-raise is harmless and the final snapshot still gets written.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    asyncio.run(_serve(options))


async def _serve(options: ServerOptions) -> None:
    state_dir = options.state_dir
    (state_dir / CONNECTION_FILE).unlink(missing_ok=True)
    tls = ensure_tls_files(state_dir)
    credentials = _credentials(state_dir)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only when sock.proto says TCP, and
    # without it every small response waits for the peer's delayed ACK (~40 ms).
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((options.host, options.port))
    sock.listen(256)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    url_host = "127.0.0.1" if options.host in ("0.0.0.0", "") else options.host
    base_url = f"https://{url_host}:{port}"

    config = SimConfig(
        partner_tenant_id=credentials["tenantId"], partner_id=credentials["partnerId"]
    )
    state = SimState(Catalog(), SimClock(), config, state_dir if options.persist else None)
    loaded = state.load()
    if options.settings:
        state.config.update(options.settings)
    if credentials["refreshToken"] not in state.refresh_tokens:
        state.refresh_tokens[credentials["refreshToken"]] = {
            "upn": DEFAULT_USER,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, DEFAULT_USER)),
        }
    if options.customers and not state.customers:
        with state.session() as now:
            state.seed(options.customers, options.reseller_id, 3, 1, now)
    tokens = TokenService(
        state_dir / "signing-key.pem", credentials["tenantId"], credentials["clientId"], base_url
    )
    app = build_app(state, tokens, credentials["clientId"], credentials["clientSecret"])
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            ssl_certfile=str(tls.server_cert),
            ssl_keyfile=str(tls.server_key),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            # httptools (C) rather than h11 (pure Python): about a quarter less CPU per request.
            http="httptools",
        )
    )
    connection = {
        "apiBaseUrl": base_url,
        "priceSheetBaseUrl": base_url,
        "authority": tokens.authority,
        "tokenEndpoint": f"{tokens.authority}/oauth2/v2.0/token",
        "scope": "https://api.partnercenter.microsoft.com/.default",
        "priceSheetScope": "https://api.partner.microsoft.com/.default",
        # Microsoft Graph (partner billing reports: Azure usage exports) on the same host.
        "graphBaseUrl": f"{base_url}/v1.0",
        "graphScope": "https://graph.microsoft.com/.default",
        "tenantId": credentials["tenantId"],
        "clientId": credentials["clientId"],
        "clientSecret": credentials["clientSecret"],
        "refreshToken": credentials["refreshToken"],
        "userPrincipalName": DEFAULT_USER,
        "partnerId": credentials["partnerId"],
        "caCertPath": str(tls.ca_cert.resolve()),
        "port": port,
        "host": url_host,
        "controlUrl": f"{base_url}/_sim",
        "pid": os.getpid(),
        "stateLoaded": loaded,
    }
    announce = asyncio.create_task(_announce(server, state_dir / CONNECTION_FILE, connection))
    saver = asyncio.create_task(_save_periodically(state))
    try:
        await server.serve(sockets=[sock])
    finally:
        for task in (announce, saver):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        state.save(force=True)
        (state_dir / CONNECTION_FILE).unlink(missing_ok=True)
        sock.close()


async def _announce(server: uvicorn.Server, path: Path, connection: dict[str, Any]) -> None:
    # connection.json appears only once the server accepts connections; tests poll for it.
    while not server.started:
        await asyncio.sleep(0.02)
    write_json_atomically(path, connection)


async def _save_periodically(state: SimState) -> None:
    # A snapshot of a large state takes about a second under the lock, so write it once the
    # state has been quiet for a moment, or at the latest every SNAPSHOT_MAX_DELAY seconds.
    seen, changed_at, saved_at = state.changes, time.monotonic(), time.monotonic()
    while True:
        await asyncio.sleep(SNAPSHOT_INTERVAL_SECONDS)
        now = time.monotonic()
        if state.changes != seen:
            seen, changed_at = state.changes, now
        quiet = now - changed_at >= SNAPSHOT_QUIET_SECONDS
        overdue = now - saved_at >= SNAPSHOT_MAX_DELAY_SECONDS
        if not state.unsaved or not (quiet or overdue):
            continue
        try:
            await asyncio.to_thread(state.save)
            saved_at = now
        except OSError:
            log.warning("snapshot failed", exc_info=True)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temp file and a rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _credentials(state_dir: Path) -> dict[str, str]:
    path = state_dir / CREDENTIALS_FILE
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    data = {
        "tenantId": str(uuid.uuid4()),
        "clientId": str(uuid.uuid4()),
        "clientSecret": "sim~" + secrets.token_urlsafe(30),
        "refreshToken": "sim-rt." + secrets.token_urlsafe(32),
        "partnerId": str(secrets.randbelow(9_000_000) + 1_000_000),
    }
    write_json_atomically(path, data)
    return data
