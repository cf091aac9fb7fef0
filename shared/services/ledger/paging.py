"""Every item of a paged listing, page by page (the ledger's services never hold a month)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from shared.domain.model import Page

T = TypeVar("T")

PAGE_SIZE = 1000


def every(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """The items of every page `fetch(continuation_token)` returns, in order."""
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page.items
        token = page.continuation_token
        if token is None:
            return
