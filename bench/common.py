"""Small timing helpers shared by the benchmark modules."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


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
