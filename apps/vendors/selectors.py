"""Reading vendors and commission terms."""

from __future__ import annotations

from collections.abc import Iterable

from apps.vendors.models import CommissionPolicy, Vendor
from apps.vendors.splits import CommissionTerms, VendorTerms


def commission_policy_terms() -> CommissionTerms:
    """The marketplace's default terms (the provisioned policy; 10%, no fixed fee, platform bears
    fees if none was provisioned)."""
    policy = CommissionPolicy.objects.filter(singleton=True).first() or CommissionPolicy()
    return policy.terms()


def vendor_split_terms(vendor_ids: Iterable[str]) -> dict[str, VendorTerms]:
    """The split terms of the vendors among ``vendor_ids`` that exist (one query); pass the
    result to ``splits.split_plan_validate``, which reports the missing ones."""
    ids = {v for v in vendor_ids if isinstance(v, str)}
    return {v.id: v.split_terms() for v in Vendor.objects.filter(id__in=ids)}
