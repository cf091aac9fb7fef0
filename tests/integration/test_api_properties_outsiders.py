"""The API's properties as callers outside demo's staff: anonymous, a customer user of demo, the
owner of another reseller. The machinery and the rules: api_properties.py."""

from __future__ import annotations

import pytest

from tests.integration.api_properties import Api, check_every_operation
from tests.integration.api_properties import api as api_fixture

pytestmark = pytest.mark.integration
api = api_fixture  # a host of this module's own, seeded, on the worker's Azurite and simulator


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "caller", [None, "it@customer.example", "owner@other.example"], ids=lambda c: c or "anonymous"
)
def test_every_operation_answers_as_documented(api: Api, caller: str | None) -> None:
    check_every_operation(api, caller)
