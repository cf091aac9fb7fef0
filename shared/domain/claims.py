"""Claim rows: uniqueness of a value inside one partition, without "list, then insert".

A claim is a row `~claim~<kind>~<value>` in the partition of the record that holds the value,
inserted in the same transaction as the record (and deleted, when the value changes, in the
same transaction as the change). Two writers racing for one value: the second transaction
fails as a whole, so no record exists without its claim and no value is held twice. Claim rows
sort after every data row (`~`), so record lists never see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

CLAIM_PREFIX = "~claim~"


@dataclass(frozen=True)
class Claim:
    """A unique value of a partition (a tenant domain, a tenant id, a user's e-mail)."""

    kind: str
    value: str

    @property
    def row_key(self) -> str:
        """The claim's RowKey; the value lower-cased and escaped so any value is a valid key."""
        return f"{CLAIM_PREFIX}{self.kind}~{quote(self.value.strip().lower(), safe='@.+-_')}"
