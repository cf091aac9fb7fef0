"""Starting, stopping and restarting the Partner Center simulator process."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from localdev.partner_center_sim import start_simulator
from localdev.partner_center_sim.launcher import REPO_ROOT

pytestmark = pytest.mark.integration


def test_restarted_simulator_keeps_customers_subscriptions_and_clock(tmp_path: Path) -> None:
    state_dir = tmp_path / "sim"
    first = start_simulator(state_dir, customers=3)
    try:
        token = first.token(app_user=True)
        with first.client(headers={"Authorization": f"Bearer {token}"}) as pc:
            before = pc.get("/v1/customers").json()["items"]
        first.advance_clock(days=2)
        clock_before = first.now()
        client_secret = first.connection["clientSecret"]
    finally:
        assert first.stop() == 0
    assert not (state_dir / "connection.json").exists()

    second = start_simulator(state_dir)
    try:
        assert second.connection["stateLoaded"] is True
        assert second.connection["clientSecret"] == client_secret
        assert second.now() >= clock_before
        # A token from the first run stays valid: same signing key, same issuer.
        with second.client(headers={"Authorization": f"Bearer {token}"}) as pc:
            after = pc.get("/v1/customers").json()["items"]
            subs = pc.get(f"/v1/customers/{after[0]['id']}/subscriptions").json()
        assert [c["id"] for c in after] == [c["id"] for c in before]
        assert subs["totalCount"] == 3
    finally:
        second.stop()


def test_cli_with_port_zero_reports_the_real_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localdev.partner_center_sim",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
    )
    try:
        connection_path = tmp_path / "connection.json"
        deadline = time.monotonic() + 30
        while not connection_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        connection = json.loads(connection_path.read_text())
        assert connection["port"] > 0
        assert connection["apiBaseUrl"] == f"https://127.0.0.1:{connection['port']}"
        assert connection["authority"].endswith("/" + connection["tenantId"])
        context = ssl.create_default_context(cafile=connection["caCertPath"])
        discovery = httpx.get(
            f"{connection['authority']}/v2.0/.well-known/openid-configuration", verify=context
        ).json()
        assert discovery["token_endpoint"] == connection["tokenEndpoint"]
        assert {"issuer", "authorization_endpoint", "jwks_uri"} <= set(discovery)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
