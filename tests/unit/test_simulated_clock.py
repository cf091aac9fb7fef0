"""The platform's clock in local runs: it follows the Partner Center simulator's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError

from shared.adapters.partner_center.simulated_clock import SimulatedPartnerCenterClock
from shared.bootstrap import Container
from shared.config import Settings
from shared.ports import SystemClock

WALL = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EIGHT_DAYS = 8 * 86400.0


class FakeSimulator:
    """Answers `/_sim/clock` with an offset, or fails when told to."""

    def __init__(self) -> None:
        self.offset_seconds = 0.0
        self.down = False
        self.reads = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/_sim/clock"
        self.reads += 1
        if self.down:
            return httpx.Response(503, json={"code": 503})
        return httpx.Response(200, json={"now": "x", "offsetSeconds": self.offset_seconds})


def clock_for(sim: FakeSimulator, ticks: list[float]) -> SimulatedPartnerCenterClock:
    return SimulatedPartnerCenterClock(
        "https://sim.test:8443/",
        http=httpx.Client(transport=httpx.MockTransport(sim.handler)),
        wall=lambda: WALL,
        monotonic=lambda: ticks[0],
    )


def test_simulated_clock_is_wall_time_plus_the_simulators_offset() -> None:
    sim = FakeSimulator()
    sim.offset_seconds = EIGHT_DAYS
    clock = clock_for(sim, [0.0])

    assert clock.now() == WALL + timedelta(days=8)
    assert clock.now().tzinfo is not None


def test_simulated_clock_reads_the_offset_at_most_once_a_second() -> None:
    sim = FakeSimulator()
    ticks = [0.0]
    clock = clock_for(sim, ticks)
    clock.now()
    sim.offset_seconds = EIGHT_DAYS

    ticks[0] = 0.5
    assert clock.now() == WALL  # cached
    ticks[0] = 1.1
    assert clock.now() == WALL + timedelta(days=8)
    assert sim.reads == 2


def test_simulated_clock_keeps_the_last_known_offset_when_the_simulator_is_down() -> None:
    sim = FakeSimulator()
    sim.offset_seconds = EIGHT_DAYS
    ticks = [0.0]
    clock = clock_for(sim, ticks)
    assert clock.now() == WALL + timedelta(days=8)

    sim.down = True
    ticks[0] = 5.0

    assert clock.now() == WALL + timedelta(days=8)


def _settings(**values: str) -> Settings:
    return Settings.model_validate({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **values})


def test_simulated_clock_setting_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="PARTNER_CENTER_SIMULATED_CLOCK"):
        _settings(APP_ENVIRONMENT="production", PARTNER_CENTER_SIMULATED_CLOCK="true")


def test_container_follows_the_simulator_clock_only_when_the_setting_is_on() -> None:
    on = Container(
        _settings(
            APP_ENVIRONMENT="test",
            PARTNER_CENTER_SIMULATED_CLOCK="true",
            PARTNER_CENTER_API_BASE_URL="https://127.0.0.1:1",
        )
    )
    off = Container(_settings(APP_ENVIRONMENT="test"))

    assert isinstance(on.clock, SimulatedPartnerCenterClock)
    assert isinstance(off.clock, SystemClock)
