"""Pytest fixtures: one Azurite per test session, unique names per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ulid import ULID

from localdev.azurite import Azurite, running


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A running Azurite for the whole session (npm, Docker or AZURITE_CONNECTION_STRING)."""
    with running(tmp_path_factory.mktemp("storage")) as az:
        yield az


@pytest.fixture
def unique_name() -> str:
    """A short lowercase name unique to this test (queues, prefixes)."""
    return "t" + str(ULID()).lower()[-12:]


def new_table_prefix() -> str:
    """A fresh table-name prefix (letters only, as table names allow)."""
    digits = str(ULID())[-10:]
    return "T" + "".join(chr(ord("a") + int(c, 36) % 26) for c in digits)


@pytest.fixture
def table_prefix() -> str:
    """A table-name prefix unique to this test."""
    return new_table_prefix()
