"""Connect news applied to vendors: the handlers ``VendorsConfig.ready`` registers with the
payments app's news (``apps.payments.news.news_handler_register``), so payments applies a
processor's Connect notifications without importing this app.

- ``AccountNews``: the vendor with that connected account gets its status, flags and requirements
  (``vendor_account_apply``: held transfers are released once it can be paid, and
  ``vendor.updated`` is announced).
- ``PayoutNews``: our payout is settled (a failed one's money returns to the vendor's available
  balance).
"""

from __future__ import annotations

from apps.payments.gateways.base import AccountNews, PayoutNews
from apps.payments.news import NewsSource
from apps.vendors.funds import payout_settle
from apps.vendors.models import Payout, Vendor
from apps.vendors.services import vendor_account_apply


def account_news_apply(news: AccountNews, source: NewsSource) -> str:
    account_id = news.account.id
    vendor = Vendor.objects.filter(stripe_account_id=account_id).first()
    if vendor is None:
        return f"ignored: account {account_id} is not one of our vendors"
    before = vendor.status
    vendor = vendor_account_apply(vendor=vendor, account=news.account)
    return f"vendor {vendor.id}: {before} -> {vendor.status}"


def payout_news_apply(news: PayoutNews, source: NewsSource) -> str:
    payout = Payout.objects.filter(stripe_payout_id=news.reference).select_related("vendor").first()
    if payout is None or (
        news.connected_account and payout.vendor.stripe_account_id != news.connected_account
    ):
        return f"ignored: payout {news.reference} is not one of ours"
    return f"payout {payout.id}: " + payout_settle(payout_id=payout.id, paid=news.paid, message=news.message)
