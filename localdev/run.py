"""`make run`: Azurite, the Partner Center simulator and the functions host, wired together.

Everything it starts keeps its data under `.local/` (git-ignored; `--state-dir` elsewhere) and
stops on Ctrl-C. Ports and paths come from arguments (defaults: the well-known local ports, or
HOST_PORT, PARTNER_CENTER_SIM_PORT, LOCAL_ISSUER_PORT and AZURITE_PORTS from the environment).

Stopping: a terminal's Ctrl-C, a closed terminal, a supervisor or `timeout` signal the whole
process group. The children therefore run in sessions of their own (the group signal reaches
only this process, and `make`), and this process turns the first SIGINT, SIGTERM or SIGHUP into
one orderly stop that later signals cannot interrupt: the host first (it stops taking work and
lets running invocations finish), then the simulator and the issuer, storage last. On Linux a
child also gets SIGTERM if this process dies without stopping it (SIGKILL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from localdev import azurite
from localdev.funchost.config import load_settings
from localdev.funchost.process import own_session

ROOT = Path(__file__).resolve().parent.parent
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _env_ports(name: str, default: str) -> tuple[int, ...]:
    return tuple(int(p) for p in os.environ.get(name, default).split(","))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m localdev.run", description=__doc__.split("\n")[0])
    p.add_argument("--host-port", type=int, default=_env_ports("HOST_PORT", "7071")[0])
    p.add_argument("--sim-port", type=int, default=_env_ports("PARTNER_CENTER_SIM_PORT", "8443")[0])
    p.add_argument("--issuer-port", type=int, default=_env_ports("LOCAL_ISSUER_PORT", "7072")[0])
    p.add_argument(
        "--azurite-ports",
        type=lambda v: tuple(int(p) for p in v.split(",")),
        default=_env_ports("AZURITE_PORTS", "10000,10001,10002"),
        help="blob,queue,table",
    )
    p.add_argument("--state-dir", type=Path, default=ROOT / ".local", help="data and logs")
    p.add_argument(
        "--settings",
        type=Path,
        default=None,
        help="local.settings.json (default: the repository's, created from the example)",
    )
    p.add_argument("--no-seed", action="store_true", help="start with empty storage")
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=30.0,
        help="seconds the host may take to finish running invocations when stopping",
    )
    return p


def partner_center_settings(connection_file: Path) -> dict[str, str]:
    """The app settings that point the Partner Center client at a running simulator."""
    conn = json.loads(connection_file.read_text())
    return {
        "PARTNER_CENTER_API_BASE_URL": conn["apiBaseUrl"],
        "PARTNER_CENTER_PRICE_SHEET_BASE_URL": conn.get("priceSheetBaseUrl", conn["apiBaseUrl"]),
        "PARTNER_CENTER_GRAPH_URL": conn.get("graphBaseUrl", f"{conn['apiBaseUrl']}/v1.0"),
        "PARTNER_CENTER_AUTHORITY": conn["authority"],
        "PARTNER_CENTER_TENANT_ID": conn["tenantId"],
        "PARTNER_CENTER_CLIENT_ID": conn["clientId"],
        "PARTNER_CENTER_CLIENT_SECRET": conn["clientSecret"],
        "PARTNER_CENTER_CA_CERT_PATH": conn["caCertPath"],
        "PARTNER_CENTER_REFRESH_TOKEN": conn.get("refreshToken", ""),
        # The platform's NCE windows follow the simulator's clock (advanced by tests and demos).
        "PARTNER_CENTER_SIMULATED_CLOCK": "true",
    }


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


class Stopping(Exception):
    """The first stop signal: leave whatever is starting or waiting, and stop everything."""


class Run:
    """The processes of one `make run` and their orderly stop."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.state: Path = opts.state_dir.resolve()
        self.logs = self.state / "logs"
        self.children: list[tuple[str, subprocess.Popen[bytes], float]] = []
        self.storage: azurite.Azurite | None = None
        self.stopping = False

    # -- signals -----------------------------------------------------------------------------

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """The first signal stops everything once; later ones (the same group signal reaching
        `make` too, a second Ctrl-C, SIGHUP after SIGTERM) must not cut that stop short."""
        if self.stopping:
            print(f"{signal.Signals(signum).name}: already stopping, please wait…", flush=True)
            return
        self.stopping = True
        print(f"\n{signal.Signals(signum).name}: stopping…", flush=True)
        raise Stopping

    def stop(self) -> None:
        """Host first (it finishes running invocations), then the rest, storage last."""
        self.stopping = True
        for name, child, grace in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop within {grace:.0f}s: killed", file=sys.stderr)
                    child.kill()
                    child.wait()
        if self.storage is not None:
            self.storage.stop()
        print("stopped", flush=True)

    # -- starting ----------------------------------------------------------------------------

    def spawn(
        self, name: str, args: list[str], env: dict[str, str], log: Path | None, grace: float
    ) -> subprocess.Popen[bytes]:
        """A child in a session of its own; stopped by `stop`, SIGTERM then `grace` seconds."""
        out = log.open("ab") if log else None
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            **own_session(),
        )
        self.children.append((name, proc, grace))
        return proc

    def start_simulator(self, env: dict[str, str]) -> dict[str, str]:
        state = self.state / "pc-sim"
        conn_file = state / "connection.json"
        conn_file.unlink(missing_ok=True)
        port = str(self.opts.sim_port)
        proc = self.spawn(
            "the Partner Center simulator",
            ["-m", "localdev.partner_center_sim", "--port", port, "--state-dir", str(state)],
            env,
            self.logs / "partner-center-sim.log",
            15,
        )
        deadline = time.monotonic() + 60
        while not conn_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Partner Center simulator did not start; see {self.logs}")
            time.sleep(0.2)
        return partner_center_settings(conn_file)

    def start_issuer(self, env: dict[str, str]) -> dict[str, str]:
        """The local OpenID issuer (localdev/tokens.py) and the AUTH_ISSUERS that trust it."""
        from localdev.tokens import issuers_json

        proc = self.spawn(
            "the token issuer",
            [
                "-m",
                "localdev.tokens",
                "serve",
                "--port",
                str(self.opts.issuer_port),
                "--state-dir",
                str(self.state / "issuer"),
            ],
            env,
            self.logs / "issuer.log",
            5,
        )
        base = f"http://127.0.0.1:{self.opts.issuer_port}"
        _wait_http(f"{base}/platform/jwks", 30, proc)
        return {"AUTH_ISSUERS": issuers_json(base)}

    def run_once(self, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """A short helper command (seed, a token), also out of reach of the group signal."""
        return subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            **own_session(),
        )

    def settings_file(self) -> Path:
        if self.opts.settings is not None:
            return Path(self.opts.settings)
        target = ROOT / "local.settings.json"
        example = ROOT / "local.settings.example.json"
        if not target.exists():
            target.write_text(example.read_text())
            print("created local.settings.json from local.settings.example.json")
        else:
            added = add_missing_settings(target, example)
            if added:
                print(f"local.settings.json: added from the example: {', '.join(added)}")
        return target

    def up(self) -> None:
        """Start everything, seed the demo data, print how to call it."""
        opts = self.opts
        self.logs.mkdir(parents=True, exist_ok=True)
        self.storage = azurite.start_npm(
            self.state / "azurite", ports=opts.azurite_ports, log=self.logs / "azurite.log"
        )
        settings = self.settings_file()
        # One set of values for every child (the seed and tokens read local.settings.json
        # themselves otherwise, which may not be the file given here); the environment wins.
        env = {**load_settings(settings, {}), **os.environ}
        env.update(
            {
                "AzureWebJobsStorage": self.storage.connection_string,
                "MAIL_DROP_DIR": str(self.state / "mail"),
            }
        )
        sim_env = self.start_simulator(env)
        env.update(sim_env)
        env.update(self.start_issuer(env))
        host = self.spawn(
            "the functions host",
            [
                "-m",
                "localdev.host",
                "--port",
                str(opts.host_port),
                "--settings",
                str(settings),
                "--shutdown-grace",
                str(opts.shutdown_grace),
            ],
            env,
            None,
            opts.shutdown_grace + 10,
        )
        _wait_http(f"http://127.0.0.1:{opts.host_port}/api/health", 60, host)
        if not opts.no_seed:
            seeded = self.run_once(["-m", "localdev.seed"], env)
            if seeded.returncode != 0:
                raise SystemExit(f"seeding failed:\n{seeded.stdout}{seeded.stderr}")
            print(seeded.stdout, end="")
        token = None
        if not opts.no_seed:  # without the demo data there is no demo user to mint for
            minted = self.run_once(
                [
                    "-m",
                    "localdev.tokens",
                    "--email",
                    "owner@demo.example",
                    "--state-dir",
                    str(self.state / "issuer"),
                ],
                env,
            )
            token = minted.stdout.strip() if minted.returncode == 0 else None
        _banner(opts, self.state, sim_env, token)

    def wait(self) -> None:
        """Until a signal (Stopping) or until one of the processes exits by itself."""
        assert self.storage is not None and self.storage.process is not None
        procs = [p for _, p, _ in self.children] + [self.storage.process]
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Start everything, print how to call it, stop everything on the first stop signal."""
    opts = _parser().parse_args(argv)
    for port, what in [
        (opts.host_port, "the functions host"),
        (opts.issuer_port, "the local token issuer"),
        (opts.sim_port, "the Partner Center simulator"),
        *((p, "Azurite") for p in opts.azurite_ports),
    ]:
        if _busy(port):
            print(f"port {port} ({what}) is in use: is `make run` already up?", file=sys.stderr)
            return 1
    run = Run(opts)
    previous: dict[int, Callable[..., Any] | int | None] = {}
    # Explicit handlers: a `make run` started in the background inherits an ignored SIGINT.
    for sig in STOP_SIGNALS:
        previous[sig] = signal.signal(sig, run.on_signal)
    try:
        run.up()
        run.wait()
        print("a process exited; stopping the rest", file=sys.stderr)
        return 1
    except Stopping:
        return 0
    finally:
        run.stopping = True  # from here on a signal only says "already stopping"
        with contextlib.suppress(Stopping):  # (it could land before the line above)
            run.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _banner(
    opts: argparse.Namespace, state: Path, sim: dict[str, str], token: str | None = None
) -> None:
    base = f"http://127.0.0.1:{opts.host_port}/api"
    lines = [
        "",
        "CSP platform is running (Ctrl-C stops everything):",
        f"  functions host     {base}",
        "  Azurite            blob :{}  queue :{}  table :{}  (data in {})".format(
            *opts.azurite_ports, state / "azurite"
        ),
    ]
    if sim:
        lines.append(
            f"  Partner Center sim {sim['PARTNER_CENTER_API_BASE_URL']}"
            f"  (state in {state / 'pc-sim'})"
        )
    lines += [
        f"  token issuer       http://127.0.0.1:{opts.issuer_port}  (key in {state / 'issuer'})",
        f"  e-mail drop folder {state / 'mail'}",
        f"  logs               {state / 'logs'}",
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
            "",
            "Subscriptions (CUSTOMER: the first seeded customer's id, printed above):",
            f"  export TOKEN={token} API={base}",
            '  curl -H "Authorization: Bearer $TOKEN" '
            "$API/resellers/demo/customers/$CUSTOMER/subscriptions",
            '  curl -H "Authorization: Bearer $TOKEN" "$API/resellers/demo/renewals?within=30"',
            "  # a change (If-Match: the ETag of GET …/subscriptions/$SUB): 202, the Change order",
            '  curl -X PATCH -H "Authorization: Bearer $TOKEN" -H "If-Match: $ETAG" '
            "-H 'Content-Type: application/json' -d '{\"quantity\": 6}' "
            "$API/resellers/demo/customers/$CUSTOMER/subscriptions/$SUB",
            "  # also: POST …/$SUB/convert (trial → paid), POST …/$SUB/upgrade, PUT/DELETE "
            "…/$SUB/next-term",
            "",
            "Sync now (the simulator holds tenants of demo the platform does not know yet, and one",
            "of a reseller whose id begins with demo's): 202 and the run's Location; again while",
            "it runs: the same run; soon after it ended: 409 saying when it is possible again",
            '  curl -i -X POST -H "Authorization: Bearer $TOKEN" $API/resellers/demo/sync',
            '  curl -H "Authorization: Bearer $TOKEN" $API/resellers/demo/sync/runs',
            '  curl -i -H "Authorization: Bearer $TOKEN" $API/resellers/demo/sync/runs/$RUN',
            "",
            "Reports (the licence and revenue reports follow the ledger of subscription changes;",
            "the usage report the Azure usage import queued at start): JSON, or ?format=csv|xlsx",
            '  curl -H "Authorization: Bearer $TOKEN" $API/resellers/demo/reports/licences',
            '  curl -H "Authorization: Bearer $TOKEN" "$API/resellers/demo/reports/revenue?'
            'months=6"',
            '  curl -H "Authorization: Bearer $TOKEN" "$API/resellers/demo/reports/usage?'
            'groupBy=meterCategory"',
            '  curl -OJ -H "Authorization: Bearer $TOKEN" "$API/resellers/demo/reports/licences?'
            'format=xlsx"',
        ]
    lines.append("")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())


def add_missing_settings(target: Path, example: Path) -> list[str]:
    """Copy the example's `Values` that `target` lacks into it (a setting a new feature needs,
    such as a timer's schedule, would otherwise stop the host); what is set stays. The names
    added, sorted."""
    ours = json.loads(target.read_text(encoding="utf-8-sig"))
    theirs = json.loads(example.read_text(encoding="utf-8-sig"))
    values = ours.setdefault("Values", {})
    missing = sorted(k for k in theirs.get("Values", {}) if k not in values)
    if missing:
        for key in missing:
            values[key] = theirs["Values"][key]
        target.write_text(json.dumps(ours, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return missing
