"""Sync with Partner Center through the local host, Azurite and the simulator.

The simulator is seeded with N customers × 3 subscriptions for the demo reseller; the host runs
every trigger (HTTP, queues, timers; the nightly timer is off: the bench starts the nightly run
the way the timer does, from this process, against the same tables and queues). Rows:

- the first full sync (Sync now, through HTTP) of 10,000 and of 20,000 customers, throttling
  off (the platform's budget 0, the simulator's rate limit off): wall time from the POST to the
  run's end, peak RSS of the host's process tree (VmHWM of each process, summed), Partner Center
  calls and data records written (the run's own counts);
- a second run with nothing changed (the nightly kind: a delta) on the 10,000: the same;
- throttling on (the simulator at `rateLimitPerMinute=500`, the platform's budget at its
  default): a full sync of 2,000 customers, its errors and its calls per minute. It takes about
  nine minutes; `BENCH_QUICK=1` leaves it out.

    .venv/bin/python -m bench.sync [customers ...]     (default 10000 20000)
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT, peak_rss_mb, simulator_env, table
from localdev import azurite
from localdev.funchost.config import quiet_timers
from localdev.funchost.process import HostProcess
from localdev.partner_center_sim import SimulatorHandle, start_simulator
from localdev.partner_center_sim.throughput import cpu_seconds
from localdev.seed import seed, seed_catalog
from localdev.tokens import issuers_json, serve_in_thread, token_for
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.identity import SignInKind
from shared.services.sync import start_nightly

OWNER = "owner@demo.example"
THROTTLED_CUSTOMERS = 2_000
TIMEOUT_SECONDS = 30 * 60


@dataclass
class World:
    """The running parts of one bench."""

    c: Container
    sim: SimulatorHandle
    host: HostProcess
    token: str  # an Account Manager's of the demo reseller
    azurite_pid: int

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the host, the simulator and Azurite."""
        assert self.host.process is not None
        pids = {"host": self.host.process.pid, "simulator": self.sim.process.pid}
        return {k: cpu_seconds(p) for k, p in {**pids, "Azurite": self.azurite_pid}.items()}


@dataclass
class Figures:
    """One run: wall seconds, peak RSS (MB) of the host's tree, the run's counts and the CPU
    seconds each process spent on it (the machine may be shared: CPU is the steadier figure)."""

    seconds: float
    rss_mb: float
    run: dict[str, Any]
    cpu: dict[str, float]

    @property
    def counts(self) -> dict[str, Any]:
        """The run's counts (camelCase, as the API answers them)."""
        return dict(self.run.get("counts") or {})

    @property
    def errors(self) -> int:
        """Error lines of the run."""
        return len(self.run.get("errors") or [])


@contextmanager
def _stack(customers: int, *, throttled: bool) -> Iterator[World]:
    """Azurite, the simulator seeded with `customers` × 3 for the demo reseller, the issuer and
    the local host."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        on_disk = os.environ.get("BENCH_AZURITE_DISK") == "1"  # compare with the store on disk
        storage = azurite.start_npm(tmp / "az", in_memory=not on_disk)
        sim = start_simulator(tmp / "sim")
        srv, base = serve_in_thread(0, tmp / "issuer")
        host: HostProcess | None = None
        try:
            env = {
                **quiet_timers(),
                **simulator_env(sim),
                "APP_ENVIRONMENT": "test",
                "AzureWebJobsStorage": storage.connection_string,
                "TABLE_PREFIX": "BenchSync",
                "AUTH_ISSUERS": issuers_json(base),
                "MAIL_DROP_DIR": str(tmp / "mail"),
                "PUBLIC_BASE_URL": "http://portal.test",
                "CATALOG_IMPORT_SCHEDULE": "0 0 0 1 1 *",
                "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
                "REMINDER_SCHEDULE": "0 0 0 1 1 *",
                "USAGE_IMPORT_SCHEDULE": "0 0 0 1 1 *",
                "SYNC_SCHEDULE": "0 0 0 1 1 *",
                "OUTBOX_SWEEP_SCHEDULE": "*/5 * * * * *",
                "SYNC_NOW_COOLDOWN_MINUTES": "0",
                "LOCALHOST_LOG_LEVEL": "WARNING",
            }
            if not throttled:
                env["PARTNER_CENTER_REQUESTS_PER_MINUTE"] = "0"
            else:
                sim.configure(rateLimitPerMinute=500)
            c = Container(Settings.model_validate(env))
            seed(c)
            seed_catalog(c)
            partner = c.resellers.get("reseller", "demo").require_tenant_id()
            sim.seed(customers, partner, subscriptions_per_customer=3, seed=1)
            sim.clear_requests()
            host = HostProcess(
                cwd=ROOT,
                env={**os.environ, **env},
                settings=tmp / "none.json",
                log_path=tmp / "host.log",
            )
            host.start(timeout=60)
            token = token_for(
                OWNER, SignInKind.PLATFORM, state_dir=tmp / "issuer", settings=c.settings
            )
            assert storage.process is not None
            yield World(c, sim, host, token, storage.process.pid)
        finally:
            if host is not None:
                host.stop()
            srv.shutdown()
            sim.stop()
            storage.stop()


def _wait_run(host: HostProcess, token: str, location: str, started: float) -> dict[str, Any]:
    """Poll the run until it has finished; the run as the API answers it."""
    auth = {"Authorization": f"Bearer {token}"}
    while True:
        status, _, raw = host.request("GET", location, headers=auth)
        if status == 200:
            run: dict[str, Any] = json.loads(raw)
            if run["status"] in ("Succeeded", "Failed"):
                return run
        if time.perf_counter() - started > TIMEOUT_SECONDS:
            raise TimeoutError(f"the run {location} did not finish in {TIMEOUT_SECONDS} s")
        time.sleep(0.5)


def sync_now(w: World) -> Figures:
    """POST Sync now, wait for the run's end."""
    cpu, started = w.cpu(), time.perf_counter()
    status, headers, raw = w.host.request(
        "POST", "/api/resellers/demo/sync", headers={"Authorization": f"Bearer {w.token}"}
    )
    if status != 202:
        raise RuntimeError(f"Sync now answered {status}: {raw[:500]!r}")
    run = _wait_run(w.host, w.token, headers["location"], started)
    return _figures(w, started, cpu, run)


def nightly(w: World) -> Figures:
    """Start the nightly run as the timer does; wait for its end."""
    cpu, started = w.cpu(), time.perf_counter()
    (run,) = [r for r in start_nightly(w.c.sync_book) if r.reseller == "demo"]
    location = f"/api/resellers/{run.reseller}/sync/runs/{run.id}"
    done = _wait_run(w.host, w.token, location, started)
    return _figures(w, started, cpu, done)


def _figures(w: World, started: float, cpu: dict[str, float], run: dict[str, Any]) -> Figures:
    seconds = time.perf_counter() - started
    assert w.host.process is not None
    spent = {k: v - cpu[k] for k, v in w.cpu().items()}
    return Figures(seconds, peak_rss_mb(w.host.process.pid), run, spent)


def _row(what: str, f: Figures, floor: str, ratio: str = "") -> tuple[str, ...]:
    counts = f.counts
    return (
        f"{what}: {f.seconds:.1f} s, peak RSS {f.rss_mb:.0f} MB; Partner Center calls "
        f"{counts.get('partnerCenterCalls', 0)}, "
        f"records written {counts.get('recordsWritten', 0)}, "
        f"errors {f.errors}, status {f.run['status']}; CPU s "
        + ", ".join(f"{k} {v:.1f}" for k, v in f.cpu.items()),
        f"{f.seconds:.1f}",
        floor,
        ratio,
    )


def unthrottled(sizes: list[int]) -> list[tuple[str, ...]]:
    """First full sync per size; a second, unchanged run on the first size."""
    rows: list[tuple[str, ...]] = []
    first: Figures | None = None
    for n in sizes:
        with _stack(n, throttled=False) as w:
            full = sync_now(w)
            ratio = f"{full.seconds / first.seconds:.2f} × the {sizes[0]:,}" if first else ""
            floor = "≤ 60 s, ≤ 250 MB" if first is None else f"≤ {2.2 * first.seconds:.0f} s"
            rows.append(_row(f"first full sync, {n:,} customers × 3", full, floor, ratio))
            print(rows[-1][0], file=sys.stderr, flush=True)
            if first is None:
                first = full
                again = nightly(w)
                audit = 1  # the audit pages of an unchanged day: one page
                share = math.ceil(n / w.c.settings.sync_licence_max_age_days)
                bound = math.ceil(n / 500) + audit + share
                rows.append(
                    _row(
                        f"second run, nothing changed (nightly delta), {n:,} customers",
                        again,
                        f"calls ≤ {bound} (⌈N/500⌉ + audit + licence share ≈ N/"
                        f"{w.c.settings.sync_licence_max_age_days}), writes 0",
                        f"calls {again.counts.get('partnerCenterCalls', 0)}, "
                        f"writes {again.counts.get('recordsWritten', 0)}",
                    )
                )
                print(rows[-1][0], file=sys.stderr, flush=True)
    return rows


def throttled() -> list[tuple[str, ...]]:
    """A full sync of 2,000 customers under 500 requests/minute on both sides."""
    with _stack(THROTTLED_CUSTOMERS, throttled=True) as w:
        full = sync_now(w)
    calls = int(full.counts.get("partnerCenterCalls", 0))
    expected = calls / 500
    minutes = full.seconds / 60
    return [
        _row(f"full sync at 500/min, {THROTTLED_CUSTOMERS:,} customers", full, "0 errors"),
        (
            "  minutes taken vs calls ÷ 500 "
            f"(throttled waits {full.counts.get('throttledWaits', 0)})",
            f"{minutes:.1f}",
            f"{expected:.1f}",
            f"{minutes / expected:.2f}" if expected else "",
        ),
    ]


def main(sizes: list[int] | None = None) -> None:
    """Print the sync figures."""
    rows = unthrottled(sizes or [10_000, 20_000])
    if os.environ.get("BENCH_QUICK") != "1":
        rows += throttled()
    print(table("Sync (local host, Azurite, simulator)", rows), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or None)
