"""Subscriptions: reading (records, refreshed from Partner Center when not fresh), the views
per audience, and requesting a change (each one a Change order through `provision-order`).

Applying a change in Partner Center is `applying` (the `provision-order` step of a Change
order); the new-commerce rules themselves are pure functions in `shared.domain.nce`.
"""
