"""Small timing helpers shared by the benchmark modules."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from localdev import azurite
from localdev.funchost.config import quiet_timers
from localdev.funchost.process import HostProcess
from localdev.partner_center_sim import SimulatorHandle
from shared.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of samples, in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def latency(fn: Callable[[], object], n: int, warmup: int = 20) -> tuple[float, float]:
    """p50/p99 latency (ms) of `fn` called `n` times one after another."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def throughput(make: Callable[[], Callable[[], object]], total: int, workers: int) -> float:
    """Calls per second with `workers` threads, each with its own callable from `make`."""
    per = total // workers

    def work() -> None:
        fn = make()
        for _ in range(per):
            fn()

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(work) for _ in range(workers)]:
            f.result()
    return per * workers / (time.perf_counter() - start)


def table(title: str, rows: list[tuple[str, ...]]) -> str:
    """A Markdown table: measure | value | floor | ratio."""
    head = f"\n### {title}\n\n| measure | value | floor | ratio |\n| --- | ---: | ---: | ---: |\n"
    return head + "".join("| " + " | ".join(r) + " |\n" for r in rows)


@contextlib.contextmanager
def running_app(seed: Callable[[str], None] | None = None) -> Iterator[tuple[str, str]]:
    """A fresh Azurite and the local host serving function_app (HTTP only): (base URL, storage).

    `seed` gets the storage connection string before the host starts.
    """
    with tempfile.TemporaryDirectory() as tmp:
        storage = azurite.start_npm(Path(tmp) / "az")
        try:
            if seed is not None:
                seed(storage.connection_string)
            env = {
                **quiet_timers(),
                **os.environ,
                "AzureWebJobsStorage": storage.connection_string,
                "APP_ENVIRONMENT": "test",
                "OUTBOX_SWEEP_SCHEDULE": "0 0 0 * * *",
                "CATALOG_IMPORT_SCHEDULE": "0 0 0 1 1 *",
                "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
                "REMINDER_SCHEDULE": "0 0 0 1 1 *",
                "USAGE_IMPORT_SCHEDULE": "0 0 0 1 1 *",
                "SYNC_SCHEDULE": "0 0 0 1 1 *",
                "LOCALHOST_LOG_LEVEL": "WARNING",
            }
            host = HostProcess(
                cwd=ROOT,
                env=env,
                settings=Path(tmp) / "none.json",
                extra_args=["--no-queues", "--no-timers"],
                log_path=Path(tmp) / "host.log",
            )
            host.start(timeout=60)
            try:
                yield host.base_url + "/api", storage.connection_string
            finally:
                host.stop()
        finally:
            storage.stop()


def http_caller(url: str) -> Callable[[], Callable[[], object]]:
    """A factory of GET callables, one HTTP client (connection) per worker."""

    def make() -> Callable[[], object]:
        client = httpx.Client()
        return lambda: client.get(url)

    return make


def simulator_env(sim: SimulatorHandle) -> dict[str, str]:
    """The PARTNER_CENTER_* settings that point the app at the simulator."""
    connection = sim.connection
    return {
        "PARTNER_CENTER_API_BASE_URL": connection["apiBaseUrl"],
        "PARTNER_CENTER_PRICE_SHEET_BASE_URL": connection["priceSheetBaseUrl"],
        "PARTNER_CENTER_AUTHORITY": connection["authority"],
        "PARTNER_CENTER_TENANT_ID": connection["tenantId"],
        "PARTNER_CENTER_CLIENT_ID": connection["clientId"],
        "PARTNER_CENTER_CLIENT_SECRET": connection["clientSecret"],
        "PARTNER_CENTER_REFRESH_TOKEN": connection["refreshToken"],
        "PARTNER_CENTER_CA_CERT_PATH": connection["caCertPath"],
    }


def simulator_settings(sim: SimulatorHandle) -> Settings:
    """Settings for an in-process client of the simulator (storage: the default Azurite)."""
    return Settings.model_validate(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", **simulator_env(sim)}
    )


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            children = (
                (task / "children").read_text().split() if (task / "children").exists() else []
            )
            todo += [int(c) for c in children]
    return found


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak resident memory (VmHWM) of the process tree, MB (`field="VmRSS"`: what it holds
    now)."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def reset_peak_rss(pid: int) -> None:
    """Start the tree's peak resident memory (VmHWM) afresh from what it holds now (Linux:
    `clear_refs` 5), so a later `peak_rss_mb` is the peak of what ran in between."""
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            Path(f"/proc/{p}/clear_refs").write_text("5")
