"""Exact money (layer 0: standard library only).

Money is :class:`decimal.Decimal` throughout the exact path.  Rounding happens in exactly
one place, :func:`round_money`, and splits are made by :func:`allocate` (largest remainder)
so that parts always add up to the whole, to the cent.  Storage uses integer minor units
(:func:`to_minor_units`), because SQLite cannot hold a ``Decimal`` exactly.

>>> round_money(Decimal("10.005"), "EUR")
Decimal('10.01')
>>> allocate(Decimal("100.00"), [Decimal(1), Decimal(1), Decimal(1)], "EUR")
[Decimal('33.34'), Decimal('33.33'), Decimal('33.33')]
>>> to_minor_units(Decimal("1234.50"), "EUR")
123450
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Sequence

# Active ISO 4217 codes whose minor unit is not 2 decimals.
_EXPONENT_NOT_2: dict[str, int] = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}

# Active ISO 4217 currency codes (funds and precious metals excluded).
ISO_4217: frozenset[str] = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD
    BTN BWP BYN BZD CAD CDF CHF CLF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB
    EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD
    JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK
    MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB
    TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYI UYU UYW UZS VED VES VND VUV WST XAF XCD
    XCG XOF XPF YER ZAR ZMW ZWG""".split()
)


def is_currency(code: str) -> bool:
    """True for an active ISO 4217 code such as ``EUR``."""
    return code in ISO_4217


def exponent(currency: str) -> int:
    """Number of decimals of the currency's minor unit (EUR 2, JPY 0, KWD 3)."""
    return _EXPONENT_NOT_2.get(currency, 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """The one place money is rounded: to the minor unit, half away from zero."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Exact integer minor units; refuses an amount that is not already rounded."""
    scaled = amount.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(scaled)


def from_minor_units(units: int, currency: str) -> Decimal:
    return Decimal(units).scaleb(-exponent(currency)).quantize(quantum(currency))


def allocate(total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Split ``total`` (already rounded) in proportion to ``weights`` by largest remainder.

    The parts are rounded down to the minor unit, then the minor units left over go one by
    one to the parts with the largest remainders (ties to the earlier part), so the parts
    always sum exactly to ``total``.
    """
    if not weights:
        raise ValueError("allocate needs at least one weight")
    if any(w < 0 for w in weights):
        raise ValueError("allocation weights must not be negative")
    wsum = sum(weights, Decimal(0))
    q = quantum(currency)
    if wsum == 0:
        raise ValueError("allocation weights sum to zero")
    sign = Decimal(-1) if total < 0 else Decimal(1)
    magnitude = abs(total)
    exact = [magnitude * w / wsum for w in weights]
    floors = [e.quantize(q, rounding=ROUND_FLOOR) for e in exact]
    left = int((magnitude - sum(floors, Decimal(0))) / q)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += q
    return [sign * f for f in floors]


def format_money(amount: Decimal, currency: str) -> str:
    """``EUR 1,234,567.50``: thousands separators, the currency's own decimals."""
    return f"{currency} {round_money(amount, currency):,.{exponent(currency)}f}"
