"""Cold start: indexing the app imports no SDK and no adapter (they load where first used).

A Python function app's cold start is mostly its imports. The host indexes the app
(`app.get_functions()`) before it serves anything, so whatever every blueprint imports at
module level is paid by every cold instance. Only what route declarations need may load then:
azure.functions and the pydantic models of the domain and services. Storage, queues, Partner
Center, sign-in and mail come in through `shared.bootstrap`'s factories on first use.

This checks which modules are loaded, not how long it takes, so it is not flaky on a busy
machine: a new blueprint or dependency that imports an SDK at index time fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]

# What route declarations and the OpenAPI document need: the Functions library, pydantic (and
# its e-mail type), ULIDs. Every other runtime dependency must wait for its first use.
NEEDED_AT_INDEX = {"azure-functions", "pydantic", "email-validator", "python-ulid"}

INDEX_APP = """
import json, sys
import function_app
function_app.app.get_functions()
from functions._openapi import build_openapi
build_openapi()
print(json.dumps(sorted(sys.modules)))
"""


def _runtime_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(spec).name) for spec in project["dependencies"]}


def _lazy_top_level_modules() -> set[str]:
    """Import names of the runtime dependencies that must not load at index time."""
    lazy = _runtime_dependencies() - NEEDED_AT_INDEX
    names = set()
    for module, dists in packages_distributions().items():
        if module != "azure" and any(canonicalize_name(d) in lazy for d in dists):
            names.add(module)
    return names


def _modules_after_indexing() -> list[str]:
    # A fresh interpreter: the test process itself has imported everything long ago.
    out = subprocess.run(
        [sys.executable, "-c", INDEX_APP],
        cwd=ROOT,
        env={**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    modules: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return modules


def test_indexing_the_app_imports_no_sdk_adapter_or_settings() -> None:
    lazy = _lazy_top_level_modules()
    assert {"msal", "httpx", "jwt", "pydantic_settings", "cryptography"} <= lazy  # the map works

    loaded = _modules_after_indexing()

    early = [
        m
        for m in loaded
        if m.split(".")[0] in lazy
        # azure is a namespace shared by the Functions library and the storage SDKs
        or (m.startswith("azure.") and not m.startswith("azure.functions"))
        or m.startswith(("shared.adapters", "shared.config"))
    ]
    # Named by package (azure.data, msal, shared.adapters), not by each of their modules.
    packages = sorted(
        {".".join(m.split(".")[: 2 if m.startswith(("azure.", "shared.")) else 1]) for m in early}
    )
    assert packages == [], (
        "imported while the app is indexed (slows every cold start); import them where they are "
        f"first used, e.g. in a shared/bootstrap.py factory (README: Cold start): {packages}"
    )
    # The check looked at a real index: the blueprints and the services they declare are there.
    assert "functions.http_customers" in loaded and "shared.services.customers" in loaded
