"""``python manage.py simulate_subscriptions --tenant demo --customers N --months M [--seed S] [--json]
[--keep]``

Runs in a scratch marketplace (``apps.tenants.scratch``: ``sim_subscriptions_<hex>``) configured
like ``--tenant``'s (its gateway accounts, routing and decline rules, dunning policy), never in that
marketplace itself: its books, gateway settings and webhook endpoints are untouched. The scratch
one is named at the start and in the report, and dropped afterwards unless ``--keep``.

Months of renewals and dunning through the real path (billing services -> payment mesh ->
simulator gateways -> ledger), on a simulated clock passed to the billing services (the system
clock is not touched), twice on the same seed:

1. **cross-gateway**: the marketplace's routing (``primary`` then ``secondary``): the mesh fails
   over within a charge and every retry is routed afresh;
2. **same-gateway only**: every charge and retry at ``primary`` alone.

The decline mix comes from the simulator's existing settings and Stripe test cards:
``primary`` is a domestic acquirer (``allowed_card_countries`` US/CA: foreign cards get a soft
``transaction_not_allowed``) with a 10% generic soft-decline rate; ``secondary`` takes every card,
declines 4% generically, and has seeded outage days (``down``). Customers' cards are mostly good;
some are foreign, some run out of funds (``insufficient_funds`` + ``try_again_later``: their funds
come back after a seeded number of days), some are lost/expired (``do_not_try_again``: a seeded
share gives a new card after the dunning email), some always decline generically.

Customers pay with a mix of methods (``apps/payments/simulation.py``): one-off test tokens, and
cards saved (before the run, while every gateway is up) at ``primary`` only, at both, or at
``primary`` with ``secondary`` reachable only through a vault. The report counts, from the stored
rows (``apps/payments/failovers.py``, ``apps.billing.selectors.recovery_routes``), the failovers
of each invoice's latest collection round and the dunning recoveries: direct, through the vault,
at the same gateway, or impossible (no other gateway could charge the method).

Each pass creates its own customers, product, price, tax rates and vendor named with a
run-specific prefix; the gateways' settings and routing rules are restored afterwards (a kept
scratch marketplace is configured as it started). The ledger is sealed and verified at the end.
"""

from __future__ import annotations

import json
import random
import secrets
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dateutil.relativedelta import relativedelta
from django.core.management.base import BaseCommand, CommandError

from apps.billing.collection import billing_run
from apps.billing.models import Invoice, InvoiceAttempt, Subscription
from apps.billing.selectors import failed_first_try_rows, recovery_routes
from apps.billing.services import (
    price_create,
    product_create,
    subscription_create,
    subscription_payment_method_update,
    tax_rate_create,
)
from apps.customers.services import customer_create
from apps.ledger.integrity import ledger_seal, ledger_verify
from apps.payments.breaker import CircuitBreaker
from apps.payments.config import mesh_config_changed
from apps.payments.failovers import failovers_count
from apps.payments.models import GatewayAccount, PaymentAttempt, RoutingRule, SimulatorCharge
from apps.payments.selectors import payment_rounds
from apps.payments.simulation import GATEWAYS, METHOD_MIX, simulation_accounts, simulation_method
from apps.tenants.cli import marketplace_named, scratch_simulation
from apps.vendors.services import vendor_create

# (card, weight, country, behaviour): behaviour "funds" = insufficient funds until funds return,
# "replace" = the card is dead (a share of customers give a new one), "never" = always declines.
CARD_MIX = [
    ("pm_card_visa", 58, "US", ""),
    ("pm_card_mastercard", 12, "US", ""),
    ("pm_card_ca", 4, "CA", ""),
    ("pm_card_gb", 5, "GB", ""),
    ("pm_card_de", 5, "DE", ""),
    ("pm_card_fr", 3, "FR", ""),
    ("pm_card_chargeDeclinedInsufficientFunds", 6, "US", "funds"),
    ("pm_card_chargeDeclinedExpiredCard", 2, "US", "replace"),
    ("pm_card_visa_chargeDeclinedLostCard", 2, "US", "replace"),
    ("pm_card_chargeDeclined", 3, "US", "never"),
]
CURRENCY = {"US": "USD", "CA": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR"}
AMOUNTS = {"USD": 1500, "EUR": 1400, "GBP": 1200}
PRIMARY = {"latency_ms": {"p50": 0}, "allowed_card_countries": ["US", "CA"], "decline_rate": 0.10}
SECONDARY = {"latency_ms": {"p50": 0}, "decline_rate": 0.04}
OUTAGE_DAY_SHARE = 0.12


@dataclass
class Customer:
    card: str
    country: str
    behaviour: str
    start_day: int
    fix_after_days: int | None  # funds back / new card, counted from the first failure
    customer_id: str = ""
    method: str = ""  # what the subscription pays with: the card, or a method of ours saved from it
    new_method: str = ""  # what it pays with once fixed
    sub_id: str = ""
    fixed: bool = False
    failed_at_day: int | None = None


@dataclass
class PassResult:
    invoices: int = 0
    paid: int = 0
    failed_first_try: int = 0
    recovered: int = 0
    cross_gateway_recovered: int = 0
    open_invoices: int = 0
    uncollectible: int = 0
    double_charged_periods: int = 0
    attempts: int = 0
    collected: dict = field(default_factory=dict)
    recovered_amount: dict = field(default_factory=dict)
    subscriptions: Counter = field(default_factory=Counter)
    methods: dict = field(default_factory=dict)
    failovers: dict = field(default_factory=dict)
    recoveries: dict = field(default_factory=dict)


def _customers(rng: random.Random, n: int) -> list[Customer]:
    out = []
    for _ in range(n):
        card, _, country, behaviour = rng.choices(CARD_MIX, weights=[w for _, w, _, _ in CARD_MIX])[0]
        fix = None
        if behaviour == "funds" and rng.random() < 0.8:
            fix = rng.randint(1, 12)
        elif behaviour == "replace" and rng.random() < 0.5:
            fix = rng.randint(1, 6)
        out.append(Customer(card, country, behaviour, start_day=rng.randrange(28), fix_after_days=fix))
    return out


def _counts(counts: dict) -> str:
    """``{"direct": 3, "vault": 1}`` as ``direct 3, vault 1``."""
    return ", ".join(f"{k} {v}" for k, v in counts.items())


class Command(BaseCommand):
    help = "Simulate months of subscription renewals and dunning through the payment mesh."
    _order: list[str]  # the pass's routing order (``_configure``), which failovers are counted against

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--customers", type=int, required=True)
        parser.add_argument("--months", type=int, required=True)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--keep", action="store_true", help="keep the scratch marketplace afterwards")

    def handle(self, *args, **opts):
        like = marketplace_named(opts["tenant"])
        n, months = opts["customers"], opts["months"]
        if not 1 <= n <= 100_000:
            raise CommandError("--customers must be from 1 to 100000")
        if not 1 <= months <= 120:
            raise CommandError("--months must be from 1 to 120")
        quiet = opts["json"]
        note = (sys.stderr if quiet else self.stdout).write
        report, kept = scratch_simulation(
            like=like,
            purpose="sim-subscriptions",
            keep=opts["keep"],
            note=lambda line: note(line + "\n"),
            run=lambda _tenant: self._run(like, n, months, opts["seed"]),
        )
        if opts["json"]:
            self.stdout.write(json.dumps(report))
        else:
            self._print(report)
        if kept:
            note(kept + "\n")
        if not report["ledger_verified"] or report["double_charged_periods"]:
            raise CommandError("the run broke an invariant (see above)")

    def _progress(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    # ------------------------------------------------------------------ set-up and restore

    def _run(self, like, n: int, months: int, seed: int) -> dict:
        accounts = simulation_accounts(like=like.schema_name)
        saved_settings = {name: dict(a.settings) for name, a in accounts.items()}
        saved_rules = {r.pk: (list(r.candidates), r.mode) for r in RoutingRule.objects.all()}
        run_id = secrets.token_hex(3)
        started = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
        results: dict[str, PassResult] = {}
        try:
            for mode in ("cross", "same"):
                self._configure(mode)
                results[mode] = self._pass(mode, run_id, n, months, seed, started)
        finally:
            for name, settings in saved_settings.items():
                GatewayAccount.objects.filter(name=name).update(settings=settings)
            for pk, (candidates, rule_mode) in saved_rules.items():
                RoutingRule.objects.filter(pk=pk).update(candidates=candidates, mode=rule_mode)
            mesh_config_changed()
            for name in GATEWAYS:
                CircuitBreaker(name).reset()
        ledger_seal()
        verified = ledger_verify()
        cross, same = results["cross"], results["same"]
        saved = {
            cur: cross.collected.get(cur, 0) - same.collected.get(cur, 0)
            for cur in sorted(set(cross.collected) | set(same.collected))
        }
        rate = f"{cross.recovered / cross.failed_first_try:.4f}" if cross.failed_first_try else "0.0000"
        same_rate = f"{same.recovered / same.failed_first_try:.4f}" if same.failed_first_try else "0.0000"
        return {
            "run": run_id,
            "seed": seed,
            "customers": n,
            "months": months,
            "invoices": cross.invoices,
            "paid": cross.paid,
            "failed_first_try": cross.failed_first_try,
            "recovered": cross.recovered,
            "recovery_rate": rate,
            "cross_gateway_recovered": cross.cross_gateway_recovered,
            "methods": cross.methods,
            "failovers": cross.failovers,
            "recoveries": cross.recoveries,
            "recovered_amount": cross.recovered_amount,
            "collected": cross.collected,
            "attempts": cross.attempts,
            "open_invoices": cross.open_invoices,
            "uncollectible_invoices": cross.uncollectible,
            "subscriptions": dict(cross.subscriptions),
            "same_gateway_only": {
                "invoices": same.invoices,
                "paid": same.paid,
                "failed_first_try": same.failed_first_try,
                "recovered": same.recovered,
                "recovery_rate": same_rate,
                "recoveries": same.recoveries,
                "collected": same.collected,
                "open_invoices": same.open_invoices,
                "uncollectible_invoices": same.uncollectible,
                "subscriptions": dict(same.subscriptions),
            },
            "revenue_saved_by_cross_gateway": saved,
            "paid_invoices_saved_by_cross_gateway": cross.paid - same.paid,
            "double_charged_periods": cross.double_charged_periods + same.double_charged_periods,
            "ledger_verified": verified.ok,
            "ledger_problems": verified.problems[:3],
        }

    def _configure(self, mode: str) -> None:
        GatewayAccount.objects.filter(name="primary").update(settings=PRIMARY)
        GatewayAccount.objects.filter(name="secondary").update(settings=SECONDARY)
        candidates = (
            [{"gateway": "primary"}] if mode == "same" else [{"gateway": "primary"}, {"gateway": "secondary"}]
        )
        RoutingRule.objects.update(candidates=candidates, mode=RoutingRule.Mode.ORDERED)
        self._order = [c["gateway"] for c in candidates]  # what a failover is counted against
        mesh_config_changed()
        for name in GATEWAYS:
            CircuitBreaker(name).reset()

    def _secondary_down(self, down: bool) -> None:
        GatewayAccount.objects.filter(name="secondary").update(settings={**SECONDARY, "down": down})
        mesh_config_changed()
        CircuitBreaker("secondary").reset()

    # ------------------------------------------------------------------ one pass

    def _pass(self, mode: str, run_id: str, n: int, months: int, seed: int, t0: datetime) -> PassResult:
        label = "cross-gateway" if mode == "cross" else "same-gateway only"
        rng = random.Random(seed)  # the same customers and outage days in both passes
        people = _customers(rng, n)
        days = (t0 + relativedelta(months=months) - t0).days
        outage_days = {d for d in range(days) if rng.random() < OUTAGE_DAY_SHARE}
        kinds = rng.choices([k for k, _ in METHOD_MIX], weights=[w for _, w in METHOD_MIX], k=n)
        prefix = f"sim-{run_id}-{mode}"
        product = product_create(name=f"{prefix} plan")
        price = price_create(product_id=product.id, amounts=AMOUNTS, interval="month", nickname=prefix)
        jurisdiction = f"S{run_id}{mode[0].upper()}"  # this pass's own tax rates
        tax_rate_create(display_name="Sales tax", jurisdiction=f"{jurisdiction}-US", percentage="7.25")
        tax_rate_create(
            display_name="VAT", jurisdiction=f"{jurisdiction}-DE", percentage="19", inclusive=True
        )
        vendors = {  # a vendor is paid in one currency (FX is never implicit)
            cur: vendor_create(
                email=f"{prefix}-{cur.lower()}@vendor.invalid",
                name=f"{prefix} vendor {cur}",
                country="US",
                default_currency=cur.lower(),
            ).id
            for cur in AMOUNTS
        }
        # Cards are saved before the run, while every gateway is up (a save at a gateway that is
        # down fails); the card a customer fixes theirs with is saved the same way.
        for index, (person, kind) in enumerate(zip(people, kinds, strict=True)):
            customer = customer_create(name=f"{prefix} {index}")
            person.customer_id = customer.id
            person.method = simulation_method(kind, token=person.card, customer=customer)
            if person.fix_after_days is not None:
                person.new_method = simulation_method(kind, token="pm_card_visa", customer=customer)
        sub_ids: list[str] = []
        secondary_down = False
        for day in range(days):
            now = t0 + timedelta(days=day)
            want_down = day in outage_days
            if want_down != secondary_down:
                self._secondary_down(want_down)
                secondary_down = want_down
            for person in people:
                if person.start_day == day:
                    tax = {"US": f"{jurisdiction}-US", "DE": f"{jurisdiction}-DE"}.get(person.country, "")
                    sub = subscription_create(
                        customer_id=person.customer_id,
                        price_id=price.id,
                        currency=CURRENCY[person.country],
                        payment_method=person.method,
                        vendor_id=vendors[CURRENCY[person.country]],
                        tax_jurisdiction=tax,
                        metadata={"simulator_key": f"{seed}:{len(sub_ids)}"},
                        now=now,
                    )
                    person.sub_id = sub.id
                    sub_ids.append(sub.id)
                elif person.sub_id and person.fix_after_days is not None and not person.fixed:
                    if person.failed_at_day is None:
                        if Invoice.objects.filter(
                            subscription_id=person.sub_id, attempts__status="failed"
                        ).exists():
                            person.failed_at_day = day
                    elif day - person.failed_at_day >= person.fix_after_days:
                        # funds came back (the next retry finds them) or a new card (retried at once)
                        subscription_payment_method_update(
                            subscription_id=person.sub_id,
                            payment_method=person.new_method,
                            now=now,
                            retry_now=person.behaviour == "replace",
                        )
                        person.fixed = True
            billing_run(now=now)
            if (day + 1) % 30 == 0 or day == days - 1:
                partial = self._measure(sub_ids)
                self._progress(
                    f"{label}: day {day + 1}/{days}: {partial.invoices} invoices, {partial.paid} paid, "
                    f"{partial.failed_first_try} failed first try, {partial.recovered} recovered, "
                    f"{partial.open_invoices} open"
                )
        if secondary_down:
            self._secondary_down(False)
        out = self._measure(sub_ids)
        out.methods = {kind: kinds.count(kind) for kind, _ in METHOD_MIX}
        return out

    def _measure(self, sub_ids: list[str]) -> PassResult:
        out = PassResult()
        invoices = list(
            Invoice.objects.filter(subscription_id__in=sub_ids).values(
                "id", "status", "currency", "amount_paid", "payment_id"
            )
        )
        out.invoices = len(invoices)
        collected: dict[str, int] = defaultdict(int)
        for inv in invoices:
            if inv["status"] == "paid":
                out.paid += 1
                collected[inv["currency"].lower()] += inv["amount_paid"]
            elif inv["status"] == "open":
                out.open_invoices += 1
            elif inv["status"] == "uncollectible":
                out.uncollectible += 1
        out.collected = dict(sorted(collected.items()))
        rows = failed_first_try_rows(invoice_ids=[i["id"] for i in invoices])
        out.failed_first_try = len(rows)
        out.recovered = sum(1 for r in rows if r["recovered"])
        out.cross_gateway_recovered = sum(r["cross_gateway"] for r in rows)
        recovered_amount: dict[str, int] = defaultdict(int)
        for r in rows:
            if r["recovered"]:
                recovered_amount[r["currency"].lower()] += r["amount"]
        out.recovered_amount = dict(sorted(recovered_amount.items()))
        out.attempts = InvoiceAttempt.objects.filter(invoice_id__in=[i["id"] for i in invoices]).count()
        payment_of = {i["payment_id"]: i["id"] for i in invoices if i["payment_id"]}
        rounds = payment_rounds(payment_ids=list(payment_of))
        out.failovers = failovers_count(rounds.values(), order=self._order)
        out.recoveries = recovery_routes(invoice_ids=[i["id"] for i in invoices])
        attempt_ids = dict(
            PaymentAttempt.objects.filter(intent_id__in=list(payment_of)).values_list("id", "intent_id")
        )
        charges = Counter(
            payment_of[attempt_ids[a]]
            for a in SimulatorCharge.objects.filter(
                attempt_id__in=list(attempt_ids), status="captured"
            ).values_list("attempt_id", flat=True)
        )
        out.double_charged_periods = sum(1 for c in charges.values() if c > 1)
        out.subscriptions = Counter(
            Subscription.objects.filter(pk__in=sub_ids).values_list("status", flat=True)
        )
        return out

    def _print(self, report: dict) -> None:
        same = report["same_gateway_only"]
        lines = [
            f"marketplace                {report['marketplace']}",
            f"customers x months         {report['customers']} x {report['months']} (seed {report['seed']}, run {report['run']})",
            f"invoices                   {report['invoices']} ({report['paid']} paid, {report['open_invoices']} open, "
            f"{report['uncollectible_invoices']} uncollectible)",
            f"failed first try           {report['failed_first_try']}",
            f"recovered by retries       {report['recovered']} ({report['cross_gateway_recovered']} at another gateway)",
            f"recovery rate              {report['recovery_rate']}",
            f"recoveries by route        {_counts(report['recoveries'])}",
            f"payment methods            {_counts(report['methods'])}",
            f"failovers (latest rounds)  {_counts(report['failovers'])}",
            f"recovered amount           {report['recovered_amount']}",
            f"collected                  {report['collected']}",
            f"same-gateway only          {same['paid']} paid of {same['invoices']}, failed first try "
            f"{same['failed_first_try']}, recovered {same['recovered']} (rate {same['recovery_rate']}), "
            f"collected {same['collected']}",
            f"saved by cross-gateway     {report['revenue_saved_by_cross_gateway']} "
            f"({report['paid_invoices_saved_by_cross_gateway']} more paid invoices)",
            f"double-charged periods     {report['double_charged_periods']}",
            f"ledger verified            {report['ledger_verified']}",
        ]
        self.stdout.write("\n".join(lines))
