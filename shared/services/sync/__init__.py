"""Sync: each reseller's customers, subscriptions and licences mirrored from Partner Center."""
