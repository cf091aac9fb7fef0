"""Shared pytest configuration."""

import pytest

pytest_plugins = ["tests.azurite_fixtures", "tests.sim_fixtures"]


# Modules that take minutes each (hosts, hypothesis over every route): collected first, so
# that with one worker per core (`--dist loadfile --no-loadscope-reorder` hands out modules in
# collection order) they start at once and the short modules fill in around them, rather than
# one of them starting last and running alone at the end. The order inside a module stays as
# written. (Without --no-loadscope-reorder xdist hands out the modules with the most tests
# first, whatever this order is: the few long tests of these modules came last.)
SLOW_FIRST = (
    "tests/integration/test_api_properties_outsiders.py",
    "tests/integration/test_api_properties_staff.py",
    "tests/integration/test_sync_local_host.py",
    "tests/integration/test_orders_local_host.py",
    "tests/integration/test_subscriptions_local_host.py",
    "tests/integration/test_customers_local_host.py",
    "tests/integration/test_quotes_local_host.py",
    "tests/integration/test_sync_api_local_host.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow modules first (see SLOW_FIRST); a stable sort keeps every other order."""
    rank = {path: n for n, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
