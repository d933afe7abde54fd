"""Split payments between vendors: pure functions, no database, integers in minor units only.

A payment carries a **split plan**: ``[{"vendor": "ven_1", "amount": 600}, {"vendor": "ven_2",
"amount": 400}]`` or ``[{"vendor": "ven_1", "share": "0.6"}, {"vendor": "ven_2", "share": "2/5"}]``.

The rules, in the order they apply:

1. **Plan** (``split_plan_validate``, when the payment is created). Every line names one vendor
   (``vendor``; ``vendor_id`` is accepted as an alias) and exactly one of ``amount`` or ``share``.
   A plan uses amounts or shares, never both (``split_plan_mixed``).

   - ``amount``: an integer of minor units, > 0. The amounts must add up exactly to the payment.
   - ``share``: an exact fraction of the payment in (0, 1], given as a decimal string (``"0.25"``),
     a fraction string (``"1/3"``), an int (``1``) or a ``Decimal``/``Fraction``; never a float
     (floats are not exact). The shares must add up to exactly 1. Each vendor's part is then the
     payment split by the shares with the largest-remainder method (``apps.core.money.allocate``;
     ties go to the earlier line), so the parts sum to the payment; a share that rounds to zero
     minor units is refused (``split_part_zero``).

   Vendors must be known, not ``disabled``, named once, and paid in the payment's currency (the
   vendor's default currency and a line's optional ``currency``): FX is never implicit. The
   commission each vendor's terms take from its planned part must not exceed that part
   (``commission_exceeds_part``). The validated plan keeps a snapshot of each vendor's terms, so
   a later change of terms does not change the split of a payment already taken.

2. **Allocation** (``split_allocate``, at capture). The captured amount is split in proportion
   to the plan (the planned parts are the weights, largest remainder): a full capture gives
   exactly the planned parts, a partial capture scales every part down. For each vendor part:

   - commission = round_half_even(part x percent_bps / 10000) + fixed fee in that currency
     (0 on a part of 0), **clamped** to the part: a vendor's net is never negative;
   - the processor fee is first split across the vendors' parts (largest remainder by part);
     each vendor's slice is then borne according to its fee policy: ``platform`` (the platform
     bears it all), ``vendor`` (the vendor bears it all) or ``pro_rata`` (vendor and platform
     share the slice by what each keeps of the part, part - commission against commission,
     largest remainder, a tie going to the vendor); the vendor's share is clamped to what its
     part leaves after commission, the platform bears the rest;
   - net = part - commission - fee borne by the vendor: what the marketplace owes the vendor.

   Invariants: every number is an int >= 0; the parts sum to the captured amount; per vendor
   net + commission + fee == part; the fees borne by vendors and platform sum to the fee.

   Posting it (``allocation_postings``, the capture's allocations): Dr processor_clearing
   <captured> / Cr vendor_pending:<vendor> <net> each (the vendor's until its transfer goes out) /
   Cr platform_revenue <commission> / Cr processor_fees <fees borne by vendors>; the capture's fee
   posting then moves the whole fee, Dr processor_fees <fee> / Cr processor_clearing <fee>.

3. **Refunds** (``split_refund_unwind``). Processors keep their fee when a payment is refunded,
   so the fee stays with whoever bore it at capture; a refund reverses the vendors' parts only.
   Each vendor part is made of two components, the vendor's (part - commission, i.e. its net plus
   the fee it bore) and the platform's (commission). A refund of R is split across the components
   still unrefunded (original minus every earlier refund of this allocation) with the largest
   remainder method. So each refund's components sum to R; cumulative refunds never exceed a
   component; refunding the whole amount, at once or in pieces, unwinds every component exactly.

4. **Disputes** (``split_dispute``, when the marketplace's dispute policy says the vendors bear
   chargebacks). A dispute of D is split across the vendor parts in proportion to their gross
   (largest remainder), then each vendor's share across its two components the same way: the
   vendor's (part - commission), taken from its available balance, and the platform's
   (commission), taken from platform revenue. The shares sum to D.

5. **Taking money back from a connected account** (``reclaimable``). A paid transfer leaves in the
   vendor's connected account what was sent (its amount less what was kept back for the vendor's
   debts) less what has been reversed since. A refund's or dispute's debit of the vendor is taken
   back from there, at most that much and at most the vendor's available balance (never below 0);
   the rest stays a debt on the vendor's balance, kept back from its later transfers
   (``kept_back``: a transfer sends its amount less the vendor's negative balance, at most all of it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from math import lcm
from typing import Any

from apps.core.money import MoneyError, allocate, format_amount, normalize_currency

BPS_DENOMINATOR = 10_000
MAX_SHARE_TEXT = 40  # characters: enough for any sensible fraction, short enough to stay cheap


class FeePolicy(StrEnum):
    """Who bears the processor's fee on a vendor's part."""

    PLATFORM = "platform"
    VENDOR = "vendor"
    PRO_RATA = "pro_rata"

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        labels = {
            cls.PLATFORM: "the platform bears processor fees",
            cls.VENDOR: "the vendor bears processor fees",
            cls.PRO_RATA: "shared pro rata (vendor's net against platform's commission)",
        }
        return [(p.value, labels[p]) for p in cls]


DISABLED = "disabled"  # the one vendor status that cannot receive new splits


class SplitError(ValueError):
    """A split plan or split terms that cannot be used. ``code`` is stable for programs,
    ``param`` names the offending input (``splits[1].amount``), ``message`` is for people."""

    def __init__(self, code: str, message: str, *, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def __repr__(self) -> str:
        return f"SplitError(code={self.code!r}, param={self.param!r}, message={self.message!r})"


# --------------------------------------------------------------------------- terms


@dataclass(frozen=True)
class CommissionTerms:
    """Effective commission on one vendor's parts: ``percent_bps`` basis points (1000 = 10%) plus
    a fixed fee per currency (lower-case code -> minor units; a missing currency means 0)."""

    percent_bps: int
    fixed: Mapping[str, int] = field(default_factory=dict)
    fee_policy: FeePolicy = FeePolicy.PLATFORM

    def __post_init__(self) -> None:
        bps = self.percent_bps
        if isinstance(bps, bool) or not isinstance(bps, int) or not 0 <= bps <= BPS_DENOMINATOR:
            raise SplitError(
                "commission_invalid",
                f"commission percent must be 0-10000 basis points, got {bps!r}",
                param="percent_bps",
            )
        object.__setattr__(self, "fixed", _fixed_fees(self.fixed))
        object.__setattr__(self, "fee_policy", _fee_policy(self.fee_policy))

    def fixed_for(self, currency: str) -> int:
        return self.fixed.get(currency.lower(), 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "percent_bps": self.percent_bps,
            "fixed": dict(self.fixed),
            "fee_policy": str(self.fee_policy),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommissionTerms:
        return cls(
            percent_bps=data["percent_bps"], fixed=data.get("fixed") or {}, fee_policy=data["fee_policy"]
        )


@dataclass(frozen=True)
class VendorTerms:
    """What a split needs to know about a vendor. ``percent_bps``, ``fixed`` and ``fee_policy``
    override the marketplace default when not None (``fixed`` replaces the whole map)."""

    vendor_id: str
    status: str
    currency: str
    percent_bps: int | None = None
    fixed: Mapping[str, int] | None = None
    fee_policy: FeePolicy | str | None = None

    def effective(self, default: CommissionTerms) -> CommissionTerms:
        return CommissionTerms(
            percent_bps=default.percent_bps if self.percent_bps is None else self.percent_bps,
            fixed=default.fixed if self.fixed is None else self.fixed,
            fee_policy=default.fee_policy if self.fee_policy is None else FeePolicy(self.fee_policy),
        )


def _fixed_fees(raw: object) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise SplitError(
            "commission_invalid", "fixed fees must be an object of currency -> amount", param="fixed"
        )
    out: dict[str, int] = {}
    for code, value in raw.items():
        try:
            cur = normalize_currency(code).lower()
        except MoneyError as exc:
            raise SplitError("commission_invalid", f"fixed fees: {exc}", param=f"fixed.{code}") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SplitError(
                "commission_invalid",
                f"fixed fee for {cur} must be a non-negative integer of minor units, got {value!r}",
                param=f"fixed.{code}",
            )
        if cur in out:
            raise SplitError(
                "commission_invalid",
                f"fixed fees: {cur} is given twice (currency codes are case-insensitive)",
                param=f"fixed.{code}",
            )
        out[cur] = value
    return out


def _fee_policy(raw: object) -> FeePolicy:
    try:
        return FeePolicy(str(raw))
    except ValueError:
        allowed = ", ".join(p.value for p in FeePolicy)
        raise SplitError(
            "commission_invalid", f"fee policy must be one of {allowed}, got {raw!r}", param="fee_policy"
        ) from None


def commission_for(part: int, currency: str, terms: CommissionTerms) -> int:
    """The commission on one vendor part, before clamping: the percentage rounded half to even to
    the minor unit, plus the fixed fee in ``currency``. A part of 0 pays no commission."""
    if part <= 0:
        return 0
    quotient, rest = divmod(part * terms.percent_bps, BPS_DENOMINATOR)
    if rest * 2 > BPS_DENOMINATOR or (rest * 2 == BPS_DENOMINATOR and quotient % 2 == 1):
        quotient += 1
    return quotient + terms.fixed_for(currency)


def format_bps(bps: int) -> str:
    """``1250`` -> ``"12.5%"`` (exact; no floats)."""
    text = f"{Decimal(bps).scaleb(-2):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}%"


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class SplitLine:
    """One validated line: the vendor, its weight (an amount, or a share), its planned part of
    the payment and the vendor's terms at validation time."""

    vendor_id: str
    planned: int
    terms: CommissionTerms
    amount: int | None = None
    share: Fraction | None = None


@dataclass(frozen=True)
class SplitPlan:
    """A validated plan for a payment of ``amount`` in ``currency`` (upper case). Store it with
    ``as_dict`` and read it back with ``from_dict``; ``kind`` is ``"amount"`` or ``"share"``."""

    amount: int
    currency: str
    kind: str
    lines: tuple[SplitLine, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "currency": self.currency,
            "kind": self.kind,
            "lines": [
                {
                    "vendor": line.vendor_id,
                    "planned": line.planned,
                    **({"amount": line.amount} if line.amount is not None else {}),
                    **({"share": str(line.share)} if line.share is not None else {}),
                    "terms": line.terms.as_dict(),
                }
                for line in self.lines
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitPlan:
        return cls(
            amount=data["amount"],
            currency=data["currency"],
            kind=data["kind"],
            lines=tuple(
                SplitLine(
                    vendor_id=line["vendor"],
                    planned=line["planned"],
                    terms=CommissionTerms.from_dict(line["terms"]),
                    amount=line.get("amount"),
                    share=Fraction(line["share"]) if "share" in line else None,
                )
                for line in data["lines"]
            ),
        )

    @property
    def weights(self) -> list[int]:
        return [line.planned for line in self.lines]


_FRACTION_TEXT = re.compile(r"^\s*\d+\s*/\s*\d+\s*$")


def parse_share(raw: object, *, param: str) -> Fraction:
    """An exact share in (0, 1] from ``"0.25"``, ``"1/3"``, ``1``, a Decimal or a Fraction."""
    problem = 'a share must be a decimal string such as "0.25" or a fraction such as "1/3"'
    if isinstance(raw, bool | float):
        raise SplitError("split_share_invalid", f"{problem} (floats are not exact), got {raw!r}", param=param)
    value: Fraction
    if isinstance(raw, Fraction):
        value = raw
    elif isinstance(raw, int):
        value = Fraction(raw)
    elif isinstance(raw, Decimal):
        value = _decimal_share(raw, raw, problem=problem, param=param)
    elif isinstance(raw, str) and 0 < len(raw) <= MAX_SHARE_TEXT:
        text = raw.strip()
        if _FRACTION_TEXT.match(text):
            numerator, denominator = (int(p) for p in text.split("/"))
            if denominator == 0:
                raise SplitError("split_share_invalid", f"share {raw!r} divides by zero", param=param)
            value = Fraction(numerator, denominator)
        else:
            try:
                decimal = Decimal(text)
            except InvalidOperation:
                decimal = Decimal("NaN")
            value = _decimal_share(decimal, raw, problem=problem, param=param)
    else:
        raise SplitError("split_share_invalid", f"{problem}, got {raw!r}", param=param)
    if not 0 < value <= 1:
        raise SplitError(
            "split_share_invalid", f"a share must be more than 0 and at most 1, got {raw!r}", param=param
        )
    return value


def _decimal_share(decimal: Decimal, raw: object, *, problem: str, param: str) -> Fraction:
    if not decimal.is_finite():
        raise SplitError("split_share_invalid", f"{problem}, got {raw!r}", param=param)
    exponent = decimal.as_tuple().exponent
    if not 0 < decimal <= 1 or not isinstance(exponent, int) or exponent < -MAX_SHARE_TEXT:
        # refused before building the Fraction: "1e-999999999" would be a number of a billion digits
        raise SplitError(
            "split_share_invalid", f"a share must be more than 0 and at most 1, got {raw!r}", param=param
        )
    return Fraction(decimal)


def _shares_as_weights(shares: Sequence[Fraction]) -> list[int]:
    """Integer weights proportional to exact shares (scaled to their common denominator)."""
    common = lcm(*(s.denominator for s in shares))
    return [s.numerator * (common // s.denominator) for s in shares]


def split_plan_validate(
    raw: object,
    *,
    amount: int,
    currency: str,
    vendors: Mapping[str, VendorTerms],
    policy: CommissionTerms,
) -> SplitPlan:
    """Check a split plan (the API's ``splits``) for a payment of ``amount`` minor units in
    ``currency`` and return it with each vendor's planned part and terms. ``vendors`` holds the
    terms of every vendor the plan may name (the caller loads them); a name missing from it is an
    unknown vendor. Raises SplitError naming the first problem; reads nothing else."""
    try:
        cur = normalize_currency(currency)
    except MoneyError as exc:
        raise SplitError("split_currency_invalid", str(exc), param="currency") from None
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise SplitError(
            "split_amount_invalid",
            f"the payment amount must be a positive integer, got {amount!r}",
            param="amount",
        )
    if not isinstance(raw, list | tuple) or not raw:
        raise SplitError("split_plan_invalid", "splits must be a non-empty list", param="splits")

    kind: str | None = None
    seen: dict[str, int] = {}
    entries: list[tuple[str, int | None, Fraction | None, VendorTerms]] = []
    for i, item in enumerate(raw):
        at = f"splits[{i}]"
        if not isinstance(item, Mapping):
            raise SplitError("split_plan_invalid", f"{at} must be an object", param=at)
        unknown_keys = set(item) - {"vendor", "vendor_id", "amount", "share", "currency"}
        if unknown_keys:
            raise SplitError(
                "split_plan_invalid",
                f"{at} has unknown field(s) {', '.join(sorted(map(str, unknown_keys)))}",
                param=f"{at}.{sorted(map(str, unknown_keys))[0]}",
            )
        if "vendor" in item and "vendor_id" in item:
            raise SplitError("split_plan_invalid", f"{at}: give 'vendor' or 'vendor_id', not both", param=at)
        vendor_id = item.get("vendor", item.get("vendor_id"))
        if not isinstance(vendor_id, str) or not vendor_id.strip():
            raise SplitError("split_vendor_missing", f"{at}.vendor must be a vendor id", param=f"{at}.vendor")
        has_amount, has_share = "amount" in item, "share" in item
        if has_amount == has_share:
            raise SplitError(
                "split_part_missing" if not has_amount else "split_part_ambiguous",
                f"{at} needs exactly one of 'amount' or 'share'",
                param=at,
            )
        line_kind = "amount" if has_amount else "share"
        if kind is None:
            kind = line_kind
        elif kind != line_kind:
            raise SplitError(
                "split_plan_mixed",
                f"{at} gives a {line_kind} but splits[0] gives a{'n' if kind == 'amount' else ''} {kind}: "
                "a plan uses amounts or shares, not both",
                param=f"{at}.{line_kind}",
            )
        if "currency" in item:
            try:
                line_cur = normalize_currency(item["currency"])
            except MoneyError as exc:
                raise SplitError("split_currency_invalid", str(exc), param=f"{at}.currency") from None
            if line_cur != cur:
                raise SplitError(
                    "split_currency_mismatch",
                    f"{at} is in {line_cur.lower()} but the payment is in {cur.lower()}: "
                    "every split must be in the payment's currency",
                    param=f"{at}.currency",
                )
        if vendor_id in seen:
            raise SplitError(
                "split_vendor_duplicate",
                f"vendor {vendor_id} appears twice (splits[{seen[vendor_id]}] and {at}): "
                "give each vendor one line",
                param=f"{at}.vendor",
            )
        seen[vendor_id] = i
        vendor = vendors.get(vendor_id)
        if vendor is None:
            raise SplitError(
                "vendor_unknown", f"no vendor {vendor_id} in this marketplace", param=f"{at}.vendor"
            )
        if vendor.status == DISABLED:
            raise SplitError(
                "vendor_disabled", f"vendor {vendor_id} is disabled and cannot be paid", param=f"{at}.vendor"
            )
        if vendor.currency.upper() != cur:
            raise SplitError(
                "split_currency_mismatch",
                f"vendor {vendor_id} is paid in {vendor.currency.lower()} but the payment is in "
                f"{cur.lower()}: FX is never implicit",
                param=f"{at}.vendor",
            )
        if has_amount:
            part = item["amount"]
            if isinstance(part, bool) or not isinstance(part, int):
                raise SplitError(
                    "split_amount_invalid",
                    f"{at}.amount must be an integer number of minor units, got {part!r}",
                    param=f"{at}.amount",
                )
            if part <= 0:
                raise SplitError(
                    "split_amount_invalid", f"{at}.amount must be positive, got {part}", param=f"{at}.amount"
                )
            entries.append((vendor_id, part, None, vendor))
        else:
            entries.append((vendor_id, None, parse_share(item["share"], param=f"{at}.share"), vendor))

    if kind == "amount":
        planned = [e[1] for e in entries]
        total = sum(p for p in planned if p is not None)
        if total != amount:
            raise SplitError(
                "split_total_mismatch",
                f"the split amounts add up to {format_amount(total, cur)} but the payment is "
                f"{format_amount(amount, cur)}",
                param="splits",
            )
    else:
        shares = [e[2] for e in entries if e[2] is not None]
        total_share = sum(shares, Fraction(0))
        if total_share != 1:
            raise SplitError(
                "split_total_mismatch",
                f"the split shares add up to {total_share} ({_percent(total_share)}), not 1",
                param="splits",
            )
        planned = list(allocate(amount, _shares_as_weights(shares)))

    lines: list[SplitLine] = []
    for i, ((vendor_id, line_amount, share, vendor), part) in enumerate(zip(entries, planned, strict=True)):
        at = f"splits[{i}].{kind}"
        assert part is not None
        if part == 0:
            raise SplitError(
                "split_part_zero",
                f"{at}: a share of {share} of {format_amount(amount, cur)} rounds to nothing",
                param=at,
            )
        terms = vendor.effective(policy)
        commission = commission_for(part, cur, terms)
        if commission > part:
            raise SplitError(
                "commission_exceeds_part",
                f"{at}: the commission on vendor {vendor_id}'s part ({format_bps(terms.percent_bps)} + "
                f"{format_amount(terms.fixed_for(cur), cur)} = {format_amount(commission, cur)}) is more "
                f"than the part itself ({format_amount(part, cur)})",
                param=at,
            )
        lines.append(SplitLine(vendor_id, part, terms, amount=line_amount, share=share))
    assert kind is not None
    return SplitPlan(amount=amount, currency=cur, kind=kind, lines=tuple(lines))


def _percent(value: Fraction) -> str:
    exact = value * 100
    if exact.denominator == 1:
        return f"{exact.numerator}%"
    return f"about {Decimal(exact.numerator) / Decimal(exact.denominator):.4f}%"


# --------------------------------------------------------------------------- allocation


@dataclass(frozen=True)
class VendorPart:
    """One vendor's part of a captured payment. ``net`` = ``gross`` - ``commission`` - ``fee``."""

    vendor_id: str
    gross: int
    commission: int
    fee: int  # the processor fee this vendor bears
    net: int  # what the marketplace owes the vendor (credited to vendor_payable:<vendor>)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor_id,
            "gross": self.gross,
            "commission": self.commission,
            "fee": self.fee,
            "net": self.net,
        }


@dataclass(frozen=True)
class Allocation:
    """The split of a captured amount. ``parts`` are in plan order."""

    amount: int
    currency: str
    processor_fee: int
    parts: tuple[VendorPart, ...]

    @property
    def platform_revenue(self) -> int:
        """Commission earned (credited to platform_revenue)."""
        return sum(p.commission for p in self.parts)

    @property
    def fee_borne_by_vendors(self) -> int:
        return sum(p.fee for p in self.parts)

    @property
    def fee_borne_by_platform(self) -> int:
        return self.processor_fee - self.fee_borne_by_vendors

    @property
    def platform_net(self) -> int:
        """Commission less the fee the platform bears (negative when fees outrun commission)."""
        return self.platform_revenue - self.fee_borne_by_platform

    @property
    def vendor_net(self) -> int:
        return sum(p.net for p in self.parts)

    def part_for(self, vendor_id: str) -> VendorPart:
        for part in self.parts:
            if part.vendor_id == vendor_id:
                return part
        raise KeyError(vendor_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "currency": self.currency,
            "processor_fee": self.processor_fee,
            "platform_revenue": self.platform_revenue,
            "fee_borne_by_platform": self.fee_borne_by_platform,
            "parts": [p.as_dict() for p in self.parts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Allocation:
        return cls(
            amount=data["amount"],
            currency=data["currency"],
            processor_fee=data["processor_fee"],
            parts=tuple(
                VendorPart(p["vendor"], p["gross"], p["commission"], p["fee"], p["net"])
                for p in data["parts"]
            ),
        )


def _vendor_fee(slice_: int, gross: int, commission: int, policy: FeePolicy) -> int:
    """The part of one vendor's fee slice that the vendor bears, clamped to what its part leaves."""
    kept = gross - commission
    if slice_ == 0 or kept == 0:
        return 0
    if policy == FeePolicy.PLATFORM:
        share = 0
    elif policy == FeePolicy.VENDOR:
        share = slice_
    else:  # pro rata by what each side keeps of the part; vendor first, so a tie goes to it
        share = allocate(slice_, [kept, commission])[0]
    return min(share, kept)


def split_allocate(plan: SplitPlan, *, captured: int, processor_fee: int = 0) -> Allocation:
    """Split ``captured`` minor units (at most the plan's amount; less for a partial capture) and
    the processor's ``processor_fee`` by the plan and its terms (rules in the module docstring).
    Deterministic; never fails for a vendor's later status. Raises SplitError for bad amounts."""
    if isinstance(captured, bool) or not isinstance(captured, int) or captured <= 0:
        raise SplitError(
            "split_amount_invalid",
            f"the captured amount must be a positive integer, got {captured!r}",
            param="amount",
        )
    if captured > plan.amount:
        raise SplitError(
            "split_total_mismatch",
            f"captured {format_amount(captured, plan.currency)} is more than the split plan's "
            f"{format_amount(plan.amount, plan.currency)}",
            param="amount",
        )
    if isinstance(processor_fee, bool) or not isinstance(processor_fee, int) or processor_fee < 0:
        raise SplitError(
            "split_fee_invalid",
            f"the processor fee must be a non-negative integer, got {processor_fee!r}",
            param="processor_fee",
        )
    gross = allocate(captured, plan.weights)
    commissions = [
        min(commission_for(g, plan.currency, line.terms), g)
        for g, line in zip(gross, plan.lines, strict=True)
    ]
    slices = allocate(processor_fee, gross) if processor_fee else [0] * len(gross)
    parts = []
    for line, g, c, s in zip(plan.lines, gross, commissions, slices, strict=True):
        fee = _vendor_fee(s, g, c, line.terms.fee_policy)
        parts.append(VendorPart(line.vendor_id, g, c, fee, g - c - fee))
    return Allocation(
        amount=captured, currency=plan.currency, processor_fee=processor_fee, parts=tuple(parts)
    )


# --------------------------------------------------------------------------- refunds


@dataclass(frozen=True)
class VendorRefundPart:
    """What one refund takes back for one vendor part: ``debit`` from the vendor's payable and
    ``commission`` reversed out of platform revenue; they sum to the refund's share of the part."""

    vendor_id: str
    debit: int
    commission: int

    def as_dict(self) -> dict[str, Any]:
        return {"vendor": self.vendor_id, "debit": self.debit, "commission": self.commission}


@dataclass(frozen=True)
class RefundUnwind:
    amount: int
    currency: str
    parts: tuple[VendorRefundPart, ...]

    @property
    def commission_reversed(self) -> int:
        return sum(p.commission for p in self.parts)

    @property
    def vendor_debits(self) -> int:
        return sum(p.debit for p in self.parts)

    def as_dict(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency, "parts": [p.as_dict() for p in self.parts]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RefundUnwind:
        return cls(
            amount=data["amount"],
            currency=data["currency"],
            parts=tuple(VendorRefundPart(p["vendor"], p["debit"], p["commission"]) for p in data["parts"]),
        )


def vendor_owed(allocation: Allocation, vendor_id: str, *, previous: Sequence[RefundUnwind] = ()) -> int:
    """What the vendor's part still owes it after the ``previous`` refunds took their debits: its
    net less those debits (negative when a refund took more than the net, e.g. the fee it bore)."""
    debited = sum(p.debit for unwind in previous for p in unwind.parts if p.vendor_id == vendor_id)
    return allocation.part_for(vendor_id).net - debited


def split_refund_unwind(
    allocation: Allocation, *, amount: int, previous: Sequence[RefundUnwind] = ()
) -> RefundUnwind:
    """Unwind a refund of ``amount`` against ``allocation``, after the ``previous`` unwinds of the
    same allocation (rules in the module docstring). Raises SplitError when ``amount`` is not
    positive or exceeds what is left to refund."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise SplitError(
            "refund_amount_invalid",
            f"the refund amount must be a positive integer, got {amount!r}",
            param="amount",
        )
    originals: list[int] = []
    for part in allocation.parts:
        originals += [part.gross - part.commission, part.commission]
    remaining = list(originals)
    for earlier in previous:
        if earlier.currency != allocation.currency or len(earlier.parts) != len(allocation.parts):
            raise SplitError(
                "refund_history_invalid",
                "an earlier refund does not belong to this allocation",
                param="previous",
            )
        for i, (part, back) in enumerate(zip(allocation.parts, earlier.parts, strict=True)):
            if back.vendor_id != part.vendor_id:
                raise SplitError(
                    "refund_history_invalid",
                    "an earlier refund does not belong to this allocation",
                    param="previous",
                )
            remaining[2 * i] -= back.debit
            remaining[2 * i + 1] -= back.commission
    if any(r < 0 for r in remaining):
        raise SplitError("refund_history_invalid", "earlier refunds exceed the allocation", param="previous")
    left = sum(remaining)
    if amount > left:
        raise SplitError(
            "refund_exceeds_remaining",
            f"refund of {format_amount(amount, allocation.currency)} is more than the "
            f"{format_amount(left, allocation.currency)} left to refund",
            param="amount",
        )
    taken = allocate(amount, remaining)
    parts = tuple(
        VendorRefundPart(part.vendor_id, taken[2 * i], taken[2 * i + 1])
        for i, part in enumerate(allocation.parts)
    )
    return RefundUnwind(amount=amount, currency=allocation.currency, parts=parts)


# --------------------------------------------------------------------------- capture postings


def allocation_postings(allocation: Allocation) -> list[dict[str, Any]]:
    """The capture's allocations for the ledger (rules in the module docstring, section 2): each
    vendor's net to ``vendor_pending:<vendor>``, the commission to ``platform_revenue``, the fee
    the vendors bear back to ``processor_fees``; zero lines left out. They sum to the amount."""
    out: list[dict[str, Any]] = [
        {"account": f"vendor_pending:{p.vendor_id}", "amount": p.net} for p in allocation.parts if p.net
    ]
    if allocation.platform_revenue:
        out.append({"account": "platform_revenue", "amount": allocation.platform_revenue})
    if allocation.fee_borne_by_vendors:
        out.append({"account": "processor_fees", "amount": allocation.fee_borne_by_vendors})
    return out


# --------------------------------------------------------------------------- disputes


@dataclass(frozen=True)
class VendorDisputePart:
    """What a dispute takes for one vendor part: ``debit`` from the vendor's available balance
    and ``commission`` out of platform revenue; they sum to the dispute's share of the part."""

    vendor_id: str
    debit: int
    commission: int


@dataclass(frozen=True)
class DisputeSplit:
    amount: int
    currency: str
    parts: tuple[VendorDisputePart, ...]

    @property
    def commission(self) -> int:
        return sum(p.commission for p in self.parts)


def split_dispute(allocation: Allocation, *, amount: int) -> DisputeSplit:
    """Split a dispute of ``amount`` on a captured split payment between its vendors and the
    platform's commission (rules in the module docstring, section 4). Raises SplitError when
    ``amount`` is not a positive integer."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise SplitError(
            "dispute_amount_invalid",
            f"the disputed amount must be a positive integer, got {amount!r}",
            param="amount",
        )
    shares = allocate(amount, [p.gross for p in allocation.parts])
    parts = []
    for part, share in zip(allocation.parts, shares, strict=True):
        debit, commission = (
            allocate(share, [part.gross - part.commission, part.commission]) if part.gross else [share, 0]
        )
        parts.append(VendorDisputePart(part.vendor_id, debit, commission))
    return DisputeSplit(amount=amount, currency=allocation.currency, parts=tuple(parts))


# --------------------------------------------------------------------------- connected accounts


def kept_back(amount: int, *, available: int) -> int:
    """What is kept back from a transfer of ``amount`` to cover the vendor's debts: its negative
    ``available`` balance (earlier refunds, disputes), at most the whole transfer (section 5)."""
    return min(amount, max(0, -available))


def reclaimable(debit: int, *, in_account: int, available: int) -> int:
    """How much of a vendor's ``debit`` is taken back from its connected account: at most what
    is still there of the transfer (``in_account``) and at most the vendor's ``available``
    balance; never negative (section 5)."""
    return max(0, min(debit, in_account, max(0, available)))
