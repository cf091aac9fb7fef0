"""Run the simulator as a subprocess and drive its control API (for tests and scripts)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from localdev.funchost.process import own_session

from .server import CONNECTION_FILE

REPO_ROOT = Path(__file__).resolve().parents[2]


class SimulatorHandle:
    """A running simulator: where it listens, how to trust it, and its /_sim control API."""

    def __init__(
        self, process: subprocess.Popen[bytes], state_dir: Path, connection: dict[str, Any]
    ) -> None:
        self.process = process
        self.state_dir = state_dir
        self.connection = connection
        self.base_url: str = connection["apiBaseUrl"]
        self.ca_cert_path: str = connection["caCertPath"]
        self.ssl_context = ssl.create_default_context(cafile=self.ca_cert_path)
        self.control = httpx.Client(
            base_url=f"{self.base_url}/_sim", verify=self.ssl_context, timeout=60
        )

    # ----------------------------------------------------------------- lifecycle

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, wait for the final snapshot, kill if it hangs; returns the exit code."""
        self.control.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return int(self.process.returncode)

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- Partner Center side

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for the Partner Center API that trusts the simulator's CA."""
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.base_url, verify=self.ssl_context, **kwargs)

    def token(self, *, app_user: bool = False, scope: str | None = None) -> str:
        """An access token from the simulator's token endpoint (app-only or app+user)."""
        form = {
            "client_id": self.connection["clientId"],
            "client_secret": self.connection["clientSecret"],
            "scope": scope or self.connection["scope"],
            "grant_type": "client_credentials",
        }
        if app_user:
            form.update(grant_type="refresh_token", refresh_token=self.connection["refreshToken"])
        with self.client() as http:
            response = http.post(self.connection["tokenEndpoint"], data=form)
            response.raise_for_status()
            return str(response.json()["access_token"])

    # ----------------------------------------------------------------- control API

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any
    ) -> Any:
        response = self.control.request(
            method, path, json=body, params={k: v for k, v in params.items() if v is not None}
        )
        response.raise_for_status()
        return response.json()

    def reset(self) -> dict[str, Any]:
        """Forget all data, faults, throttling and the request log; settings go back to defaults."""
        result: dict[str, Any] = self._call("POST", "/reset")
        return result

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings by camelCase name, e.g. configure(asyncPatch=True)."""
        result: dict[str, Any] = self._call("POST", "/config", settings)
        return result

    def advance_clock(
        self, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0
    ) -> str:
        """Move simulated time forward; returns the new simulated now."""
        body = {"days": days, "hours": hours, "minutes": minutes, "seconds": seconds}
        return str(self._call("POST", "/clock/advance", body)["now"])

    def now(self) -> str:
        """The simulated now."""
        return str(self._call("GET", "/clock")["now"])

    def inject_faults(self, **rule: Any) -> dict[str, Any]:
        """Add a fault rule (latencyMs, errorRate, errorStatus, errorCode, errorDescription,
        throttleRate, retryAfterSeconds,
        dropRate, dropPhase, timeoutRate, timeoutMs, timeoutPhase, pathPrefix, methods, count);
        returns the rule."""
        result: dict[str, Any] = self._call("POST", "/faults", rule)["added"][0]
        return result

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._call("DELETE", "/faults")

    def seed(
        self,
        customers: int,
        reseller_id: str | None = None,
        subscriptions_per_customer: int = 3,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Create existing customers of an indirect reseller, with subscriptions."""
        body = {
            "customers": customers,
            "resellerId": reseller_id,
            "subscriptionsPerCustomer": subscriptions_per_customer,
            "seed": seed,
        }
        result: dict[str, Any] = self._call("POST", "/seed", body)
        return result

    def add_reseller(
        self, tenant_id: str, mpn_id: str, name: str | None = None, state: str = "Active"
    ) -> dict[str, Any]:
        """Make Partner Center list an indirect reseller of the distributor."""
        body = {"id": tenant_id, "mpnId": mpn_id, "name": name, "state": state}
        result: dict[str, Any] = self._call("POST", "/resellers", body)
        return result

    def summary(self) -> dict[str, Any]:
        """Counts of customers, subscriptions, orders, carts and audit records."""
        result: dict[str, Any] = self._call("GET", "/state/summary")
        return result

    def customers(self, reseller_id: str | None = None) -> list[dict[str, Any]]:
        """Compact customer rows with order and subscription counts."""
        result: list[dict[str, Any]] = self._call(
            "GET", "/state/customers", resellerId=reseller_id
        )["items"]
        return result

    def customer_state(self, customer_id: str) -> dict[str, Any]:
        """One customer with subscriptions, orders and carts."""
        result: dict[str, Any] = self._call("GET", f"/state/customers/{customer_id}")
        return result

    def requests(
        self, request_id: str | None = None, path_prefix: str | None = None
    ) -> list[dict[str, Any]]:
        """The request log, optionally for one MS-RequestId or path prefix."""
        result: list[dict[str, Any]] = self._call(
            "GET", "/requests", requestId=request_id, pathPrefix=path_prefix
        )["items"]
        return result

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "/requests")

    def set_qualification(self, customer_id: str, segment: str, status: str = "approved") -> None:
        """Approve (or review/reject) a customer's education/government/nonprofit segment."""
        self._call(
            "POST",
            f"/customers/{customer_id}/qualifications",
            {"segment": segment, "status": status},
        )

    def accept_reseller(
        self,
        reseller_id: str,
        domain: str,
        company_name: str | None = None,
        *,
        subscriptions: list[dict[str, Any]] | None = None,
        billing: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A tenant that existed before accepts `reseller_id` (its tenant id) as reseller, with
        an add_customer audit record; `subscriptions` ([{catalogItemId, quantity, termDuration,
        billingCycle}]) are bought at once. Returns {customer, orders}."""
        name = company_name or domain.split(".")[0].capitalize() + " s.r.o."
        profile = {
            "email": f"admin@{domain}",
            "culture": "cs-CZ",
            "language": "cs",
            "companyName": name,
            "firstName": "Jana",
            "lastName": "Nováková",
            "defaultAddress": {
                "country": "CZ",
                "city": "Praha",
                "postalCode": "110 00",
                "addressLine1": "Národní 1",
            },
            **(billing or {}),
        }
        body = {
            "associatedPartnerId": reseller_id,
            "companyProfile": {"domain": domain, "companyName": name},
            "billingProfile": profile,
            "subscriptions": subscriptions or [],
        }
        result: dict[str, Any] = self._call("POST", "/customers", body)
        return result

    def place_order(
        self,
        customer_id: str,
        catalog_item_id: str,
        quantity: int = 1,
        term_duration: str = "P1Y",
        billing_cycle: str = "monthly",
    ) -> dict[str, Any]:
        """An order placed in Partner Center's own UI (not through the platform); the order."""
        body = {
            "catalogItemId": catalog_item_id,
            "quantity": quantity,
            "termDuration": term_duration,
            "billingCycle": billing_cycle,
        }
        result: dict[str, Any] = self._call("POST", f"/customers/{customer_id}/orders", body)
        return result

    def update_company(self, customer_id: str, **changes: Any) -> dict[str, Any]:
        """Change company data in Partner Center (billingProfile={...}, companyName=...,
        organizationRegistrationNumber=...); `associatedPartnerId=None` ends the relationship."""
        result: dict[str, Any] = self._call("PATCH", f"/customers/{customer_id}", changes)
        return result

    def end_relationship(self, customer_id: str) -> dict[str, Any]:
        """The customer removes the reseller (no longer associated)."""
        return self.update_company(customer_id, associatedPartnerId=None)

    def set_consumed_units(self, customer_id: str, subscription_id: str, consumed: int) -> None:
        """Assign licences of a subscription (reported as consumedUnits)."""
        self._call(
            "POST",
            f"/customers/{customer_id}/subscriptions/{subscription_id}/consumed",
            {"consumedUnits": consumed},
        )

    def usage_totals(
        self, period: str = "current", currency: str | None = None, through: str | None = None
    ) -> dict[str, Any]:
        """What the simulator holds for an Azure usage billing period (current|last), summed
        from its generator without an export: lines, quantity, billingPreTaxTotal, and totals
        bySubscription / byMeterCategory (decimal strings)."""
        result: dict[str, Any] = self._call(
            "GET", "/usage", period=period, currency=currency, through=through
        )
        return result

    def graph_token(self) -> str:
        """An app-only access token for Microsoft Graph (the usage export endpoints)."""
        scope = self.connection.get("graphScope", "https://graph.microsoft.com/.default")
        return self.token(scope=scope)

    def snapshot(self) -> bool:
        """Write the state snapshot now."""
        return bool(self._call("POST", "/snapshot")["saved"])


def start_simulator(
    state_dir: Path | str,
    port: int = 0,
    customers: int = 0,
    *,
    host: str = "127.0.0.1",
    reseller_id: str | None = None,
    settings: dict[str, Any] | None = None,
    timeout: float = 30,
) -> SimulatorHandle:
    """Start `python -m localdev.partner_center_sim` and wait for its connection.json."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    connection_path = state_dir / CONNECTION_FILE
    connection_path.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "localdev.partner_center_sim",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        "--customers",
        str(customers),
        "--host",
        host,
    ]
    if reseller_id:
        command += ["--reseller-id", reseller_id]
    if settings:
        command += ["--settings", json.dumps(settings)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log_file = (state_dir / "simulator.log").open("ab")
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        **own_session(),  # stopped by its handle, not by a Ctrl-C meant for the caller
    )
    log_file.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if connection_path.exists():
            connection = json.loads(connection_path.read_text())
            if connection.get("pid") == process.pid:
                return SimulatorHandle(process, state_dir, connection)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()
    tail = (state_dir / "simulator.log").read_text(errors="replace")[-4000:]
    raise RuntimeError(
        f"the Partner Center simulator did not start (exit {process.returncode}):\n{tail}"
    )
