"""The API's properties as demo's staff (an AccountManager, a ReadOnly user), then whether the data
their generated writes left behind is whole. The machinery and the rules: api_properties.py."""

from __future__ import annotations

import pytest

from tests.integration.api_properties import Api, check_every_operation, check_stored_data_is_whole
from tests.integration.api_properties import api as api_fixture

pytestmark = pytest.mark.integration
api = api_fixture  # a host of this module's own, seeded, on the worker's Azurite and simulator


@pytest.mark.timeout(600)
@pytest.mark.parametrize("caller", ["owner@demo.example", "viewer@demo.example"])
def test_every_operation_answers_as_documented(api: Api, caller: str) -> None:
    check_every_operation(api, caller)


def test_stored_data_is_whole_after_the_run(api: Api) -> None:
    check_stored_data_is_whole(api)
