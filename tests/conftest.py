"""Shared pytest configuration."""

pytest_plugins = ["tests.azurite_fixtures", "tests.sim_fixtures"]
