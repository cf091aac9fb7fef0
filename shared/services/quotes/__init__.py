"""Quotes: create (or from a Draft order), edit, send, withdraw; the customer's answers signed
in or through the e-mailed link; expiry. One concern per module: `book`, `views`, `editing`,
`answers`, `mail`, `upkeep`.
"""

from shared.services.quotes.answers import answer, finish, link_answer, link_view
from shared.services.quotes.book import QuoteBook, get
from shared.services.quotes.editing import create, from_order, send, update, withdraw
from shared.services.quotes.upkeep import run
from shared.services.quotes.views import QuotePublic, QuoteStaff, StatusFilter, list_quotes, present

__all__ = [
    "QuoteBook",
    "QuotePublic",
    "QuoteStaff",
    "StatusFilter",
    "answer",
    "create",
    "finish",
    "from_order",
    "get",
    "link_answer",
    "link_view",
    "list_quotes",
    "present",
    "run",
    "send",
    "update",
    "withdraw",
]
