"""The dependency lock must not drift: uv.lock covers pyproject.toml, requirements.txt is its
export, everything comes from PyPI, and `make install` bootstraps the uv the lock holds."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from localdev.requirements import LOCK, PYPI, REQUIREMENTS, ROOT, render


def _lock() -> dict[str, Any]:
    return tomllib.loads(LOCK.read_text())


def _locked_versions() -> dict[str, str]:
    return {
        canonicalize_name(p["name"]): p["version"]
        for p in _lock()["package"]
        if "registry" in p["source"]
    }


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    return [Requirement(spec) for spec in declared]


def test_lock_pins_every_dependency_of_pyproject_within_its_range() -> None:
    locked = _locked_versions()

    problems = [
        f"{req}: locked {locked.get(canonicalize_name(req.name), 'nothing')}"
        for req in _declared()
        if canonicalize_name(req.name) not in locked
        or locked[canonicalize_name(req.name)] not in req.specifier
    ]

    assert problems == [], "uv.lock is stale: run `make lock`"


def test_lock_was_made_from_the_current_pyproject() -> None:
    # uv records what it resolved; a dependency edited in pyproject.toml but not re-locked
    # shows here even when the old pin happens to satisfy the new range.
    project = next(p for p in _lock()["package"] if p["source"].get("virtual") == ".")
    recorded = {str(Requirement(_pep508(r))) for r in project["metadata"]["requires-dist"]}
    declared = {str(r) for r in _declared()}

    assert {_without_marker(r) for r in recorded} == declared, "run `make lock`"


def test_requirements_txt_is_the_runtime_export_of_the_lock() -> None:
    assert REQUIREMENTS.read_text() == render(), "requirements.txt is stale: run `make lock`"


def test_requirements_txt_pins_exact_versions_of_runtime_packages_only() -> None:
    lines = [
        line.split(";")[0].strip()
        for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins = dict(line.split("==") for line in lines)
    locked = _locked_versions()

    assert all(locked[canonicalize_name(name)] == version for name, version in pins.items())
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {canonicalize_name(Requirement(r).name) for r in runtime} <= set(pins)
    assert not {"pytest", "ruff", "mypy", "uv"} & set(pins)


def test_every_locked_package_comes_from_pypi() -> None:
    foreign = [
        p["name"]
        for p in _lock()["package"]
        if p["source"].get("registry", PYPI) != PYPI
        or set(p["source"]) - {"registry", "virtual"}
        or any(
            not f["url"].startswith("https://files.pythonhosted.org/")
            for f in [*p.get("wheels", []), *([p["sdist"]] if "sdist" in p else [])]
        )
    ]

    assert foreign == []


def test_lock_is_for_python_3_11() -> None:
    assert _lock()["requires-python"] == "==3.11.*"


def test_make_install_bootstraps_the_uv_version_the_lock_holds() -> None:
    makefile = (ROOT / "Makefile").read_text()
    bootstrap = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)

    assert bootstrap is not None
    assert bootstrap.group(1) == _locked_versions()["uv"]


def test_function_app_package_builds_from_requirements_txt_not_the_lock() -> None:
    # The Functions remote build runs pip on requirements.txt; uv.lock stays out of the package
    # so that no build step picks another installer or the dev dependencies.
    ignored = (ROOT / ".funcignore").read_text().splitlines()

    assert "uv.lock" in ignored
    assert "requirements.txt" not in ignored


def _pep508(entry: dict[str, Any]) -> str:
    extras = f"[{','.join(entry['extras'])}]" if entry.get("extras") else ""
    marker = f"; {entry['marker']}" if entry.get("marker") else ""
    return f"{entry['name']}{extras}{entry.get('specifier', '')}{marker}"


def _without_marker(requirement: str) -> str:
    return requirement.split(";")[0].strip()
