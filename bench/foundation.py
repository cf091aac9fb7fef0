"""Foundation figures: cold import, and /api/health through the local host vs. a raw read."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import httpx
from azure.data.tables import TableClient

from bench.common import ROOT, http_caller, latency, running_app, table, throughput

SDKS = (
    "import azure.functions, azure.data.tables, azure.storage.queue, azure.identity, msal, "
    "httpx, pydantic, pydantic_settings, jwt, ulid"
)


def _import_time(code: str, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            check=True,
            env={**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def cold_import() -> list[tuple[str, ...]]:
    """Median wall time of a fresh interpreter importing the app vs. only its SDKs."""
    app = _import_time("import function_app; function_app.app.get_functions()")
    bare = _import_time(SDKS + "\nimport azure.functions as f; f.FunctionApp()")
    return [
        (
            "cold import of function_app (ms, median of 7)",
            f"{app:.0f}",
            f"{bare:.0f}",
            f"{app / bare:.2f}",
        )
    ]


def health_vs_point_read(n: int = 400, total: int = 800, workers: int = 8) -> list[tuple[str, ...]]:
    """/api/health through the local host vs. a raw Table point read on the same Azurite."""
    with running_app() as (base, storage):
        url = f"{base}/health"
        tc = TableClient.from_connection_string(storage, "BenchFloor")
        tc.create_table()
        tc.upsert_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
        client = httpx.Client()
        h50, h99 = latency(lambda: client.get(url), n)
        f50, f99 = latency(lambda: tc.get_entity("p", "r"), n)

        def read_caller():  # type: ignore[no-untyped-def]
            t = TableClient.from_connection_string(storage, "BenchFloor")
            return lambda: t.get_entity("p", "r")

        h_rps = throughput(http_caller(url), total, workers)
        f_rps = throughput(read_caller, total, workers)
    return [
        (
            "/api/health p50 (ms) vs Table point read",
            f"{h50:.2f}",
            f"{f50:.2f}",
            f"{h50 / f50:.2f}",
        ),
        (
            "/api/health p99 (ms) vs Table point read",
            f"{h99:.2f}",
            f"{f99:.2f}",
            f"{h99 / f99:.2f}",
        ),
        (
            f"/api/health requests/s ({workers} clients) vs point reads/s",
            f"{h_rps:.0f}",
            f"{f_rps:.0f}",
            f"{h_rps / f_rps:.2f}",
        ),
    ]


def main() -> None:
    """Print the foundation's figures."""
    print(table("Foundation", cold_import() + health_vs_point_read()), flush=True)
