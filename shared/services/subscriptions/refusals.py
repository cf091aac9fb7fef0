"""Partner Center's refusals of a subscription change, as sentences a person understands.

One table, code → sentence (REFERENCE.md, "PATCH refusals" and the new-commerce rules). A code
without a sentence here quotes Partner Center's own description, so nothing is ever lost.
"""

from __future__ import annotations

_QUALIFICATION = (
    "Microsoft has not approved the customer's qualification for this segment (education, "
    "government or nonprofit), so its subscriptions cannot be changed until it is approved"
)

SENTENCES: dict[str, str] = {
    "800090": (
        "Only seats added in the last 7 days (each increase has its own 7-day window) can be "
        "removed, and these are outside their window; the quantity can be lowered at renewal "
        "with a scheduled change instead"
    ),
    "900214": (
        "The 7-day window for removing seats has passed; the quantity can be lowered at renewal "
        "with a scheduled change instead"
    ),
    "900257": (
        "The 7-day window for removing seats has passed; the quantity can be lowered at renewal "
        "with a scheduled change instead"
    ),
    "900213": (
        "The cancellation window has closed: a subscription can be cancelled only within 7 days "
        "of its purchase or renewal; turn auto-renew off to end it at the end of its term"
    ),
    "800091": "The subscription is suspended: reactivate it first, then change it",
    "2011": "The subscription is deleted in Partner Center and can no longer be changed",
    "800082": (
        "Partner Center is renewing the subscription (or is not ready for a change yet); "
        "ask for the change again later"
    ),
    "900278": (
        "Another operation on this subscription is still running in Partner Center; ask for "
        "the change again once it has finished"
    ),
    "900311": "The subscription has been changed too many times; contact Microsoft support",
    "800122": (
        "The term can only be made longer during the term; a shorter term can be set for the "
        "renewal with a scheduled change"
    ),
    "900270": "The billing cycle cannot be longer than the term",
    "800093": (
        "The subscription is not eligible for a change at renewal (auto-renew must be on and "
        "the subscription active)"
    ),
    "800092": "Partner Center does not allow this change of the subscription",
    "2002": "The quantity is outside the minimum and maximum number of seats of this product",
    "10015": "The quantity is outside the number of seats this tenant may have of this product",
    "10001": "The target product is not an eligible upgrade or conversion of this subscription",
    "10020": "The target product is not offered with this term and billing cycle",
    "800073": _QUALIFICATION,
    "800074": _QUALIFICATION,
    "800075": _QUALIFICATION,
}


def refusal_sentence(code: str | None, description: str | None) -> str:
    """What a person reads on a change Partner Center refused: the table's sentence (with
    Partner Center's code), or else Partner Center's own words."""
    known = SENTENCES.get(code or "")
    if known is not None:
        return f"{known} (Partner Center code {code})."
    words = (description or "").strip().rstrip(".") or "no reason given"
    tail = f" (code {code})" if code else ""
    return f"Partner Center refused the change: {words}{tail}."
