"""`make run`: Azurite, the Partner Center simulator and the functions host, wired together.

Everything it starts keeps its data under `.local/` (git-ignored) and stops on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from localdev import azurite

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".local"
HOST_PORT = int(os.environ.get("HOST_PORT", "7071"))
SIM_PORT = int(os.environ.get("PARTNER_CENTER_SIM_PORT", "8443"))
ISSUER_PORT = int(os.environ.get("LOCAL_ISSUER_PORT", "7072"))
AZURITE_PORTS = (10000, 10001, 10002)


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{' '.join(map(str, proc.args))} exited ({proc.returncode})")  # type: ignore[arg-type]
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def _start_simulator(
    env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes] | None, dict[str, str]]:
    state = STATE / "pc-sim"
    conn_file = state / "connection.json"
    conn_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localdev.partner_center_sim",
            "--port",
            str(SIM_PORT),
            "--state-dir",
            str(state),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not conn_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the Partner Center simulator did not start; see {log}")
        time.sleep(0.2)
    conn = json.loads(conn_file.read_text())
    return proc, {
        "PARTNER_CENTER_API_BASE_URL": conn["apiBaseUrl"],
        "PARTNER_CENTER_PRICE_SHEET_BASE_URL": conn.get("priceSheetBaseUrl", conn["apiBaseUrl"]),
        "PARTNER_CENTER_AUTHORITY": conn["authority"],
        "PARTNER_CENTER_TENANT_ID": conn["tenantId"],
        "PARTNER_CENTER_CLIENT_ID": conn["clientId"],
        "PARTNER_CENTER_CLIENT_SECRET": conn["clientSecret"],
        "PARTNER_CENTER_CA_CERT_PATH": conn["caCertPath"],
        "PARTNER_CENTER_REFRESH_TOKEN": conn.get("refreshToken", ""),
    }


def _start_issuer(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """The local OpenID issuer (localdev/tokens.py) and the AUTH_ISSUERS that trust it."""
    from localdev.tokens import issuers_json

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localdev.tokens",
            "serve",
            "--port",
            str(ISSUER_PORT),
            "--state-dir",
            str(STATE / "issuer"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{ISSUER_PORT}"
    _wait_http(f"{base}/platform/jwks", 30, proc)
    return proc, {"AUTH_ISSUERS": issuers_json(base)}


def _demo_token(env: dict[str, str]) -> str | None:
    minted = subprocess.run(
        [sys.executable, "-m", "localdev.tokens", "--email", "owner@demo.example"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if minted.returncode != 0:
        return None
    return minted.stdout.strip() or None


def _local_settings() -> Path:
    target = ROOT / "local.settings.json"
    if not target.exists():
        target.write_text((ROOT / "local.settings.example.json").read_text())
        print("created local.settings.json from local.settings.example.json")
    return target


def main() -> int:
    """Start everything, print how to call it, stop everything on Ctrl-C."""
    for port, what in [
        (HOST_PORT, "the functions host"),
        (ISSUER_PORT, "the local token issuer"),
        *((p, "Azurite") for p in AZURITE_PORTS),
    ]:
        if _busy(port):
            print(f"port {port} ({what}) is in use: is `make run` already up?", file=sys.stderr)
            return 1
    STATE.mkdir(exist_ok=True)
    logs = STATE / "logs"
    logs.mkdir(exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    storage: azurite.Azurite | None = None

    def stop() -> None:
        # Our own processes first (they finish what they run), storage last.
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in reversed(children):
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if storage is not None:
            storage.stop()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    # Explicit handlers: a `make run` started in the background inherits an ignored SIGINT.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        storage = azurite.start_npm(
            STATE / "azurite", ports=AZURITE_PORTS, log=logs / "azurite.log"
        )
        assert storage.process is not None
        env = {
            **os.environ,
            "AzureWebJobsStorage": storage.connection_string,
            "MAIL_DROP_DIR": str(STATE / "mail"),
        }
        sim_env: dict[str, str] = {}
        if (ROOT / "localdev" / "partner_center_sim" / "__main__.py").exists():
            sim, sim_env = _start_simulator(env, logs / "partner-center-sim.log")
            if sim is not None:
                children.append(sim)
        env.update(sim_env)
        issuer, issuer_env = _start_issuer(env, logs / "issuer.log")
        children.append(issuer)
        env.update(issuer_env)
        settings = _local_settings()
        host = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localdev.host",
                "--port",
                str(HOST_PORT),
                "--settings",
                str(settings),
            ],
            cwd=ROOT,
            env=env,
        )
        children.append(host)
        _wait_http(f"http://127.0.0.1:{HOST_PORT}/api/health", 60, host)
        seed = ROOT / "localdev" / "seed.py"
        if seed.exists():
            subprocess.run([sys.executable, "-m", "localdev.seed"], cwd=ROOT, env=env, check=True)
        _banner(sim_env, _demo_token(env))
        while all(c.poll() is None for c in [*children, storage.process]):
            time.sleep(0.5)
        print("a process exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…")
        return 0
    finally:
        stop()


def _banner(sim: dict[str, str], token: str | None = None) -> None:
    base = f"http://127.0.0.1:{HOST_PORT}/api"
    lines = [
        "",
        "CSP platform is running (Ctrl-C stops everything):",
        f"  functions host     {base}",
        "  Azurite            blob :{}  queue :{}  table :{}  (data in .local/azurite)".format(
            *AZURITE_PORTS
        ),
    ]
    if sim:
        lines.append(
            f"  Partner Center sim {sim['PARTNER_CENTER_API_BASE_URL']}  (state in .local/pc-sim)"
        )
    lines += [
        f"  token issuer       http://127.0.0.1:{ISSUER_PORT}  (key in .local/issuer)",
        f"  e-mail drop folder {STATE / 'mail'}",
        f"  logs               {STATE / 'logs'}",
        "",
        "Try:",
        f"  curl {base}/health",
        f"  curl {base}/openapi.json",
    ]
    if token:
        lines += [
            "",
            "As owner@demo.example (Account Manager of reseller demo; token valid 1 h):",
            f'  curl -H "Authorization: Bearer {token}" {base}/me',
            "Another user's token: .venv/bin/python -m localdev.tokens --email sales@demo.example",
        ]
    lines.append("")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
