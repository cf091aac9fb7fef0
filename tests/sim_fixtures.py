"""pytest plugin: a Partner Center simulator (HTTPS subprocess on a free port) for the session.

Register it with ``pytest_plugins = ["tests.sim_fixtures"]`` in tests/conftest.py (or run pytest
with ``-p tests.sim_fixtures``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localdev.partner_center_sim import SimulatorHandle, start_simulator


@pytest.fixture(scope="session")
def partner_center_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorHandle]:
    """One simulator per session: .base_url, .connection, .ca_cert_path and /_sim helpers."""
    handle = start_simulator(tmp_path_factory.mktemp("partner-center-sim"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def fresh_partner_center_sim(partner_center_sim: SimulatorHandle) -> Iterator[SimulatorHandle]:
    """The session simulator with empty state, no faults, default settings and a reset clock."""
    partner_center_sim.reset()
    yield partner_center_sim
    # Leave no faults or throttling behind for tests that use the session fixture directly.
    partner_center_sim.reset()
