"""One writer process for test_concurrency: ``python -m tests.ledger.concurrent_poster <schema> <seed> <n>``.

Reads DATABASE_URL / REDIS_URL from the environment like any process of ours. Prints ``ready``,
waits for a line on stdin (so all writers start together), makes ``n`` random postings between
a few hot accounts, and prints one JSON line: the net it moved per account (successful postings
only), how many payouts were refused, and which shared idempotency keys it created."""

from __future__ import annotations

import json
import os
import random
import sys
from collections import defaultdict
from typing import Any

HOT_STREAM = "hot"
SHARED_KEYS = 20
VENDOR = "vendor_payable:v1"
CLEARING = "processor_clearing:sim"


def shared_payload(k: int) -> dict:
    return {"debit": "suspense", "credit": "platform_revenue", "amount": k + 1, "currency": "USD"}


def main(schema: str, seed: int, n: int) -> dict:
    from django_tenants.utils import tenant_context

    from apps.ledger import services
    from apps.ledger.errors import ConcurrencyError, InsufficientFunds
    from apps.tenants.models import Marketplace

    rng = random.Random(seed)
    moved: dict[str, int] = defaultdict(int)  # "code|currency" -> net
    report: dict[str, Any] = {"refused": 0, "gave_up": 0, "posted": 0, "shared_created": [], "hot": 0}
    tenant = Marketplace.objects.get(schema_name=schema)
    with tenant_context(tenant):
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(n):
            roll = rng.random()
            currency = rng.choice(["USD", "USD", "EUR"])
            stream = f"w{seed}-{i}"
            if roll < 0.35:  # a charge credits the vendor
                debit, credit, amount = CLEARING, VENDOR, rng.randint(1, 1000)
            elif roll < 0.65:  # a payout debits it and may be refused
                debit, credit, amount = VENDOR, CLEARING, rng.randint(1, 1500)
            elif roll < 0.75:  # commission
                debit, credit, amount = VENDOR, "platform_revenue", rng.randint(1, 200)
            elif roll < 0.85:  # many writers on one stream: versions must stay unique and gapless
                debit, credit, amount, stream = CLEARING, "suspense", rng.randint(1, 100), HOT_STREAM
            else:  # everybody re-posts the same few keys
                k = rng.randrange(SHARED_KEYS)
                recorded = services.ledger_record(
                    event_type="Transfer",
                    stream=f"shared_{k}",
                    payload=shared_payload(k),
                    idempotency_key=f"shared-{k}",
                )
                if recorded.created:
                    report["shared_created"].append(k)
                    moved["suspense|USD"] += k + 1
                    moved["platform_revenue|USD"] -= k + 1
                continue
            try:
                services.ledger_record(
                    event_type="Transfer",
                    stream=stream,
                    payload={"debit": debit, "credit": credit, "amount": amount, "currency": currency},
                    idempotency_key=f"w{seed}-{i}",
                )
            except InsufficientFunds:
                report["refused"] += 1
                continue
            except ConcurrencyError:  # the hot stream kept moving through every retry
                report["gave_up"] += 1
                continue
            report["posted"] += 1
            report["hot"] += stream == HOT_STREAM
            moved[f"{debit}|{currency}"] += amount
            moved[f"{credit}|{currency}"] -= amount
    return {**report, "moved": dict(moved)}


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))), flush=True)
