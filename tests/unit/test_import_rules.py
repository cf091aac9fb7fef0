"""The layering of DESIGN.md, enforced on the source's imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names)


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", sources("shared/domain"), ids=str)
def test_domain_imports_only_stdlib_and_pydantic(path):
    for name in imports(path):
        assert top(name) in STDLIB | {"pydantic", "ulid", "__future__"} or name.startswith(
            "shared.domain"
        ), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sources("shared/services"), ids=str)
def test_services_import_domain_and_ports_only(path):
    for name in imports(path):
        ok = (
            top(name) in STDLIB | {"pydantic", "__future__"}
            or name.startswith(("shared.domain", "shared.services"))
            or name == "shared.ports"
        )
        assert ok, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sources("shared"), ids=str)
def test_shared_never_imports_functions_or_localdev(path):
    for name in imports(path):
        assert top(name) not in {"azure", "functions", "localdev"} or not (
            name.startswith("azure.functions") or top(name) in {"functions", "localdev"}
        ), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", [*sources("functions"), ROOT / "function_app.py"], ids=str)
def test_functions_import_no_sdk(path):
    for name in imports(path):
        ok = (
            top(name) in STDLIB | {"pydantic", "__future__", "functions"}
            or name.startswith("azure.functions")
            or name in {"shared.bootstrap"}
            or name.startswith(("shared.services", "shared.domain"))
            or name == "shared.ports"
        )
        assert ok, f"{path.name} imports {name}"


def test_nothing_but_tests_imports_localdev():
    for folder in ("shared", "functions"):
        for path in sources(folder):
            assert not any(top(n) == "localdev" for n in imports(path)), path


@pytest.mark.parametrize("path", [*sources("shared/services"), ROOT / "shared/ports.py"], ids=str)
def test_services_and_ports_never_import_an_adapter(path):
    # The port speaks the domain's language; Partner Center's JSON stops in its adapter.
    for name in imports(path):
        assert not name.startswith("shared.adapters"), f"{path.name} imports {name}"


def test_the_domain_holds_no_partner_center_wire_model():
    assert not [p.name for p in sources("shared/domain") if "partner_center" in p.stem]
    for path in sources("shared/domain"):
        text = path.read_text()
        # Wire models keep Microsoft's unknown fields (extra="allow"); ours never read them.
        assert 'extra="allow"' not in text and "model_extra" not in text, path.name


def test_services_never_read_model_extra():
    for path in sources("shared/services"):
        assert "model_extra" not in path.read_text(), path.name
