"""In-memory subscription changes in Partner Center, for the Change order step's tests.

`FakeChangePartnerCenter` extends the ordering fake with the port's change methods, with the
simulator's rules the step relies on: a repeated MS-RequestId repeats the first answer (a
refusal or a lost ETag race is not an answer kept); a 202 on demand, done after some reads;
a transition moves seats to a new subscription (a trial's source is deleted).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.domain.errors import ConcurrencyConflict, NotFound
from shared.domain.subscriptions import (
    ChangeAccepted,
    ChangeProgress,
    SubscriptionChange,
    SubscriptionFacts,
    TransitionOutcome,
    TransitionRequest,
)
from tests.order_fakes import FakeOrderPartnerCenter

_STATUS = {"Active": "active", "Suspended": "suspended", "Cancelled": "deleted"}


@dataclass
class _Accepted:
    subscription_id: str
    change: SubscriptionChange
    reads_left: int
    failure: tuple[str, str] | None


@dataclass
class FakeChangePartnerCenter(FakeOrderPartnerCenter):
    """Ordering plus subscription changes (see the module docstring).

    `accept_later` answers the next PATCH with 202, done after that many progress reads
    (`accepted_failure` makes it end failed with that code and text); `etag_races` makes that
    many PATCHes lose Partner Center's own ETag race.
    """

    accept_later: int | None = None
    accepted_failure: tuple[str, str] | None = None
    etag_races: int = 0
    changes: list[tuple[str, str]] = field(default_factory=list)  # (request id, subscription)
    accepted: dict[str, _Accepted] = field(default_factory=dict)

    def subscription(self, customer_tenant: str, subscription_id: str) -> SubscriptionFacts:
        """One subscription as it is now."""
        self._call("subscription")
        found = self.subscriptions.get(subscription_id)
        if found is None:
            raise NotFound(f"subscription {subscription_id} was not found")
        return found

    def change_subscription(
        self,
        customer_tenant: str,
        subscription_id: str,
        change: SubscriptionChange,
        *,
        request_id: str,
    ) -> SubscriptionFacts | ChangeAccepted:
        """Apply `change` (or accept it for later); replayed for a repeated request id."""
        self._call("change_subscription")
        key = f"change {request_id}"
        if key in self.replies:
            reply: SubscriptionFacts | ChangeAccepted = self.replies[key]
            return reply
        if subscription_id not in self.subscriptions:
            raise NotFound(f"subscription {subscription_id} was not found")
        if self.etag_races:
            self.etag_races -= 1
            raise ConcurrencyConflict("the subscription changed since it was read")
        self.changes.append((request_id, subscription_id))
        answer: SubscriptionFacts | ChangeAccepted
        if self.accept_later is not None:
            location = f"/subscriptions/{subscription_id}/operations/{uuid.uuid4()}"
            self.accepted[location] = _Accepted(
                subscription_id, change, self.accept_later, self.accepted_failure
            )
            answer = ChangeAccepted(location=location, retry_after_seconds=3)
        else:
            answer = self._apply(subscription_id, change)
        self.replies[key] = answer
        return answer

    def change_progress(
        self, customer_tenant: str, subscription_id: str, accepted: ChangeAccepted
    ) -> ChangeProgress:
        """Running until its reads are used up, then done (applied) or failed."""
        self._call("change_progress")
        pending = self.accepted[accepted.location]
        if pending.reads_left > 0:
            pending.reads_left -= 1
            return ChangeProgress(done=False)
        if pending.failure is not None:
            code, reason = pending.failure
            return ChangeProgress(done=False, failed_code=code, failed_reason=reason)
        facts = self.subscriptions[pending.subscription_id]
        if pending.reads_left == 0:
            facts = self._apply(pending.subscription_id, pending.change)
            pending.reads_left = -1  # applied once
        return ChangeProgress(done=True, facts=facts)

    def transition(
        self,
        customer_tenant: str,
        subscription_id: str,
        request: TransitionRequest,
        *,
        request_id: str,
    ) -> TransitionOutcome:
        """Move seats to a new subscription of the target offer (replayed per request id)."""
        self._call("transition")
        key = f"transition {request_id}"
        if key in self.replies:
            reply: TransitionOutcome = self.replies[key]
            return reply
        source = self.subscriptions[subscription_id]
        self.changes.append((request_id, subscription_id))
        new_id = str(uuid.uuid4())
        self.subscriptions[new_id] = dataclasses.replace(
            source,
            id=new_id,
            catalog_item_id=request.to_catalog_item_id,
            name=f"{source.name} (upgraded)",
            quantity=request.quantity,
            term_duration=request.term_duration or source.term_duration,
            billing_cycle=request.billing_cycle or source.billing_cycle,
            is_trial=False,
            next_term=None,
            etag=str(uuid.uuid4()),
        )
        left = 0 if source.is_trial else source.quantity - request.quantity
        self.subscriptions[subscription_id] = dataclasses.replace(
            source,
            quantity=source.quantity if source.is_trial else left,
            status="deleted" if left == 0 else source.status,
            auto_renew=False if left == 0 else source.auto_renew,
            next_term=None,
            etag=str(uuid.uuid4()),
        )
        outcome = TransitionOutcome(
            status="Completed", to_subscription_id=new_id, partner_center_order_id=str(uuid.uuid4())
        )
        self.replies[key] = outcome
        return outcome

    def _apply(self, subscription_id: str, change: SubscriptionChange) -> SubscriptionFacts:
        facts = self.subscriptions[subscription_id]
        updates: dict[str, Any] = {"etag": str(uuid.uuid4())}
        for name in ("quantity", "billing_cycle", "term_duration", "auto_renew"):
            if getattr(change, name) is not None:
                updates[name] = getattr(change, name)
        if change.status is not None:
            updates["status"] = _STATUS[change.status]
            if change.status == "Suspended":
                updates.update(auto_renew=False, next_term=None)
        if change.quantity is not None:
            updates["next_term"] = None  # a mid-term change wipes the scheduled one
        if change.next_term is not None:
            updates["next_term"] = change.next_term
        if change.clear_next_term:
            updates["next_term"] = None
        self.subscriptions[subscription_id] = dataclasses.replace(facts, **updates)
        return self.subscriptions[subscription_id]
