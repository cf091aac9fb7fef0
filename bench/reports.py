"""The licence report of a reseller with 10,000 customers × 3 subscriptions, through the local
host (Azurite in memory, the local issuer, an Account Manager's token).

Seeding writes the Table adapter's own entities (`LedgerTable`'s builders, `TableRepository.
entity`) in partition transactions of 100, a few at a time: the report month's subscription and
customer rows and its totals shards, and the shards of the 13 months before it (the series), and
the 10,000 customers. Then, through HTTP (issue 15's targets):

- a page of 100 of one month's JSON (the first page, and one from a continuation token) ≤ 1 s;
- the 14-month series (JSON) ≤ 2 s;
- the CSV export of all 30,000 rows ≤ 3 s and ≤ 100 MB peak RSS of the host's process tree
  (VmHWM, summed as bench/sync.py does, its peak reset just before the request);
- the XLSX export of the same rows (no target).

    .venv/bin/python -m bench.reports [customers]      (default 10000)
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, peak_rss_mb, reset_peak_rss, table
from localdev import azurite
from localdev.funchost.config import quiet_timers
from localdev.funchost.process import HostProcess
from localdev.partner_center_sim.throughput import cpu_seconds
from localdev.tokens import issuers_json, local_sign_ins, serve_in_thread, token_for
from shared.adapters.tables import batch
from shared.adapters.tables.ledger import LedgerTable, partition
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.customers import Customer
from shared.domain.identity import Role, SignInKind
from shared.domain.ledger import (
    TOTAL_SHARDS,
    Figures,
    PricedState,
    SubscriptionMonth,
    month_of,
    month_start,
    months_ending,
    total_shard,
)
from shared.services import users
from tests.fakes import onboard

CUSTOMERS = 10_000
PER_CUSTOMER = 3
RESELLER = "bench"
OWNER = "owner@bench.example"
NOW = datetime.now(UTC)
LAST = month_of(NOW)  # the report's month (the host's clock is the real one)
MONTHS = months_ending(LAST, 14)
BATCH = 100
SEED_WORKERS = 4
TIMEOUT = httpx.Timeout(300.0)


# --- seeding ----------------------------------------------------------------------------------


def _state(rng: random.Random, k: int, seats: int) -> PricedState:
    return PricedState(
        product_id=f"CFQ7TTC0LH1{k}",
        catalog_item_id=f"CFQ7TTC0LH1{k}:0001:0001",
        name=f"Microsoft 365 plan {k}",
        term_duration="P1Y",
        billing_cycle="annual" if k == 2 else "monthly",
        status="active",
        seats=seats,
        assigned=max(0, seats - rng.randint(0, 3)),
        renews_on=date(2027, 1 + k, 10 + k),
        currency="CZK",
        unit_microsoft_cost=Decimal("100.00"),
        unit_reseller_cost=Decimal("110.00") + k,
        unit_customer_price=Decimal("121.37") + k,
    )


def customer_id(i: int) -> str:
    """The bench's customer ids (26 characters, in the same order as `i`)."""
    return f"01BENCH{i:019d}"


def subscription_rows(customers: int) -> Iterator[list[SubscriptionMonth]]:
    """Each customer's subscription rows of the report month: most carried in unchanged, a
    sixth new this month, a sixth with seats changed."""
    rng = random.Random(customers)
    for i in range(customers):
        cid, mine = customer_id(i), []
        for k in range(PER_CUSTOMER):
            seats = rng.randint(1, 300)
            closing = _state(rng, k, seats)
            luck = rng.random()
            if luck < 1 / 6:
                opening = None
            elif luck < 2 / 6:
                opening = closing.model_copy(update={"seats": max(1, seats + rng.randint(-20, 20))})
            else:
                opening = closing
            mine.append(
                SubscriptionMonth(
                    reseller=RESELLER,
                    month=LAST,
                    customer_id=cid,
                    subscription_id=f"{i:08d}-0000-4000-8000-{k:012d}",
                    opening=opening,
                    closing=closing,
                    facts=0 if opening is closing else 1,
                    last_fact_at=None if opening is closing else month_start(LAST),
                )
            )
        yield mine


def ledger_entities(customers: int) -> dict[str, list[dict[str, Any]]]:
    """The ledger's entities by partition: the report month's rows and every month's shards
    (the months before: the report month's shards scaled down a little a month)."""
    pk = partition(RESELLER, LAST)
    out: dict[str, list[dict[str, Any]]] = {pk: []}
    shards = [Figures() for _ in range(TOTAL_SHARDS)]
    for rows in subscription_rows(customers):
        total = Figures()
        for row in rows:
            out[pk].append(LedgerTable.subscription_entity(pk, row))
            total = total.plus(row.figures)
        cid = rows[0].customer_id
        out[pk].append(LedgerTable.customer_entity(pk, cid, total))
        shard = total_shard(cid)
        shards[shard] = shards[shard].plus(total)
    for age, month in enumerate(reversed(MONTHS)):
        mpk = partition(RESELLER, month)
        shard_rows = out.setdefault(mpk, [])
        factor = Decimal(1) - Decimal(age) / 50
        for n, f in enumerate(shards):
            scaled = Figures(
                **{
                    k: (
                        int(v * factor)
                        if isinstance(v, int)
                        else (v * factor).quantize(Decimal("1e-12"))
                    )
                    for k, v in f.model_dump().items()
                }
            )
            shard_rows.append(LedgerTable.shard_entity(mpk, n, scaled))
        shard_rows.append(LedgerTable.opened_entity(mpk))
    return out


def _submit_all(client: Any, entities: dict[str, list[dict[str, Any]]]) -> int:
    """Insert the entities in transactions of `BATCH` per partition, a few at once."""
    chunks = [rows[n : n + BATCH] for rows in entities.values() for n in range(0, len(rows), BATCH)]

    def one(chunk: list[dict[str, Any]]) -> None:
        batch.submit(client, [("create", e) for e in chunk])

    with ThreadPoolExecutor(SEED_WORKERS) as pool:
        list(pool.map(one, chunks))
    return len(chunks)


def seed(c: Container, customers: int) -> float:
    """The reseller, its Account Manager, its customers and its ledger; seconds it took."""
    started = time.perf_counter()
    onboard(c.resellers, c.clock, RESELLER, "CZK")
    users.ensure_user(
        c.directory,
        RESELLER,
        OWNER,
        Role.ACCOUNT_MANAGER,
        display_name="Bench Owner",
        sign_ins=local_sign_ins(c.settings, OWNER),
    )
    people = {
        RESELLER: [
            c.customers.entity(
                Customer(
                    reseller=RESELLER,
                    id=customer_id(i),
                    name=f"Zákazník {i} s.r.o.",
                    domain=f"bench{i}.onmicrosoft.com",
                )
            )
            for i in range(customers)
        ]
    }
    _submit_all(c.customers.table, people)
    ledger = c.ledger
    assert isinstance(ledger, LedgerTable)
    _submit_all(ledger.table, ledger_entities(customers))
    return time.perf_counter() - started


# --- the host ---------------------------------------------------------------------------------


@dataclass
class World:
    """The host serving the seeded reseller, and a token of its Account Manager."""

    host: HostProcess
    token: str
    seeded_seconds: float
    azurite_pid: int

    @property
    def pid(self) -> int:
        """The host's process id."""
        assert self.host.process is not None
        return self.host.process.pid

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of the host and of Azurite (steadier than wall time on a shared
        machine)."""
        return cpu_seconds(self.pid), cpu_seconds(self.azurite_pid)

    def url(self, query: str) -> str:
        """The licence report's URL with a query."""
        return f"{self.host.base_url}/api/resellers/{RESELLER}/reports/licences?{query}"


@contextmanager
def _stack(customers: int) -> Iterator[World]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        storage = azurite.start_npm(tmp / "az", in_memory=True)
        srv, base = serve_in_thread(0, tmp / "issuer")
        host: HostProcess | None = None
        try:
            env = {
                **quiet_timers(),
                "APP_ENVIRONMENT": "test",
                "AzureWebJobsStorage": storage.connection_string,
                "TABLE_PREFIX": "BenchReports",
                "AUTH_ISSUERS": issuers_json(base),
                "LOCALHOST_LOG_LEVEL": "WARNING",
            }
            c = Container(Settings.model_validate(env))
            seeded = seed(c, customers)
            host = HostProcess(
                cwd=ROOT,
                env={**os.environ, **env},
                settings=tmp / "none.json",
                extra_args=["--no-queues", "--no-timers"],
                log_path=tmp / "host.log",
            )
            host.start(timeout=60)
            token = token_for(
                OWNER, SignInKind.PLATFORM, state_dir=tmp / "issuer", settings=c.settings
            )
            assert storage.process is not None
            yield World(host, token, seeded, storage.process.pid)
        finally:
            if host is not None:
                host.stop()
            srv.shutdown()
            storage.stop()


# --- timing -----------------------------------------------------------------------------------


def _get(client: httpx.Client, w: World, query: str) -> httpx.Response:
    answer = client.get(w.url(query), headers={"Authorization": f"Bearer {w.token}"})
    if answer.status_code != 200:
        raise RuntimeError(f"{query} answered {answer.status_code}: {answer.text[:500]}")
    return answer


def _p50(fn: Callable[[], object], n: int) -> float:
    fn()  # warm: the first call of a route imports and connects
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


@dataclass
class Download:
    """One export: wall milliseconds, peak RSS of the host's tree (MB), size, lines, and the
    CPU seconds the host and Azurite spent on it."""

    ms: float
    rss_mb: float
    size_mb: float
    lines: int
    cpu: tuple[float, float]

    @property
    def spent(self) -> str:
        """The CPU seconds, as a row says them."""
        return f"CPU s host {self.cpu[0]:.1f}, Azurite {self.cpu[1]:.1f}"


def _download(client: httpx.Client, w: World, fmt: str) -> Download:
    reset_peak_rss(w.pid)
    host, storage = w.cpu()
    started = time.perf_counter()
    body = _get(client, w, f"month={LAST}&format={fmt}").content
    ms = (time.perf_counter() - started) * 1000
    after = w.cpu()
    lines = body.count(b"\r\n") if fmt == "csv" else 0
    cpu = (after[0] - host, after[1] - storage)
    return Download(ms, peak_rss_mb(w.pid), len(body) / 1e6, lines, cpu)


def _row(what: str, value: float, floor: float | None, unit: str = "") -> tuple[str, ...]:
    return (
        what,
        f"{value:.0f}{unit}",
        "" if floor is None else f"{floor:.0f}",
        "" if floor is None else f"{value / floor:.2f}",
    )


def report_rows(customers: int = CUSTOMERS, n: int = 5) -> list[tuple[str, ...]]:
    """The figures through the local host."""
    rows = customers * PER_CUSTOMER
    with _stack(customers) as w, httpx.Client(timeout=TIMEOUT) as client:
        first = _get(client, w, f"month={LAST}&pageSize=100").json()
        token = first["continuationToken"]
        assert len(first["items"]) == 100, len(first["items"])
        page1 = _p50(lambda: _get(client, w, f"month={LAST}&pageSize=100"), n)
        page2 = _p50(
            lambda: _get(client, w, f"month={LAST}&pageSize=100&continuationToken={token}"), n
        )
        series = _get(client, w, f"month={LAST}&months=14").json()
        assert len(series["months"]) == 14 and series["months"][0]["seats"] > 0, series
        s14 = _p50(lambda: _get(client, w, f"month={LAST}&months=14"), n)
        at_rest = peak_rss_mb(w.pid, "VmRSS")
        csv = _download(client, w, "csv")
        assert csv.lines == rows + 1, (csv.lines, rows)
        again = _download(client, w, "csv")
        xlsx = _download(client, w, "xlsx")
        seeded = w.seeded_seconds
    print(f"seeded in {seeded:.1f} s; load average {os.getloadavg()}", file=sys.stderr)
    best = min(csv, again, key=lambda d: d.ms)
    return [
        _row(f"licence report, one month, first page of 100 (ms p50, {rows:,} rows)", page1, 1000),
        _row("…a page of 100 from a continuation token (ms p50)", page2, 1000),
        _row("licence series, 14 months (ms p50)", s14, 2000),
        _row(
            f"CSV export of {rows:,} rows (ms, best of 2: {csv.ms:.0f}, {again.ms:.0f}; "
            f"{best.size_mb:.1f} MB; {best.spent})",
            best.ms,
            3000,
        ),
        _row(
            f"…peak RSS of the host's tree during it (MB; it held {at_rest:.0f} before)",
            max(csv.rss_mb, again.rss_mb),
            100,
        ),
        _row(
            f"XLSX export of {rows:,} rows (ms, {xlsx.size_mb:.1f} MB; {xlsx.spent})", xlsx.ms, None
        ),
        _row("…peak RSS of the host's tree during it (MB)", xlsx.rss_mb, None),
    ]


def main(args: Sequence[str] = ()) -> None:
    """Print the report figures."""
    customers = int(args[0]) if args else CUSTOMERS
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        table(
            f"Reports (local host, Azurite in memory; load average {load} at the start)",
            report_rows(customers),
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
