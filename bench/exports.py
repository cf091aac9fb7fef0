"""Report export figures: 30,000 rows as CSV (and XLSX) through the HTTP helper, time and RSS.

Each measure runs in a fresh interpreter so its peak RSS is the export's own (plus the
interpreter and the app's imports). Rows come from a pool of 1,000 prebuilt row models, cycled:
a report hands its rows over page by page, and building them is the report's cost, not the
export's. The floor is `csv.writer` writing the same number of rows of pre-formatted strings.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from bench.common import ROOT, table

ROWS = 30_000
POOL = 1_000


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(fmt: str) -> dict[str, float]:
    """One measure, in this (fresh) process."""
    import csv
    import io
    import itertools

    import azure.functions as func

    from functions._exports import export, requested_format
    from functions._http import Call, RouteSpec, render
    from tests.export_rows import LineStaff, staff_line

    pool = [staff_line(i) for i in range(POOL)]
    rows = itertools.islice(itertools.cycle(pool), ROWS)
    start = time.perf_counter()
    if fmt == "floor":
        cells = [[str(v) for v in line.model_dump().values()] for line in pool]
        out = io.StringIO()
        writer = csv.writer(out, delimiter=";")
        for row in itertools.islice(itertools.cycle(cells), ROWS):
            writer.writerow(row)
        size = len(out.getvalue().encode())
    else:
        spec = RouteSpec("bench", "resellers/{r}/reports/licences", ("GET",), "bench")
        req = func.HttpRequest(
            "GET",
            "http://h/api/resellers/demo/reports/licences",
            headers={},
            params={"format": fmt},
            route_params={"r": "demo"},
            body=b"",
        )
        call = Call(req, spec, "bench")
        reply = export(
            call,
            requested_format(call),
            report="licences",
            filters={"month": "2026-11"},
            model=LineStaff,
            rows=rows,
            country="CZ",
        )
        size = len(render(reply, spec).get_body())
    return {"seconds": time.perf_counter() - start, "rss_mb": _rss_mb(), "bytes": size}


def _measure(fmt: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.exports", fmt],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    """Print the export table."""
    floor = _measure("floor")
    rows = []
    for fmt, target in (("csv", "≤ 3 s, ≤ 100 MB"), ("xlsx", "—")):
        f = _measure(fmt)
        rows.append(
            (
                f"{fmt.upper()} export, {ROWS:,} rows ({f['bytes'] / 1e6:.1f} MB): "
                f"{f['seconds']:.2f} s, peak RSS {f['rss_mb']:.0f} MB",
                f"{f['seconds']:.2f} s",
                f"{target}; bare csv.writer {floor['seconds']:.2f} s, {floor['rss_mb']:.0f} MB",
                f"{f['seconds'] / floor['seconds']:.1f}×",
            )
        )
    print(table("Report exports", rows))


if __name__ == "__main__":
    if len(sys.argv) == 2:
        print(json.dumps(_child(sys.argv[1])))
    else:
        main()
