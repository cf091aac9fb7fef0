"""Orders: table writes and Partner Center calls per placed order, and submit → Completed
through the local host (Azurite, the simulator, the local issuer).

The counts come from running the services in this process against Azurite and the simulator,
with every table client wrapped to count its calls; the Partner Center calls are the simulator's
request log for the customer's tenant. The latency is the real thing: HTTP create and submit on
the local host, then the order's status read until it is Completed.

Writes include the outbox's own: submit's transaction carries the `provision-order` row, which
the dispatcher deletes after sending (one more write on Orders) and whose partition is marked
for the sweeper first (OutboxPartitions); the order's e-mail is the same pattern on
Notifications.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, simulator_env
from localdev import azurite
from localdev.funchost.config import quiet_timers
from localdev.funchost.process import HostProcess
from localdev.partner_center_sim import SimulatorHandle, start_simulator
from localdev.seed import demo_line, provision_now, seed, seed_catalog, seed_customers
from localdev.tokens import issuers_json, serve_in_thread, token_for
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.orders import OrderCreate, OrderStatus, order_row_key
from shared.services import orders

ORDERS = 5
OWNER = "owner@demo.example"
AM = Principal("bench", "demo", None, Role.ACCOUNT_MANAGER, OWNER, SignInKind.PLATFORM)
WRITES = {"create_entity", "update_entity", "upsert_entity", "delete_entity", "submit_transaction"}
READS = {"get_entity", "query_entities", "list_entities"}
DONE = {OrderStatus.COMPLETED, OrderStatus.COMPLETED_WITH_ERRORS, OrderStatus.FAILED}


class _CountedTable:
    """A TableClient that counts its calls (a transaction is one call)."""

    def __init__(self, client: Any, counts: Counter[str], name: str) -> None:
        self._client, self._counts, self._name = client, counts, name

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._client, attr)
        if attr in WRITES or attr in READS:
            kind = "write" if attr in WRITES else "read"

            def counted(*args: Any, **kwargs: Any) -> Any:
                self._counts[f"{kind} {self._name}"] += 1
                return target(*args, **kwargs)

            return counted
        return target


@contextmanager
def _world() -> Iterator[tuple[dict[str, str], Container, SimulatorHandle, Path]]:
    """Azurite, the simulator and the issuer, with the demo data seeded (prefix BenchOrders)."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = azurite.start_npm(Path(tmp) / "az")
        sim = start_simulator(Path(tmp) / "sim")
        srv, base = serve_in_thread(0, Path(tmp) / "issuer")
        try:
            env = {
                **quiet_timers(),
                **simulator_env(sim),
                "APP_ENVIRONMENT": "test",
                "AzureWebJobsStorage": storage.connection_string,
                "TABLE_PREFIX": "BenchOrders",
                "AUTH_ISSUERS": issuers_json(base),
                "MAIL_DROP_DIR": str(Path(tmp) / "mail"),
                "PUBLIC_BASE_URL": "http://portal.test",
                "CATALOG_IMPORT_SCHEDULE": "0 0 0 1 1 *",
                "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
                "REMINDER_SCHEDULE": "0 0 0 1 1 *",
                "USAGE_IMPORT_SCHEDULE": "0 0 0 1 1 *",
                "SYNC_SCHEDULE": "0 0 0 1 1 *",
                "OUTBOX_SWEEP_SCHEDULE": "*/5 * * * * *",
                "ORDER_POLL_SECONDS": "1",
                "LOCALHOST_LOG_LEVEL": "WARNING",
            }
            c = Container(Settings.model_validate(env))
            seed(c)
            seed_catalog(c)
            seed_customers(c)
            yield env, c, sim, Path(tmp)
        finally:
            srv.shutdown()
            sim.stop()
            storage.stop()


def _per_order_counts(c: Container, sim: SimulatorHandle) -> list[tuple[str, ...]]:
    """Table calls of create, submit and the provisioning step; Partner Center calls."""
    counts: Counter[str] = Counter()
    store = c.store
    plain = store.table
    store.table = lambda name: _CountedTable(plain(name), counts, name)  # type: ignore[method-assign]
    book = c.order_book
    customer = next(x for x in c.customers.iterate("demo") if x.segment == "commercial")
    assert customer.tenant_id is not None
    phases: dict[str, list[Counter[str]]] = {"create": [], "submit": [], "provision": []}
    pc_calls: list[Counter[str]] = []
    for n in range(ORDERS):
        counts.clear()
        command = OrderCreate.model_validate(
            {"lines": [demo_line(c, customer, "Microsoft 365 E3", n + 1)]}
        )
        draft = orders.create(book, AM, "demo", customer.id, command)
        phases["create"].append(Counter(counts))
        counts.clear()
        order = orders.submit(book, AM, "demo", customer.id, draft.id, draft.etag or "")
        phases["submit"].append(Counter(counts))
        counts.clear()
        sim.clear_requests()
        done = provision_now(c, order, wait_seconds=0.2)
        assert done.status is OrderStatus.COMPLETED, done.status
        phases["provision"].append(Counter(counts))
        log = sim.requests(path_prefix=f"/v1/customers/{customer.tenant_id}")
        pc_calls.append(Counter(_pc_kind(r["method"], r["path"]) for r in log))
    store.table = plain  # type: ignore[method-assign]
    rows: list[tuple[str, ...]] = []
    for phase, samples in phases.items():
        where = ", ".join(
            f"{k.split(' ', 1)[1].removeprefix('BenchOrders')} {v}"
            for k, v in sorted(samples[-1].items())
            if k.startswith("write")
        )
        rows.append(
            (
                f"table writes per order: {phase} ({where})",
                f"{_median(samples, 'write'):g}",
                f"reads {_median(samples, 'read'):g}",
            )
        )
    total = sum(_median(samples, "write") for samples in phases.values())
    rows.append(("table writes per order: create + submit + provision", f"{total:g}", ""))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(pc_calls[-1].items()))
    rows.append(
        (
            f"Partner Center calls per order ({kinds})",
            f"{statistics.median(sum(s.values()) for s in pc_calls):g}",
            "order reads: the polls",
        )
    )
    return rows


def _median(samples: list[Counter[str]], kind: str) -> float:
    """The median over orders of the calls of `kind` (write / read)."""
    return statistics.median(sum(v for k, v in s.items() if k.startswith(kind)) for s in samples)


def _pc_kind(method: str, path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[-1] == "checkout":
        return "checkout"
    if len(parts) >= 4 and parts[3] == "carts":
        return "cart"
    if len(parts) >= 4 and parts[3] == "orders":
        return "order read"
    if len(parts) >= 4 and parts[3] == "subscriptions":
        return "subscription read"
    return f"{method} {parts[3] if len(parts) > 3 else path}"


def _host_latency(env: dict[str, str], c: Container, tmp: Path) -> list[tuple[str, ...]]:
    """Submit → Completed through the local host (HTTP submit; status read from the table)."""
    host_json = json.loads((ROOT / "host.json").read_text())
    host_json["extensions"]["queues"]["maxPollingInterval"] = "00:00:00.200"
    (tmp / "host.json").write_text(json.dumps(host_json))
    host = HostProcess(
        cwd=ROOT,
        env={**os.environ, **env},
        settings=tmp / "none.json",
        host_json=tmp / "host.json",
        log_path=tmp / "host.log",
    )
    host.start(timeout=60)
    token = token_for(OWNER, SignInKind.PLATFORM, state_dir=tmp / "issuer", settings=c.settings)
    customer = next(x for x in c.customers.iterate("demo") if x.segment == "commercial")
    base = f"{host.base_url}/api/resellers/demo/customers/{customer.id}/orders"
    auth = {"Authorization": f"Bearer {token}"}
    samples: list[float] = []
    try:
        with httpx.Client(timeout=30) as client:
            for n in range(ORDERS):
                body = {"lines": [demo_line(c, customer, "Microsoft 365 E3", 10 + n)]}
                made = client.post(base, json=body, headers=auth)
                made.raise_for_status()
                order_id = made.json()["id"]
                started = time.perf_counter()
                client.post(
                    f"{base}/{order_id}/submit",
                    headers={**auth, "If-Match": made.headers["etag"]},
                ).raise_for_status()
                deadline = started + 60
                while c.orders.get("demo", order_row_key(order_id)).status not in DONE:
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"order {order_id} did not finish in 60 s")
                    time.sleep(0.05)
                samples.append(time.perf_counter() - started)
    finally:
        host.stop()
    p50 = statistics.median(samples) * 1000
    return [
        (
            f"submit → Completed, local host (ms, p50 of {ORDERS}; ORDER_POLL_SECONDS=1)",
            f"{p50:.0f}",
            f"max {max(samples) * 1000:.0f}",
        )
    ]


def main() -> None:
    """Print the order figures."""
    with _world() as (env, c, sim, tmp):
        rows = _per_order_counts(c, sim) + _host_latency(env, c, tmp)
    head = "\n### Orders\n\n| measure | value | note |\n| --- | ---: | ---: |\n"
    print(head + "".join("| " + " | ".join(r) + " |\n" for r in rows), flush=True)


if __name__ == "__main__":
    main()
