"""Settings: identity in Azure, account keys only for Azurite, every setting documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from localdev.azurite import connection_string
from shared.config import Settings, is_azurite_connection_string

ROOT = Path(__file__).resolve().parents[2]
AZURE_KEY_CONN = (
    "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=abc=;"
    "EndpointSuffix=core.windows.net"
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Settings read the environment: start each test from none of ours."""
    for field in Settings.model_fields.values():
        monkeypatch.delenv(str(field.alias), raising=False)


def test_azurite_connection_strings_are_recognised():
    assert is_azurite_connection_string("UseDevelopmentStorage=true")
    assert is_azurite_connection_string(connection_string(1, 2, 3))
    assert not is_azurite_connection_string(AZURE_KEY_CONN)


def test_account_key_for_a_real_account_is_refused():
    with pytest.raises(ValidationError, match="account keys are refused"):
        Settings(AzureWebJobsStorage=AZURE_KEY_CONN)


def test_managed_identity_needs_only_the_account_name():
    s = Settings(AzureWebJobsStorage__accountName="prodstore")
    assert s.storage_connection_string is None


def test_no_storage_at_all_is_refused():
    with pytest.raises(ValidationError, match="storage is not configured"):
        Settings()


def test_example_local_settings_name_every_setting_the_app_reads():
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    aliases = {f.alias for f in Settings.model_fields.values()}
    missing = sorted(a for a in aliases if a not in values)
    assert not missing, f"local.settings.example.json lacks {missing}"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_the_ledger_months_open_hourly_so_a_partial_opening_is_finished_within_the_hour():
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    bicep = (ROOT / "infra" / "main.bicep").read_text()
    hourly = "0 10 * * * *"
    assert Settings(AzureWebJobsStorage__accountName="x").ledger_schedule == hourly
    assert values["LEDGER_SCHEDULE"] == hourly
    assert f"LEDGER_SCHEDULE: '{hourly}'" in bicep
