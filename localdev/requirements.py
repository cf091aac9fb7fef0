"""The dependency lock: uv.lock (from pyproject.toml) and requirements.txt exported from it.

`uv.lock` pins every package, runtime and dev, with its PyPI hashes; `make install` syncs the
virtual environment from it (`python -m localdev.requirements sync`). `requirements.txt` is the
runtime part of the same lock, pinned, for the Azure Functions remote build (pip runs on it).
`python -m localdev.requirements` re-locks (keeping locked versions unless pyproject.toml asks
otherwise) and re-exports; `--upgrade` moves every package to the newest version allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "uv.lock"
REQUIREMENTS = ROOT / "requirements.txt"
PYPI = "https://pypi.org/simple"
HEADER = (
    "# Exported from uv.lock by `make requirements`; do not edit. Runtime dependencies only,\n"
    "# pinned, for the Azure Functions remote build; `make install` installs from uv.lock.\n"
)
# --locked: fail instead of silently re-resolving when uv.lock no longer matches pyproject.toml.
EXPORT = (
    "export",
    "--locked",
    "--offline",
    "--format",
    "requirements-txt",
    "--no-hashes",
    "--no-emit-project",
    "--no-header",
    "--no-annotate",
    "--quiet",
)


def uv() -> str:
    """The uv next to this interpreter (installed from uv.lock), else the one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise SystemExit("uv is not installed: run `make install`")
    return found


def run_uv(*args: str) -> str:
    """Run uv in the repository with PyPI as its only index; its standard output."""
    env = {
        **os.environ,
        # Resolve from PyPI alone, whatever indexes this machine's pip or uv is configured with,
        # and never download a Python: the lock is for the interpreter of the virtual env.
        "UV_DEFAULT_INDEX": PYPI,
        "UV_PYTHON_DOWNLOADS": "never",
    }
    for name in ("UV_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS"):
        env.pop(name, None)
    result = subprocess.run(
        [uv(), *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"uv {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def render() -> str:
    """requirements.txt as the lock exports it."""
    return HEADER + run_uv(*EXPORT)


def sync() -> None:
    """Make the virtual environment exactly what uv.lock holds (runtime and dev)."""
    run_uv("sync", "--locked", "--extra", "dev", "--python", sys.executable, "--quiet")


def main(argv: list[str]) -> None:
    """`sync`; or re-lock (`--upgrade`: everything to the newest allowed) and re-export."""
    if argv[:1] == ["sync"]:
        sync()
        return
    run_uv("lock", *(["--upgrade"] if "--upgrade" in argv else []))
    REQUIREMENTS.write_text(render())
    sys.stdout.write("uv.lock and requirements.txt written\n")


if __name__ == "__main__":
    main(sys.argv[1:])
