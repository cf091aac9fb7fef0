"""Run every benchmark module's `main()` in turn (bench/*.py except helpers)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback

import bench

SKIP = {"common"}


def run() -> int:
    """Each module prints its own Markdown table; a failing module does not stop the rest."""
    failed = 0
    print("# Benchmarks (whole figures from this machine; compare ratios, not absolutes)")
    for module in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if module.name in SKIP or module.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"bench.{module.name}").main()
        except Exception:
            failed += 1
            print(f"\n### {module.name}: failed\n", file=sys.stderr)
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run())
