"""Money: a Decimal amount with its ISO 4217 currency, never a float, never one without the other.

On the wire and in storage a `Money` is `{"amount": "123.45", "currency": "CZK"}` (the amount a
decimal string). Arithmetic refuses to mix currencies. Rounding is explicit: half-up (away from
zero) to the currency's minor unit, done once, at the end of a computation, by `rounded()`.

`NO_CURRENCY` (ISO 4217 "XXX", "no currency involved") marks an amount stored before amounts
carried their currency; the service that reads it adopts the reseller's currency (see
`CatalogEntry.in_currency`). It never mixes with a real currency.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from shared.domain.errors import FieldError, ValidationFailed

CURRENCY_PATTERN = r"^[A-Z]{3}$"
NO_CURRENCY = "XXX"
# ISO 4217 minor units of the currencies that differ from the usual two.
_MINOR_UNITS = {
    "JPY": 0,
    "KRW": 0,
    "ISK": 0,
    "CLP": 0,
    "VND": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}
# Amounts above this are not prices but typing errors (and would lose digits in storage).
MAX_AMOUNT = Decimal("1e12")


@cache
def minor_unit(currency: str) -> Decimal:
    """The smallest amount of a currency (0.01 for CZK, EUR and USD; 1 for JPY)."""
    return Decimal(1).scaleb(-_MINOR_UNITS.get(currency.upper(), 2))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded to the currency's minor unit, half away from zero."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


class CurrencyMismatch(ValidationFailed):
    """Two amounts in different currencies met in one computation."""

    def __init__(self, left: str, right: str, field: str = "currency") -> None:
        super().__init__([FieldError(field, f"{right} cannot be combined with {left}")])
        self.currencies = (left, right)


class Money(BaseModel):
    """An amount of one currency (Decimal; rounded only when `rounded()` says so)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Decimal = Field(allow_inf_nan=False, description='A decimal string, e.g. "123.45".')
    currency: str = Field(pattern=CURRENCY_PATTERN, description="ISO 4217 code, e.g. CZK.")

    @model_validator(mode="after")
    def _bounded(self) -> Money:
        if abs(self.amount) >= MAX_AMOUNT:
            raise ValueError("the amount is too large")
        return self

    @field_serializer("amount")
    def _amount_as_string(self, amount: Decimal) -> str:
        # A decimal string in every mode: a JSON number would become a float somewhere.
        return format(amount, "f")

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        """Money from an amount and a currency code."""
        return cls(amount=Decimal(amount), currency=currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Nothing, in a currency."""
        return cls(amount=Decimal(0), currency=currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"Money cannot be combined with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, float | Money) or not isinstance(factor, Decimal | int):
            raise TypeError("Money is multiplied by a Decimal or an int only")
        return Money(amount=self.amount * factor, currency=self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def rounded(self) -> Money:
        """This amount rounded half-up to the currency's minor unit."""
        return Money(amount=round_money(self.amount, self.currency), currency=self.currency)

    def is_zero(self) -> bool:
        """Whether the amount is zero."""
        return self.amount == 0

    def in_currency(self, currency: str) -> Money:
        """This amount in `currency` if it was stored without one (`NO_CURRENCY`), else itself."""
        if self.currency == NO_CURRENCY:
            return Money(amount=self.amount, currency=currency)
        return self


def legacy_amount(value: Any) -> Any:
    """A bare decimal where a Money belongs (old rows and bodies): an amount of no currency."""
    if isinstance(value, str | int | float | Decimal) and not isinstance(value, bool):
        return {"amount": str(value), "currency": NO_CURRENCY}
    return value
