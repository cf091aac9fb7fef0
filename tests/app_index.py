"""The app's functions, indexed once (FunctionApp.get_functions may only be called once)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from function_app import app


@lru_cache(maxsize=1)
def functions() -> tuple[Any, ...]:
    """Every function of the app, as the host indexes them."""
    return tuple(app.get_functions())


def triggers() -> dict[str, dict[str, Any]]:
    """Function name → its trigger's JSON."""
    return {f.get_function_name(): f.get_trigger().get_dict_repr() for f in functions()}
