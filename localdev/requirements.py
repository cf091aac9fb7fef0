"""Export requirements.txt (for the Functions remote build) from pyproject.toml."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "# Generated from pyproject.toml by `python -m localdev.requirements`; do not edit.\n"


def render() -> str:
    """requirements.txt as it should be."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return HEADER + "".join(f"{dep}\n" for dep in project["dependencies"])


if __name__ == "__main__":
    (ROOT / "requirements.txt").write_text(render())
    sys.stdout.write("requirements.txt written\n")
