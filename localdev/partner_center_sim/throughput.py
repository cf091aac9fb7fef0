"""How fast the simulator answers the sync's reads (figures, not a test).

A full sync of 10,000 customers × 3 subscriptions reads 20 customer pages and, per customer,
`GET …/subscriptions` and `GET …/subscribedskus` (~20,000 reads). This seeds a simulator, then
sends those reads from a thread pool and prints requests/s and the simulator's CPU seconds.

    .venv/bin/python -m localdev.partner_center_sim.throughput [customers] [threads]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from .launcher import SimulatorHandle, start_simulator

RESELLER = "3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def list_ids(sim: SimulatorHandle, http: httpx.Client, headers: dict[str, str]) -> list[str]:
    """Every customer id of the reseller, 500 per page; the number of pages is printed."""
    ids: list[str] = []
    params: dict[str, str | int] = {
        "size": 500,
        "filter": json.dumps(
            {"Field": "IndirectReseller", "Value": RESELLER, "Operator": "starts_with"}
        ),
    }
    page_headers = dict(headers)
    pages = 0
    while True:
        body = http.get("/v1/customers", params=params, headers=page_headers).json()
        pages += 1
        ids += [c["id"] for c in body["items"]]
        token = body.get("continuationToken")
        if not token:
            print(f"customer pages: {pages}")
            return ids
        params = {"size": 500, "seekOperation": "next"}
        page_headers = {**headers, "MS-ContinuationToken": token}


def main(customers: int = 10_000, threads: int = 6) -> None:
    """Seed, list, then read every customer's subscriptions and licences."""
    with tempfile.TemporaryDirectory() as state_dir:
        sim = start_simulator(state_dir)
        try:
            started = time.perf_counter()
            seeded = sim.seed(customers, RESELLER, subscriptions_per_customer=3)
            print(
                f"seed {customers} x 3: {time.perf_counter() - started:.2f} s wall "
                f"({seeded['seconds']} s in the simulator)"
            )
            headers = {
                "Authorization": f"Bearer {sim.token(app_user=True)}",
                "MS-Contract-Version": "v1",
            }
            limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
            with sim.client(limits=limits) as http:
                ids = list_ids(sim, http, headers)
                paths = [
                    f"/v1/customers/{i}/{leaf}"
                    for i in ids
                    for leaf in ("subscriptions", "subscribedskus")
                ]

                def read(path: str) -> int:
                    return http.get(path, headers=headers).status_code

                cpu_before = cpu_seconds(sim.process.pid)
                started = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    statuses = list(pool.map(read, paths))
                wall = time.perf_counter() - started
                cpu = cpu_seconds(sim.process.pid) - cpu_before
            bad = sum(1 for s in statuses if s != 200)
            print(
                f"{len(paths)} reads with {threads} threads: {wall:.1f} s, "
                f"{len(paths) / wall:.0f} requests/s, simulator CPU {cpu:.1f} s "
                f"({1000 * cpu / len(paths):.2f} ms/request), non-200: {bad}"
            )
        finally:
            sim.stop()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
