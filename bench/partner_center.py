"""Partner Center client figures against the simulator: round-trip latency and paging rate.

The floor is a bare httpx HTTPS request to the same simulator with a ready token: what is left
over is the client's own cost (headers, token cache lookup, retries bookkeeping, pydantic).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import httpx

from bench.common import percentiles, simulator_settings
from localdev.partner_center_sim import start_simulator
from shared.adapters.partner_center import PartnerCenterClient, build_partner_center

CUSTOMERS = 10_000
PAGE_SIZE = 500
ROUND_TRIPS = 300
LISTING_RUNS = 5


def _timed(fn: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _bare_listing(http: httpx.Client, token: str) -> int:
    """Page through /v1/customers with nothing but httpx and json (the floor)."""
    count, continuation = 0, None
    while True:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        params: dict[str, Any] = {"size": PAGE_SIZE}
        if continuation:
            params["seekOperation"] = "next"
            headers["MS-ContinuationToken"] = continuation
        body = http.get("/v1/customers", params=params, headers=headers).json()
        count += len(body["items"])
        continuation = body.get("continuationToken")
        if not continuation:
            return count


def _rates(list_all: Callable[[], int]) -> list[float]:
    rates = []
    for _ in range(LISTING_RUNS):
        start = time.perf_counter()
        count = list_all()
        rates.append(count / (time.perf_counter() - start))
    assert count == CUSTOMERS, count
    return rates


def _row(measure: str, value: tuple[float, float], floor: float, ratio: float) -> str:
    return f"| {measure} | {value[0]:,.1f} | {value[1]:,.1f} | {floor:,.1f} | {ratio:.2f}× |\n"


def main() -> None:
    """Start a simulator, measure the client against bare httpx, print a Markdown table."""
    with tempfile.TemporaryDirectory() as state_dir:
        sim = start_simulator(state_dir, settings={"requireAppUser": False})
        try:
            sim.seed(CUSTOMERS, reseller_id="5123456", subscriptions_per_customer=1, seed=1)
            client: PartnerCenterClient = build_partner_center(simulator_settings(sim))
            bare = sim.client()
            token = sim.token()
            try:
                customer_id = next(iter(client.list_customers(page_size=1))).id or ""
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

                def bare_get() -> None:
                    bare.get(f"/v1/customers/{customer_id}", headers=headers).json()

                client_ms = percentiles(
                    _timed(lambda: client.get_customer(customer_id), ROUND_TRIPS)
                )
                floor_ms = percentiles(_timed(bare_get, ROUND_TRIPS))

                def client_listing() -> int:
                    return sum(1 for _ in client.list_customers(page_size=PAGE_SIZE))

                client_rates = _rates(client_listing)
                floor_rates = _rates(lambda: _bare_listing(bare, token))
            finally:
                client.close()
                bare.close()
        finally:
            sim.stop()

    # For a rate, "p99" is the slowest run; ratio is always floor-relative cost (>1 = slower).
    client_rate = (statistics.median(client_rates), min(client_rates))
    floor_rate = statistics.median(floor_rates)
    print("\n### Partner Center client (simulator over HTTPS)\n")
    print("| measure | median | p99 | floor | ratio |\n| --- | ---: | ---: | ---: | ---: |")
    print(
        _row("get customer round-trip (ms)", client_ms, floor_ms[0], client_ms[0] / floor_ms[0]),
        end="",
    )
    print(
        _row(
            f"list {CUSTOMERS:,} customers, {PAGE_SIZE}/page (customers/s)",
            client_rate,
            floor_rate,
            floor_rate / client_rate[0],
        ),
        end="",
    )


if __name__ == "__main__":
    main()
