"""Money rules: integer minor units plus an ISO 4217 code, everywhere. No floats.

Decimal appears only at display and FX boundaries."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

# ISO 4217 minor-unit exponents. Codes not listed here are refused.
CURRENCY_EXPONENTS: dict[str, int] = {
    # zero-decimal
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # three-decimal
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    # two-decimal
    **{
        code: 2
        for code in (
            "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD "
            "CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD "
            "GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD "
            "MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP "
            "PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
            "TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWL"
        ).split()
    },
}


class MoneyError(ValueError):
    """Bad money input (currency, amount); the message names what is wrong."""


def normalize_currency(code: object) -> str:
    """Upper-case ISO 4217 code; accepts any case. Raises MoneyError for unknown codes."""
    if not isinstance(code, str) or code.upper() not in CURRENCY_EXPONENTS:
        raise MoneyError(f"unknown currency {code!r}")
    return code.upper()


def exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS[normalize_currency(currency)]


def require_amount(value: object, *, allow_zero: bool = False) -> int:
    """An amount in minor units: a real int (not bool, not float), positive (or zero if allowed)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyError(f"amount must be an integer number of minor units, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise MoneyError(f"amount must be {'zero or ' if allow_zero else ''}positive, got {value}")
    return value


def format_amount(amount: int, currency: str) -> str:
    exp = exponent(currency)
    value = Decimal(amount).scaleb(-exp)
    return f"{value:,.{exp}f} {normalize_currency(currency)}"


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` with the largest-remainder method.

    The parts always sum to ``total``; ties in remainders go to the earlier weight, so the
    result is deterministic. Works for negative totals (the parts mirror the positive split).
    """
    if not weights:
        raise MoneyError("allocate needs at least one weight")
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in weights):
        raise MoneyError("weights must be non-negative integers")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise MoneyError("weights must not all be zero")
    if total < 0:
        return [-part for part in allocate(-total, weights)]
    floors = [total * w // weight_sum for w in weights]
    remainders = [total * w % weight_sum for w in weights]
    left = total - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def convert(amount: int, *, from_currency: str, to_currency: str, rate: Decimal | str) -> int:
    """Convert minor units at ``rate`` (units of to_currency per unit of from_currency),
    rounding half-even to the target's minor unit. Used only at FX boundaries."""
    rate_d = Decimal(str(rate))
    if rate_d <= 0:
        raise MoneyError(f"rate must be positive, got {rate}")
    major = Decimal(amount).scaleb(-exponent(from_currency)) * rate_d
    return int(major.scaleb(exponent(to_currency)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
