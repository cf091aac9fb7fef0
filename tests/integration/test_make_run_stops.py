"""`make run` stops in order on one signal to its whole process group, whichever signal it is.

A terminal's Ctrl-C (SIGINT), a closed terminal (SIGHUP), `timeout` or a supervisor (SIGTERM)
signal every process of the foreground group. What `make run` runs (`python -m localdev.run`)
is started here the same way, on free ports with its data in a temporary directory, with a
customer being provisioned while the signal arrives (the simulator holds the Partner Center
call for a few seconds). Afterwards no process it started is left, its ports are free, and the
invocation that was running has finished instead of being cut off.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localdev.azurite import connection_string
from localdev.funchost.process import free_port
from localdev.run import partner_center_settings
from localdev.seed import seed
from localdev.tokens import issuers_json, token_for
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.identity import SignInKind
from tests.customer_bodies import new_customer_body
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
HELD_MS = 2000  # how long the simulator holds the create call: the signal lands inside it


def _children_of(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Running:
    """`python -m localdev.run` in a process group of its own, as `make run` is in a terminal."""

    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "state"
        self.ports = {
            name: free_port() for name in ("host", "sim", "issuer", "blob", "queue", "table")
        }
        self.log = tmp / "run.log"
        p = self.ports
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localdev.run",
                "--host-port",
                str(p["host"]),
                "--sim-port",
                str(p["sim"]),
                "--issuer-port",
                str(p["issuer"]),
                "--azurite-ports",
                f"{p['blob']},{p['queue']},{p['table']}",
                "--state-dir",
                str(self.state),
                "--settings",
                str(ROOT / "local.settings.example.json"),
                "--no-seed",
                "--shutdown-grace",
                "20",
            ],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the test signals that group
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """Last resort when a test failed half-way: nothing may outlive it."""
        for pid in [*_children_of(self.process.pid), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    run = Running(tmp_path)
    try:
        yield run
    finally:
        if run.process.poll() is None or _children_of(run.process.pid):
            run.kill()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=str)
def test_one_signal_to_the_process_group_stops_everything_and_drops_no_work(
    running: Running, sig: signal.Signals
) -> None:
    wait_until(
        lambda: "CSP platform is running" in running.output(),
        timeout=60,
        what=f"make run to be up:\n{running.output()}",
    )
    p = running.ports
    settings = Settings.model_validate(
        {
            "APP_ENVIRONMENT": "test",
            "AzureWebJobsStorage": connection_string(p["blob"], p["queue"], p["table"]),
            "AUTH_ISSUERS": issuers_json(f"http://127.0.0.1:{p['issuer']}"),
            **partner_center_settings(running.state / "pc-sim" / "connection.json"),
        }
    )
    c = Container(settings)
    seed(c)
    sim = json.loads((running.state / "pc-sim" / "connection.json").read_text())
    ca = ssl.create_default_context(cafile=sim["caCertPath"])
    with httpx.Client(base_url=f"{sim['apiBaseUrl']}/_sim", verify=ca) as control:
        control.post(
            "/faults",
            json={"pathPrefix": "/v1/customers", "methods": ["POST"], "latencyMs": HELD_MS},
        ).raise_for_status()
    token = token_for(
        "owner@demo.example",
        SignInKind.PLATFORM,
        state_dir=running.state / "issuer",
        settings=c.settings,
    )
    created = httpx.post(
        f"http://127.0.0.1:{p['host']}/api/resellers/demo/customers",
        json=new_customer_body("inflight"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert created.status_code == 202, created.text
    customer_id = created.json()["id"]
    wait_until(
        lambda: "Executing 'Functions.queue_provision_customer'" in running.output(),
        timeout=20,
        what="the provisioning step to be running",
    )
    processes = _children_of(running.process.pid)
    assert len(processes) >= 4, processes  # Azurite, the simulator, the issuer, the host

    os.killpg(running.process.pid, sig)
    if sig is signal.SIGTERM:
        # GNU make passes a SIGTERM on to its children: `make run` gets it twice.
        time.sleep(0.2)
        os.kill(running.process.pid, sig)
    assert running.process.wait(timeout=45) == 0, running.output()

    out = running.output()
    assert "Second Ctrl-C" not in out, out
    # The step that was running when the signal came finished (the customer is Active, its
    # message deleted); none was left running, to come back only when its lease ends.
    assert "Executed 'Functions.queue_provision_customer' (Succeeded" in out, out
    assert f"customer demo/{customer_id} is Active" in out, out
    assert "still running at shutdown" not in out, out
    assert not [pid for pid in processes if _alive(pid)], out
    assert not [port for port in running.ports.values() if _listening(port)], running.ports
