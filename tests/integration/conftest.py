"""Integration fixtures: a container wired to the session's Azurite with unique tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.azurite import Azurite
from shared.bootstrap import Container
from shared.config import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(azurite: Azurite, table_prefix: str, tmp_path: Path) -> Settings:
    """Settings pointing at Azurite, with tables unique to this test."""
    return Settings(
        APP_ENVIRONMENT="test",
        AzureWebJobsStorage=azurite.connection_string,
        TABLE_PREFIX=table_prefix,
        MAIL_DROP_DIR=str(tmp_path / "mail"),
        OUTBOX_MIN_AGE_SECONDS=0,
    )


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    """A container of real adapters against Azurite."""
    yield Container(settings)
