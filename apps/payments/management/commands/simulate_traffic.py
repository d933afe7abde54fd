"""``python manage.py simulate_traffic --tenant demo --payments N [--concurrency C]
[--outage GATEWAY:FRACTION] [--seed S] [--json] [--keep]``

Runs in a scratch marketplace (``apps.tenants.scratch``: ``sim_traffic_<hex>``) configured like
``--tenant``'s (its gateway accounts, routing and decline rules), never in that marketplace itself:
its books, gateway settings and webhook endpoints are untouched. The scratch one is named at the
start and in the report, and dropped afterwards unless ``--keep``.

Drives payments through the same service path the API uses, against the simulator
gateways ``primary`` and ``secondary``, with a realistic mix of Stripe test cards, paid with a mix
of methods (``apps/payments/simulation.py``): one-off test tokens, and methods of ours saved at
``primary`` only, at both, or at ``primary`` with ``secondary`` reachable only through a vault.
``--outage primary:0.5`` takes that gateway down for the middle half of the run. Afterwards
unknown outcomes are resolved, the ledger is sealed and verified, the simulator's own charge
records are counted per payment (never more than one), and the failovers are counted from the
payments' stored rows (``apps/payments/failovers.py``): direct, through the vault, or impossible
(no other gateway could charge the method)."""

from __future__ import annotations

import json
import random
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django_tenants.utils import tenant_context
from tqdm import tqdm

from apps.customers.services import customer_create
from apps.ledger.integrity import ledger_seal, ledger_verify
from apps.payments.failovers import failovers_count
from apps.payments.models import PaymentAttempt, PaymentIntent, SimulatorCharge
from apps.payments.selectors import payment_rounds
from apps.payments.services import gateway_account_update, payment_attempt_resolve, payment_intent_create
from apps.payments.simulation import (
    GATEWAYS,
    METHOD_MIX,
    ONE_OFF,
    simulation_accounts,
    simulation_method,
    without_vault,
)
from apps.tenants.cli import marketplace_named, scratch_simulation

# (payment method, weight): mostly good cards, some foreign, soft and hard declines, 3-D Secure,
# and the simulator's faults.
CARD_MIX = [
    ("pm_card_visa", 46),
    ("pm_card_mastercard", 18),
    ("pm_card_amex", 6),
    ("pm_card_visa_debit", 5),
    ("pm_card_gb", 3),
    ("pm_card_de", 3),
    ("pm_card_br", 3),
    ("pm_card_jp", 2),
    ("pm_card_chargeDeclinedInsufficientFunds", 3),
    ("pm_card_chargeDeclined", 2),
    ("pm_card_chargeDeclinedProcessingError", 1),
    ("pm_card_chargeDeclinedLostCard", 1),
    ("pm_card_chargeDeclinedExpiredCard", 1),
    ("pm_card_chargeDeclinedIncorrectCvc", 1),
    ("pm_card_authenticationRequired", 2),
    ("pm_sim_timeout_after_charge", 2),
    ("pm_sim_gateway_error", 1),
]
AMOUNTS = [499, 1000, 1999, 2500, 4999, 12000, 35000]


class Command(BaseCommand):
    help = "Drive simulated payments through the mesh and report what happened."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--payments", type=int, required=True)
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument("--outage", help="GATEWAY:FRACTION, e.g. primary:0.5")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--keep", action="store_true", help="keep the scratch marketplace afterwards")

    def handle(self, *args, **opts):
        like = marketplace_named(opts["tenant"])
        n, concurrency = opts["payments"], opts["concurrency"]
        if n < 1:
            raise CommandError("--payments must be at least 1")
        if not 1 <= concurrency <= 64:
            raise CommandError("--concurrency must be between 1 and 64")
        outage = self._parse_outage(opts["outage"])
        quiet = opts["json"]
        note = (sys.stderr if quiet else self.stdout).write
        report, kept = scratch_simulation(
            like=like,
            purpose="sim-traffic",
            keep=opts["keep"],
            note=lambda line: note(line + "\n"),
            run=lambda tenant: self._run(tenant, like, n, concurrency, outage, opts["seed"], quiet=quiet),
        )
        if opts["json"]:
            self.stdout.write(json.dumps(report))
        else:
            for key, value in report.items():
                if isinstance(value, dict):  # e.g. failovers: "direct 86, vault 36, impossible 20"
                    value = ", ".join(f"{k} {v}" for k, v in value.items())
                self.stdout.write(f"{key:<24} {value}")
        if kept:
            note(kept + "\n")
        if not report["ledger_verified"] or report["max_charges_per_intent"] > 1:
            raise CommandError("the run broke an invariant (see above)")

    @staticmethod
    def _parse_outage(raw: str | None) -> tuple[str, float] | None:
        if not raw:
            return None
        name, sep, fraction = raw.partition(":")
        try:
            value = float(fraction)
        except ValueError:
            value = -1
        if not sep or name not in GATEWAYS or not 0 < value <= 1:
            raise CommandError(
                f"--outage must be GATEWAY:FRACTION with GATEWAY in {GATEWAYS} and 0 < FRACTION <= 1, "
                f"got {raw!r}"
            )
        return name, value

    def _run(self, tenant, like, n, concurrency, outage, seed, *, quiet) -> dict:
        """The run, in ``tenant`` (the scratch marketplace) configured like ``like``."""
        accounts = simulation_accounts(like=like.schema_name)
        original = {name: dict(a.settings) for name, a in accounts.items()}
        running = {name: without_vault(cfg) for name, cfg in original.items()}
        rng = random.Random(seed)  # a reproducible traffic mix, not security
        methods = rng.choices([m for m, _ in CARD_MIX], weights=[w for _, w in CARD_MIX], k=n)
        amounts = rng.choices(AMOUNTS, k=n)
        kinds = rng.choices([k for k, _ in METHOD_MIX], weights=[w for _, w in METHOD_MIX], k=n)
        outage_range = None
        if outage:
            span = int(n * outage[1])
            start = (n - span) // 2
            outage_range = (start, start + span)

        latencies: list[float] = [0.0] * n
        intent_ids: list[str] = [""] * n
        lock = threading.Lock()
        next_index = iter(range(n))
        state = {"down": False}
        bar = tqdm(total=n, desc="payments", file=sys.stderr, disable=quiet, mininterval=0.5)

        def set_outage(index: int) -> None:
            if not outage_range:
                return
            want = outage_range[0] <= index < outage_range[1]
            with lock:
                if want != state["down"]:
                    state["down"] = want
                    settings = {**running[outage[0]], "down": True} if want else running[outage[0]]
                    gateway_account_update(name=outage[0], settings=settings)

        def worker() -> None:
            with tenant_context(tenant):
                try:
                    while True:
                        with lock:
                            i = next(next_index, None)
                        if i is None:
                            return
                        set_outage(i)
                        t0 = time.perf_counter()
                        intent = payment_intent_create(
                            amount=amounts[i],
                            currency="usd",
                            payment_method=pay_with[i],
                            customer_id=customer_ids[i],
                            confirm=True,
                            metadata={"simulation": seed, "index": i, "method": kinds[i]},
                        )
                        latencies[i] = (time.perf_counter() - t0) * 1000
                        intent_ids[i] = intent.id
                        bar.update(1)
                        # Back to the pool after each payment, as a request does: more threads than
                        # DATABASE_POOL_MAX_SIZE take turns instead of waiting for a whole run.
                        connection.close()
                finally:
                    connection.close()

        started = time.perf_counter()
        try:
            for name, cfg in running.items():
                if cfg != original[name]:
                    gateway_account_update(name=name, settings=cfg)
            pay_with, customer_ids = self._methods_save(seed, methods, kinds)
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                for future in [pool.submit(worker) for _ in range(concurrency)]:
                    future.result()
        finally:
            for name, cfg in original.items():
                gateway_account_update(name=name, settings=cfg)
            bar.close()
        elapsed = time.perf_counter() - started

        # Unknown outcomes: resolve them now (in production a worker does this).
        unknown = list(
            PaymentAttempt.objects.filter(intent_id__in=intent_ids, status="unknown").values_list(
                "id", flat=True
            )
        )
        for attempt_id in unknown:
            payment_attempt_resolve(attempt_id=attempt_id)

        intents = {
            p.id: p for p in PaymentIntent.objects.filter(pk__in=intent_ids).select_related("gateway_account")
        }
        statuses = Counter(p.status for p in intents.values())
        declined = sum(
            1 for p in intents.values() if p.status == "failed" and p.last_error.get("type") == "card_error"
        )
        attempts = Counter(
            PaymentAttempt.objects.filter(intent_id__in=intent_ids).values_list("intent_id", flat=True)
        )
        failed_over = sum(1 for pid, c in attempts.items() if c > 1 and intents[pid].status == "succeeded")
        charges = Counter(
            attempt_id.rsplit("_", 1)[0]
            for attempt_id in SimulatorCharge.objects.filter(
                attempt_id__in=PaymentAttempt.objects.filter(intent_id__in=intent_ids).values("id")
            )
            .exclude(status="canceled")
            .values_list("attempt_id", flat=True)
        )
        failovers = failovers_count(payment_rounds(payment_ids=intent_ids).values(), order=GATEWAYS)
        ledger_seal()
        verified = ledger_verify()
        q = statistics.quantiles(latencies, n=100) if n >= 2 else [latencies[0]] * 99
        return {
            "payments": n,
            "succeeded": statuses.get("succeeded", 0),
            "failed": statuses.get("failed", 0) - declined,
            "declined": declined,
            "requires_action": statuses.get("requires_action", 0),
            "processing": statuses.get("processing", 0),
            "failed_over": failed_over,
            "methods": {kind: kinds.count(kind) for kind, _ in METHOD_MIX},
            "failovers": failovers,
            "unknown_resolved": len(unknown),
            "max_charges_per_intent": max(charges.values(), default=0),
            "ledger_verified": verified.ok,
            "p50_ms": round(q[49], 1),
            "p99_ms": round(q[98], 1),
            "payments_per_second": round(n / elapsed, 1),
            "by_gateway": dict(
                Counter(p.gateway_account.name for p in intents.values() if p.gateway_account)
            ),
            "concurrency": concurrency,
            "outage": f"{outage[0]}:{outage[1]}" if outage else None,
            "seed": seed,
        }

    @staticmethod
    def _methods_save(seed: int, tokens: list[str], kinds: list[str]) -> tuple[list[str], list[str]]:
        """What each payment is paid with, saved before the run (while every gateway is up):
        its test token (one-off), or a method of ours saved from it for a customer of its own."""
        pay_with, customer_ids = list(tokens), [""] * len(tokens)
        for i, kind in enumerate(kinds):
            if kind == ONE_OFF:
                continue
            customer = customer_create(name=f"simulate_traffic {seed} #{i}", metadata={"simulation": seed})
            pay_with[i] = simulation_method(kind, token=tokens[i], customer=customer)
            customer_ids[i] = customer.pk
        return pay_with, customer_ids
